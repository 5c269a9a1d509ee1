"""Bearing geometry and defect frequencies against the published CWRU values."""

from __future__ import annotations

import math

import pytest

from vibgan.bearing import (
    SKF_6203,
    SKF_6205,
    BearingGeometry,
    characteristic_frequency,
    fault_frequencies,
    geometry,
)
from vibgan.errors import VibganError


def test_6205_at_1797_rpm_matches_cwru_readme():
    f = fault_frequencies(1797, "6205")
    assert f["fr"] == pytest.approx(29.95, abs=1e-9)
    assert f["bpfi"] == pytest.approx(162.19, abs=0.01)
    assert f["bpfo"] == pytest.approx(107.36, abs=0.01)
    assert f["ftf"] == pytest.approx(11.93, abs=0.01)
    assert f["bsf"] == pytest.approx(70.58, abs=0.01)


@pytest.mark.parametrize("rpm", [300.0, 1500.0, 1797.0, 1800.0, 3600.0])
def test_6205_ratios_to_shaft_rate(rpm):
    # CWRU Bearing Data Center table (drive end, multiples of running speed); 2 x BSF is its "rolling element".
    f = fault_frequencies(rpm, SKF_6205)
    fr = rpm / 60.0
    assert f["bpfi"] / fr == pytest.approx(5.4152, rel=1e-4)
    assert f["bpfo"] / fr == pytest.approx(3.5848, rel=1e-4)
    assert f["ftf"] / fr == pytest.approx(0.39828, rel=1e-4)
    assert f["bsf"] / fr == pytest.approx(2.3567, rel=1e-4)
    assert 2 * f["bsf"] / fr == pytest.approx(4.7135, rel=1e-4)


def test_6203_fan_end_ratios_match_cwru_table():
    # CWRU fan-end 6203-2RS: inner 4.9469, outer 3.0530, cage 0.3817, rolling element (2 x BSF) 3.9874.
    f = fault_frequencies(1797, "6203")
    fr = 1797 / 60.0
    assert f["bpfi"] / fr == pytest.approx(4.9469, rel=5e-4)
    assert f["bpfo"] / fr == pytest.approx(3.0530, rel=5e-4)
    assert f["ftf"] / fr == pytest.approx(0.3817, rel=5e-4)
    assert 2 * f["bsf"] / fr == pytest.approx(3.9874, rel=5e-4)
    assert f["bpfi"] == pytest.approx(148.16, abs=0.01)
    assert f["bpfo"] == pytest.approx(91.44, abs=0.01)
    assert geometry("fan_end") is SKF_6203 and geometry("drive_end") is SKF_6205


def test_kinematic_identities():
    # BPFO + BPFI = n fr; BPFO = n FTF (each ball passes a fixed outer-race point once per cage turn).
    for g in (SKF_6205, SKF_6203):
        f = fault_frequencies(1234.0, g)
        assert f["bpfo"] + f["bpfi"] == pytest.approx(g.n_balls * f["fr"])
        assert f["bpfo"] == pytest.approx(g.n_balls * f["ftf"])


def test_frequencies_scale_linearly_with_speed():
    a, b = fault_frequencies(1500), fault_frequencies(3000)
    for k in a:
        assert b[k] == pytest.approx(2 * a[k])


def test_contact_angle_and_custom_geometry():
    g0 = BearingGeometry(10, 0.5, 2.5, 0.0)
    g15 = BearingGeometry(10, 0.5, 2.5, 15.0)
    assert geometry(g15) is g15
    f0, f15 = fault_frequencies(1800, g0), fault_frequencies(1800, g15)
    assert f15["bpfo"] > f0["bpfo"] and f15["bpfi"] < f0["bpfi"]
    assert f0["bpfo"] == pytest.approx(5 * 30 * (1 - 0.2))


def test_characteristic_frequency_per_fault():
    f = fault_frequencies(1797)
    assert characteristic_frequency("inner", 1797) == pytest.approx(f["bpfi"])
    assert characteristic_frequency("outer", 1797) == pytest.approx(f["bpfo"])
    assert characteristic_frequency("ball", 1797) == pytest.approx(2 * f["bsf"])
    assert characteristic_frequency("normal", 1797) is None


@pytest.mark.parametrize("rpm", [0.0, -1800.0, math.nan, math.inf])
def test_bad_rpm_raises(rpm):
    with pytest.raises(VibganError, match="rpm"):
        fault_frequencies(rpm)


def test_bad_names_and_geometry_raise():
    with pytest.raises(VibganError, match="unknown name"):
        geometry("6309")
    with pytest.raises(VibganError, match="unknown fault"):
        characteristic_frequency("cage", 1797)
    with pytest.raises(VibganError, match="ball_diameter"):
        BearingGeometry(9, 2.0, 1.5)
    with pytest.raises(VibganError, match="n_balls"):
        BearingGeometry(0, 0.3, 1.5)
