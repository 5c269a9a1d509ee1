"""Synthetic sources: the seed sinusoids and the bearing simulator, judged by physics (envelope, kurtosis, spectra)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from vibgan.bearing import characteristic_frequency, fault_frequencies
from vibgan.errors import VibganError
from vibgan.recordings import Recording
from vibgan.spectral import envelope_hit_rate, envelope_spectrum, fft_magnitude, indicators
from vibgan.synthetic import fit_sinusoid, simulate_bearing, simulate_dataset, sinusoids

FS = 12000.0
T = 4096  # DESIGN.md envelope segment length


def windows(rec: Recording, length: int = T) -> np.ndarray:
    """Non-overlapping windows of the first channel: (W, length)."""
    x = rec.signal[0]
    n = x.size // length
    return x[: n * length].reshape(n, length)


@functools.cache
def sim(fault: str, rpm: float = 1797.0, severity: float = 1.0, seed: int = 7, duration: float = 6.0) -> Recording:
    return simulate_bearing(fault, rpm, FS, duration, severity=severity, seed=seed)


def hit_rate(rec: Recording, fc: float) -> float:
    return envelope_hit_rate(windows(rec), rec.fs, fc)


def envelope_peak(rec: Recording) -> float:
    """Frequency (Hz) of the largest line in the window-averaged envelope spectrum between 50 and 500 Hz."""
    freqs, spec = envelope_spectrum(windows(rec), rec.fs)
    band = (freqs > 50) & (freqs < 500)
    return float(freqs[band][np.argmax(spec.mean(axis=0)[band])])


def median_kurtosis(rec: Recording) -> float:
    return float(np.median(indicators(windows(rec))["kurtosis"]))


# --------------------------------------------------------------------------------------------- sinusoids


def test_sinusoids_shape_range_and_formula():
    y, b, c = sinusoids(500, 64, seed=0, return_params=True)
    assert y.shape == (500, 64) and y.dtype == np.float32
    assert np.abs(y).max() <= 1.0
    x = np.linspace(-5, 5, 64)
    np.testing.assert_allclose(y, np.sin(b[:, None] * x + c[:, None]), atol=1e-6)
    assert sinusoids(3, 16, seed=0).shape == (3, 16)


def test_sinusoid_parameter_distribution():
    _, b, c = sinusoids(4000, 8, seed=1, return_params=True)
    assert 0.5 <= b.min() < 0.52 and 1.98 < b.max() <= 2.0
    assert 0.0 <= c.min() < 0.02 and math.pi - 0.02 < c.max() <= math.pi
    # uniform: mean at the centre, variance (range^2)/12
    assert b.mean() == pytest.approx(1.25, abs=0.03)
    assert b.var() == pytest.approx(1.5**2 / 12, rel=0.1)
    assert c.mean() == pytest.approx(math.pi / 2, abs=0.06)


def test_sinusoids_seeded():
    np.testing.assert_array_equal(sinusoids(10, seed=3), sinusoids(10, seed=3))
    assert not np.array_equal(sinusoids(10, seed=3), sinusoids(10, seed=4))


def test_fit_sinusoid_recovers_b_and_c():
    y, b, c = sinusoids(300, 64, seed=2, return_params=True)
    fit = fit_sinusoid(y)
    assert fit.residual_rms.max() < 1e-5
    np.testing.assert_allclose(fit.b, b, atol=1e-5)
    np.testing.assert_allclose(np.angle(np.exp(1j * (fit.c - c))), 0.0, atol=1e-4)
    np.testing.assert_allclose(fit.amplitude, 1.0, atol=1e-5)
    # one curve in, scalars out; range edges are reachable
    one = fit_sinusoid(np.sin(2.0 * np.linspace(-5, 5, 64) + 0.3))
    assert one.b == pytest.approx(2.0) and one.c == pytest.approx(0.3) and one.residual_rms < 1e-8


def test_fit_sinusoid_tolerates_small_noise_and_rejects_non_sinusoids():
    rng = np.random.default_rng(0)
    y = sinusoids(200, 64, seed=5)
    assert fit_sinusoid(y + 0.03 * rng.standard_normal(y.shape)).residual_rms.max() < 0.1
    assert fit_sinusoid(rng.standard_normal((200, 64))).residual_rms.min() > 0.5
    x = np.linspace(-5, 5, 64)
    # outside the seed distribution: too fast (b = 3) or the wrong amplitude (0.5) is not a clean sinusoid
    assert fit_sinusoid(np.sin(3.0 * x + 1.0)).residual_rms > 0.3
    half = fit_sinusoid(0.5 * np.sin(1.0 * x + 1.0))
    assert half.residual_rms > 0.2 and half.amplitude == pytest.approx(0.5, abs=0.01)


def test_sinusoid_bad_arguments():
    with pytest.raises(VibganError):
        sinusoids(0)
    with pytest.raises(VibganError):
        sinusoids(4, b_range=(2.0, 0.5))
    with pytest.raises(VibganError):
        fit_sinusoid(np.full(64, np.nan))


# --------------------------------------------------------------------------------------------- bearing physics


def test_inner_race_envelope_peaks_at_bpfi():
    f = fault_frequencies(1797)
    rec = sim("inner")
    assert hit_rate(rec, f["bpfi"]) >= 0.9
    assert hit_rate(rec, f["bpfo"]) < 0.3


def test_outer_race_envelope_peaks_at_bpfo():
    f = fault_frequencies(1797)
    rec = sim("outer")
    assert hit_rate(rec, f["bpfo"]) >= 0.9
    assert hit_rate(rec, f["bpfi"]) < 0.3


def test_ball_envelope_peaks_at_twice_bsf():
    # The simulator's ball defect strikes cleanly (real CWRU ball classes hit 0.07-0.14 only: their
    # defect rolls in and out of the contact path and other content dominates); we hold it to the theory.
    f = fault_frequencies(1797)
    rec = sim("ball")
    assert hit_rate(rec, 2 * f["bsf"]) >= 0.8
    assert hit_rate(rec, f["bpfi"]) < 0.3
    assert hit_rate(rec, f["bpfo"]) < 0.3


def test_normal_has_no_envelope_peaks_and_gaussian_kurtosis():
    rec = sim("normal")
    for fault in ("inner", "outer", "ball"):
        assert hit_rate(rec, characteristic_frequency(fault, 1797)) < 0.2
    assert 2.5 <= median_kurtosis(rec) <= 3.5
    assert 0.05 <= float(np.sqrt(np.mean(rec.signal**2))) <= 0.1  # CWRU normal: 0.074 g RMS


def test_envelope_spectrum_maximum_sits_at_the_fault_frequency():
    for fault in ("inner", "outer", "ball"):
        assert envelope_peak(sim(fault)) == pytest.approx(characteristic_frequency(fault, 1797), rel=0.01), fault


def test_shaft_frequency_shows_in_normal_spectrum():
    rec = sim("normal")
    freqs, mag = fft_magnitude(rec.signal[0], rec.fs)
    fr = 1797 / 60.0
    near = (freqs > 15) & (freqs < 45)
    assert freqs[near][np.argmax(mag[near])] == pytest.approx(fr, abs=0.2)
    assert mag[near].max() > 10 * np.median(mag[near])


@pytest.mark.parametrize("fault", ["inner", "outer"])
def test_kurtosis_rises_with_severity(fault):
    k = [median_kurtosis(sim(fault, severity=s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert k[0] < k[1] < k[2] < k[3], k
    assert 2.5 <= k[0] <= 3.5
    assert k[3] > 8.0  # CWRU 0.014-0.021 in classes reach 7-22


def test_fault_levels_are_realistic():
    for fault in ("inner", "outer", "ball"):
        rms = [float(np.sqrt(np.mean(sim(fault, severity=s).signal ** 2))) for s in (0.5, 1.0, 2.0)]
        assert rms[0] < rms[1] < rms[2], fault
        assert 0.07 < rms[1] < 1.0, fault


@pytest.mark.parametrize("rpm", [1500.0, 1800.0])
def test_hit_frequency_moves_with_rpm(rpm):
    for fault in ("inner", "outer"):
        rec = sim(fault, rpm=rpm)
        fc = characteristic_frequency(fault, rpm)
        assert rec.meta["fault_hz"] == pytest.approx(fc)
        assert hit_rate(rec, fc) >= 0.9
        # the envelope maximum follows the speed: at 1500 rpm it sits 17 % below the 1800 rpm line
        assert envelope_peak(rec) == pytest.approx(fc, rel=0.01), fault


def test_seed_determinism():
    a = simulate_bearing("outer", 1797, FS, 1.0, seed=11)
    b = simulate_bearing("outer", 1797, FS, 1.0, seed=11)
    c = simulate_bearing("outer", 1797, FS, 1.0, seed=12)
    np.testing.assert_array_equal(a.signal, b.signal)
    assert not np.array_equal(a.signal, c.signal)


def test_recording_metadata_and_channels():
    rec = simulate_bearing("inner", 1797, FS, 2.0, severity=1.5, seed=1, load_hp=1.0, channels=2, label="IR_sim")
    assert rec.signal.shape == (2, 24000) and rec.signal.dtype == np.float32 and rec.fs == FS
    m = rec.meta
    assert m["label"] == "IR_sim" and m["fault"] == "inner" and m["sensor"] == ["DE", "FE"]
    assert m["units"] == "g" and m["source"] == "simulated" and m["rpm"] == 1797 and m["load_hp"] == 1.0
    assert m["severity"] == 1.5 and m["seed"] == 1 and m["fault_hz"] == pytest.approx(162.19, abs=0.01)
    # the fan end sees the same strikes through a weaker path and its own background
    de, fe = rec.signal
    assert np.sqrt(np.mean(fe**2)) < np.sqrt(np.mean(de**2))
    assert abs(np.corrcoef(de, fe)[0, 1]) < 0.9
    fe_windows = fe[: 5 * T].reshape(5, T)
    assert envelope_hit_rate(fe_windows, FS, m["fault_hz"]) >= 0.8
    assert simulate_bearing("normal", 1797, FS, 1.0, seed=1).meta["label"] == "normal"


def test_geometry_changes_the_fault_frequency():
    rec = simulate_bearing("outer", 1797, FS, 4.0, seed=2, geometry="6203")
    f = fault_frequencies(1797, "6203")
    assert rec.meta["fault_hz"] == pytest.approx(f["bpfo"])
    assert hit_rate(rec, f["bpfo"]) >= 0.9


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"fault": "cage"}, "fault"),
        ({"rpm": 0.0}, "rpm"),
        ({"rpm": -10.0}, "rpm"),
        ({"fs": 5000.0}, "fs"),
        ({"duration": 0.01}, "duration"),
        ({"severity": -0.5}, "severity"),
        ({"channels": 3}, "channels"),
        ({"noise_g": -1.0}, "noise_g"),
        ({"resonance_hz": 9000.0}, "fs"),
        ({"geometry": "6309"}, "geometry"),
    ],
)
def test_bad_arguments_raise(kwargs, field):
    args = {"fault": "inner", "rpm": 1797.0, "fs": FS, "duration": 1.0} | kwargs
    with pytest.raises(VibganError, match=field):
        simulate_bearing(args.pop("fault"), args.pop("rpm"), args.pop("fs"), args.pop("duration"), **args)


def test_simulate_dataset_default():
    ds = simulate_dataset(duration=1.0)
    assert [(r.label, r.meta["rpm"]) for r in ds] == [
        (f, rpm) for f in ("normal", "inner", "outer", "ball") for rpm in (1500.0, 1800.0)
    ]
    assert all(r.fs == 12000 and r.signal.shape == (1, 12000) for r in ds)
    assert len({r.meta["seed"] for r in ds}) == len(ds)
    # a recording's seed depends only on (seed, fault, rpm): asking for a subset gives the same signal
    alone = simulate_dataset(faults=("outer",), rpms=(1800,), duration=1.0)[0]
    np.testing.assert_array_equal(alone.signal, ds[5].signal)
    again = simulate_bearing("outer", 1800, 12000, 1.0, seed=alone.meta["seed"])
    np.testing.assert_array_equal(again.signal, alone.signal)
    assert not np.array_equal(simulate_dataset(duration=1.0, seed=1)[0].signal, ds[0].signal)
    with pytest.raises(VibganError, match="unknown fault"):
        simulate_dataset(faults=("rotor",))


def _strike_peaks_and_decay(rec: Recording) -> tuple[np.ndarray, np.ndarray]:
    """Per strike of a clean single-mode recording: the envelope's peak (g) and its decay rate (1/s) from 0.5 to
    2 ms after the peak (past the onset, where the sampled ring's envelope is not yet exponential)."""
    from scipy.signal import find_peaks, hilbert

    env = np.abs(hilbert(rec.signal[0].astype(np.float64)))
    period = 1.0 / rec.meta["fault_hz"]
    peaks, _ = find_peaks(env, distance=int(0.8 * period * rec.fs))
    a, b = int(round(0.5e-3 * rec.fs)), int(round(2e-3 * rec.fs))
    peaks = peaks[peaks + b < env.size]
    return env[peaks], np.log(env[peaks + a] / env[peaks + b]) / ((b - a) / rec.fs)


def test_load_strengthens_strikes_and_damps_the_resonance():
    """3 hp against 0 hp, same seed (the same strikes): strikes 30 % stronger (LOAD_STRIKE_PER_HP), ringing that
    decays 24 % faster (LOAD_DAMPING_PER_HP); the fault frequency does not move with load."""
    kw = dict(seed=3, noise_g=0.0, shaft_g=(0.0, 0.0, 0.0), slip=0.0, resonance_hz=3400.0)
    r0 = simulate_bearing("outer", 1797, FS, 2.0, load_hp=0.0, **kw)
    r3 = simulate_bearing("outer", 1797, FS, 2.0, load_hp=3.0, **kw)
    a0, d0 = _strike_peaks_and_decay(r0)
    a3, d3 = _strike_peaks_and_decay(r3)
    assert len(a0) > 150 and len(a0) == len(a3)
    # the decay of a damped mode: zeta * 2 pi f = 0.035 * 2 pi 3400 = 748 /s at 0 hp
    assert np.median(d0) == pytest.approx(0.035 * 2 * np.pi * 3400, rel=0.1)
    assert np.median(d3) / np.median(d0) == pytest.approx(1.24, abs=0.04)
    assert np.median(a3 / a0) == pytest.approx(1.3, abs=0.05)
    assert r3.meta["fault_hz"] == r0.meta["fault_hz"] and r3.meta["load_hp"] == 3.0
    assert hit_rate(r3, r3.meta["fault_hz"]) >= 0.9


def test_simulate_dataset_several_loads():
    ds = simulate_dataset(faults=("normal", "inner"), rpms=(1800,), load_hp=(0, 2), duration=1.0)
    assert [(r.label, r.meta["rpm"], r.meta["load_hp"]) for r in ds] == [
        ("normal", 1800.0, 0.0), ("normal", 1800.0, 2.0), ("inner", 1800.0, 0.0), ("inner", 1800.0, 2.0)]
    # a recording's seed depends on its own (fault, rpm, load): the 2 hp one alone is the same signal
    alone = simulate_dataset(faults=("inner",), rpms=(1800,), load_hp=2, duration=1.0)[0]
    np.testing.assert_array_equal(alone.signal, ds[3].signal)
    with pytest.raises(VibganError, match="load_hp"):
        simulate_dataset(load_hp=(), duration=1.0)
    with pytest.raises(VibganError, match="load_hp"):
        simulate_dataset(load_hp=(-1,), duration=1.0)
