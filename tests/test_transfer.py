"""vibgan.transfer: the speed-resampled baseline, the condition grid, the condition response learned across
classes, and the `benchmark.py transfer` smoke run on CWRU 1797 -> 1750 rpm."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from vibgan.classify import macro_f1
from vibgan.errors import DataError
from vibgan.recordings import Recording
from vibgan.spectral import psd
from vibgan.transfer import ConditionResponse, condition_grid, speed_resample

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
import benchmark as bench  # noqa: E402

FS = 12000.0


def _peak_hz(x: np.ndarray, fs: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spec)])


def test_speed_resample_moves_every_line_by_the_speed_ratio():
    t = np.arange(int(2 * FS)) / FS
    rec = Recording(np.sin(2 * np.pi * 107.0 * t)[None].astype(np.float32), FS,
                    {"label": "IR", "rpm": 1800.0, "load_hp": 0.0, "source": "tone"})
    out = speed_resample(rec, 1500.0, load_hp=2.0)
    # slower shaft: the line moves down to 107 * 1500 / 1800 = 89.2 Hz (the wrong direction would give 128 Hz)
    # and the recording lasts 1800 / 1500 times as long at the same fs
    assert abs(_peak_hz(out.signal[0], out.fs) - 107.0 * 1500 / 1800) < 0.6
    assert out.fs == FS and abs(out.samples - rec.samples * 1800 / 1500) <= 2
    assert out.meta["rpm"] == 1500.0 and out.meta["load_hp"] == 2.0 and out.meta["speed_resampled_from"] == [1800.0, 0.0]
    # the amplitude is kept (a level change with load is not something resampling knows)
    assert abs(np.sqrt((out.signal[0, 1000:-1000] ** 2).mean()) - np.sqrt(0.5)) < 0.01
    with pytest.raises(DataError, match="rpm"):
        speed_resample(Recording(rec.signal, FS, {"source": "no-rpm.npz"}), 1500.0)


def test_condition_grid_spreads_speeds_around_each_seen_condition():
    g = condition_grid([(1797.0, 0.0), (1750.0, 2.0)], 8, width=0.04)
    assert len(g) == 8
    assert {load for _, load in g} == {0.0, 2.0}
    r0 = sorted(r for r, load in g if load == 0.0)
    assert r0[0] == pytest.approx(1797 * 0.96) and r0[-1] == pytest.approx(1797 * 1.04)
    with pytest.raises(DataError):
        condition_grid([], 4)


def _band_noise(rng, n, gain_band=1.0, band=(2000.0, 3000.0)):
    """White noise whose band is scaled by gain_band (zero-phase, in the frequency domain)."""
    x = rng.standard_normal(n)
    X = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1 / FS)
    X[(f >= band[0]) & (f <= band[1])] *= gain_band
    return np.fft.irfft(X, n=n)[None].astype(np.float32)


def test_condition_response_carries_the_other_classes_load_change_to_an_unseen_class():
    rng = np.random.default_rng(0)
    a, b = {"rpm": 1797.0, "load_hp": 0.0}, {"rpm": 1750.0, "load_hp": 2.0}
    n = int(4 * FS)
    recs = []
    for label, level in (("c1", 1.0), ("c2", 3.0)):  # two classes at both conditions: +6 dB in 2-3 kHz at b
        recs.append(Recording(level * _band_noise(rng, n), FS, {"label": label, **a, "source": f"{label}a"}))
        recs.append(Recording(level * _band_noise(rng, n, gain_band=2.0), FS, {"label": label, **b, "source": f"{label}b"}))
    recs.append(Recording(_band_noise(rng, n), FS, {"label": "c3", **a, "source": "c3a"}))  # c3 only at a
    resp = ConditionResponse.fit(recs)
    A, B = (1797.0, 0.0), (1750.0, 2.0)
    assert sorted(resp.support[(A, B)]) == ["c1", "c2"]
    d = resp.response(A, B)
    f = resp.freqs
    assert np.median(d[(f > 2200) & (f < 2800)]) == pytest.approx(6.0, abs=0.8)
    assert np.abs(d[(f > 300) & (f < 1500)]).max() < 1.0  # outside the band: no change
    # applied to the class recorded at a only: its band rises by ~6 dB, the rest stays
    x = recs[-1].signal
    y = resp.apply(x, A, B)
    fr, px = psd(x.astype(np.float64), FS)
    _, py = psd(y.astype(np.float64), FS)
    rise = 10 * np.log10(py[0] / px[0])
    assert np.median(rise[(fr > 2200) & (fr < 2800)]) == pytest.approx(6.0, abs=1.0)
    assert abs(np.median(rise[(fr > 300) & (fr < 1500)])) < 0.5
    assert np.array_equal(resp.apply(x, A, A), x)
    # the reverse direction is learned too, and a round trip through the dict keeps the table
    assert np.median(resp.response(B, A)[(f > 2200) & (f < 2800)]) == pytest.approx(-6.0, abs=0.8)
    back = ConditionResponse.from_dict(json.loads(json.dumps(resp.to_dict())))
    assert np.allclose(back.response(A, B), d) and back.support == resp.support
    with pytest.raises(DataError, match="no class was recorded at both"):
        resp.apply(x, A, (1500.0, 1.0))


def test_present_macro_f1_scores_only_the_classes_with_test_windows():
    y_true = np.array([1, 1, 2, 2])
    # class 0 (absent at the target) is never scored, but predicting it is an error for the true class
    assert macro_f1(y_true, np.array([1, 1, 2, 2]), 3, present_only=True) == 1.0
    f1 = macro_f1(y_true, np.array([1, 0, 2, 2]), 3, present_only=True)
    assert f1 == pytest.approx(np.mean([2 / 3, 1.0]))
    assert macro_f1(y_true, np.array([1, 0, 2, 2]), 3) == pytest.approx(np.mean([0.0, 2 / 3, 1.0]))  # the default


def test_transfer_benchmark_smoke(tmp_path, cwru_dir):
    target = cwru_dir.parent / "1750rpm"
    if not any(target.glob("*.npz")):
        pytest.skip(f"CWRU 2 hp recordings not found at {target}")
    out = tmp_path / "bench"
    rc = bench.main(["transfer", "--quick", "--threads", "1", "--protocols", "1", "--out", str(out),
                     "--cwru", str(cwru_dir), "--target-dir", str(target),
                     "--variants", "real", "resampled", "resampled-eq", "vibgan-eq"])
    assert rc == 0
    r = json.loads((out / "transfer.json").read_text())
    res = r["results"]["P1/S0.5"]
    assert res["judged_on"] == ["B_14", "IR_14", "OR@6_14"]  # the 14 mil faults are never recorded at 1750 rpm
    assert sorted(res["at_target"]) == ["B_21", "B_7", "IR_21", "IR_7", "OR@6_21", "OR@6_7"]
    assert set(res["variants"]) == {"real", "resampled", "resampled-eq", "vibgan-eq"}
    for v in res["variants"].values():
        # scored on the classes recorded at 1750 rpm: the nine faults, no normal
        assert set(v["target_recall"]) == {c for c in r["protocol"]["classes"] if c != "Normal"}
        assert 0 <= v["target_mean"] <= 1 and 0 <= v["unseen_recall_min"] <= v["unseen_recall_mean"] <= 1
    assert res["variants"]["real"]["n_train"] < res["variants"]["resampled"]["n_train"]
    pair = [p for p in res["condition_response"]["pairs"] if p["from"] == [1797.0, 0.0]][0]
    assert sorted(pair["classes"]) == sorted(res["at_target"])  # learned from the classes recorded at both


def test_target_fidelity_measures_level_and_fault_rate_against_the_real_target():
    """lsd near its floor for windows of the same recording, ~6 dB for the same windows 6 dB louder; the
    envelope hit at the target's BPFO for the real fault and not at a wrong speed's."""
    from vibgan.bearing import characteristic_frequency
    from vibgan.synthetic import simulate_bearing

    rec = simulate_bearing("outer", 1730, 12000.0, 6.0, seed=5, load_hp=3.0)
    w = rec.signal[0, : 34 * 2048].reshape(34, 2048)
    same = bench.target_fidelity(w[:17], w[17:], 12000.0, characteristic_frequency("outer", 1730))
    assert same["lsd_db"] < 1.5 and same["lsd_floor_db"] < 1.5
    assert same["envelope_hit"] == 1.0 and same["envelope_hit_real"] == 1.0
    loud = bench.target_fidelity(w[:17] * 2.0, w[17:], 12000.0, None)
    assert loud["lsd_db"] == pytest.approx(6.0, abs=1.0) and "envelope_hit" not in loud
    # at 1500 rpm BPFO is 13 % lower (the +/- 3 % hit window, with its leakage, cannot tell 1797 from 1730 rpm)
    wrong = bench.target_fidelity(w[:17], w[17:], 12000.0, characteristic_frequency("outer", 1500))
    assert wrong["envelope_hit"] < 0.2


def test_transfer_benchmark_simulated_smoke(tmp_path):
    """The simulated protocol: ground-truth faults at a condition with a load the source lacks; healthy data at
    both conditions go in; the middle severity is judged in protocol 1."""
    out = tmp_path / "bench"
    rc = bench.main(["transfer", "--data", "simulated", "--quick", "--threads", "1", "--out", str(out),
                     "--variants", "real", "classic", "recorded", "source-eq", "resampled-eq", "cyclegan"])
    assert rc == 0
    r = json.loads((out / "transfer.json").read_text())
    assert r["protocol"]["source_condition"] == [1797.0, 0.0] and r["protocol"]["target_condition"] == [1730.0, 3.0]
    assert r["protocol"]["source_conditions"] == [[1750.0, 2.0], [1797.0, 0.0]]  # protocol 2 adds a second
    p1, p2, p3 = r["results"]["P1/S0.5"], r["results"]["P2/S0.5"], r["results"]["P3/S0.5"]
    # protocol 2: every class at both source conditions (twice protocol 3's windows), healthy only at the target
    assert p2["at_target"] == ["normal"] and p2["judged_on"] == p3["judged_on"]
    assert p2["n_real"]["inner_1"] == 2 * p3["n_real"]["inner_1"]
    assert {tuple(p["from"]) for p in p2["condition_response"]["pairs"]} == {(1797.0, 0.0), (1750.0, 2.0), (1730.0, 3.0)}
    assert p1["judged_on"] == ["inner_1", "outer_1", "ball_1"]
    assert "normal" in p1["at_target"] and "inner_0.6" in p1["at_target"] and "inner_1" not in p1["at_target"]
    assert p3["at_target"] == ["normal"] and len(p3["judged_on"]) == 9
    # the response is learned from normal alone in protocol 3; the classes with test windows include normal
    pair = [p for p in p3["condition_response"]["pairs"] if p["from"] == [1797.0, 0.0]][0]
    assert pair["classes"] == ["normal"]
    assert set(p3["variants"]["real"]["target_recall"]) == set(r["protocol"]["classes"])
    fid = p1["variants"]["classic"]["target_fidelity"]
    assert set(fid) == {"inner_1", "outer_1", "ball_1"}
    for f in fid.values():  # the source's own windows, judged against the target's real ones
        assert f["lsd_db"] > 0 and f["lsd_floor_db"] > 0 and f["envelope_hit_real"] >= 0.9
    assert p1["variants"]["real"]["target_fidelity"] == {}
    # the ceiling fills the judged classes from their own target recording: nearer the target than the source
    ceiling = p1["variants"]["recorded"]["target_fidelity"]
    assert all(ceiling[c]["lsd_db"] < fid[c]["lsd_db"] for c in fid), (ceiling, fid)
    # the CycleGAN baseline is learned once per protocol and fills the judged classes
    assert p1["cyclegan_train_s"] > 0 and set(p1["variants"]["cyclegan"]["target_fidelity"]) == set(p1["judged_on"])


def test_condition_response_carries_a_fault_by_its_own_fault_type_first():
    """Two inner-race classes at both conditions rise +6 dB in 2-3 kHz, the healthy class does not change: an
    inner-race class recorded at a only is carried by the inner-race response, not by the all-class median."""
    rng = np.random.default_rng(1)
    a, b = {"rpm": 1797.0, "load_hp": 0.0}, {"rpm": 1730.0, "load_hp": 3.0}
    n = int(4 * FS)
    recs = []
    for label, fault, gain in (("n", "normal", 1.0), ("n2", "normal", 1.0), ("n3", "normal", 1.0),
                               ("i1", "inner", 2.0), ("i2", "inner", 2.0)):
        recs.append(Recording(_band_noise(rng, n), FS, {"label": label, "fault": fault, **a, "source": label + "a"}))
        recs.append(Recording(_band_noise(rng, n, gain_band=gain), FS,
                              {"label": label, "fault": fault, **b, "source": label + "b"}))
    recs.append(Recording(_band_noise(rng, n), FS, {"label": "i3", "fault": "inner", **a, "source": "i3a"}))
    recs.append(Recording(_band_noise(rng, n), FS, {"label": "o1", "fault": "outer", **a, "source": "o1a"}))
    resp = ConditionResponse.fit(recs)
    A, B = (1797.0, 0.0), (1730.0, 3.0)
    band = (resp.freqs > 2200) & (resp.freqs < 2800)
    assert abs(np.median(resp.response(A, B)[band])) < 0.8  # the all-class median: three healthy, two inner
    assert resp.carried_by(A, B, "i3") == ("inner", ["i1", "i2"])
    assert np.median(resp.response(A, B, "i3")[band]) == pytest.approx(6.0, abs=0.8)
    # an outer-race class has no outer-race example: the fault classes carry it; a healthy one, the healthy ones;
    # a class the response never saw, every class
    assert resp.carried_by(A, B, "o1") == ("faults", ["i1", "i2"])
    assert resp.carried_by(A, B, "n") == ("normal", ["n", "n2", "n3"])
    assert resp.carried_by(A, B, "unknown")[0] == "all"
    back = ConditionResponse.from_dict(json.loads(json.dumps(resp.to_dict())))
    assert back.carried_by(A, B, "i3") == ("inner", ["i1", "i2"])
    assert np.allclose(back.response(A, B, "i3"), resp.response(A, B, "i3"))


def test_condition_response_extrapolates_a_faults_load_trend_to_a_condition_only_healthy_data_reach():
    """Protocol 2's case: inner-race faults at 0 and 2 hp (+6 dB in 2-3 kHz at 2 hp), healthy data at 0, 2 and
    3 hp (no change). Carried from 2 hp to 3 hp, an inner fault gets +3 dB: the healthy change (0) plus its
    kind's excess over the healthy change, 3 dB per hp."""
    rng = np.random.default_rng(2)
    A, C, B = {"rpm": 1797.0, "load_hp": 0.0}, {"rpm": 1750.0, "load_hp": 2.0}, {"rpm": 1730.0, "load_hp": 3.0}
    n = int(4 * FS)
    recs = [Recording(_band_noise(rng, n), FS, {"label": "n", "fault": "normal", **c, "source": f"n{k}"})
            for k, c in enumerate((A, C, B))]
    for label in ("i1", "i2"):
        recs.append(Recording(_band_noise(rng, n), FS, {"label": label, "fault": "inner", **A, "source": label + "A"}))
        recs.append(Recording(_band_noise(rng, n, gain_band=2.0), FS,
                              {"label": label, "fault": "inner", **C, "source": label + "C"}))
    resp = ConditionResponse.fit(recs)
    c, b = (1750.0, 2.0), (1730.0, 3.0)
    band = (resp.freqs > 2200) & (resp.freqs < 2800)
    out = (resp.freqs > 300) & (resp.freqs < 1500)
    name, by = resp.carried_by(c, b, "i1")
    assert name == "all + inner load trend" and by == ["i1", "i2"]
    d = resp.response(c, b, "i1")
    assert np.median(d[band]) == pytest.approx(3.0, abs=0.8) and np.abs(d[out]).max() < 1.0
    assert abs(np.median(resp.response(c, b)[band])) < 0.8  # without a label: the healthy change alone
    assert resp.carried_by(c, b, "n") == ("all", ["n"])


def test_cycle_translator_learns_a_band_change_from_unpaired_windows_and_carries_it_to_another_class():
    """Two classes recorded at both conditions, +6 dB in 2-3 kHz at the target; windows of a third level (a
    class never seen by the translator) rise 6 +/- 2 dB in the band and stay within 1 dB elsewhere. Untrained,
    the translator is the identity."""
    import torch

    from vibgan.cycle import CycleTranslator

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)

    def wins(level, gain, k=64):
        return np.stack([level * _band_noise(rng, 512, gain_band=gain) for _ in range(k)])

    src = np.concatenate([wins(1, 1), wins(3, 1)])
    tgt = np.concatenate([wins(1, 2), wins(3, 2)])
    x = wins(2, 1, 32)
    assert np.allclose(CycleTranslator(1).translate(x), x)
    ct = CycleTranslator(1).fit(src, tgt, steps=300, crop=256, seed=0)
    y = ct.translate(x)
    assert y.shape == x.shape and len(ct.history["cycle"]) == 300
    f, px = psd(x.astype(np.float64), FS)
    _, py = psd(y.astype(np.float64), FS)
    rise = 10 * np.log10(py.mean(axis=0)[0] / px.mean(axis=0)[0])
    assert np.median(rise[(f > 2200) & (f < 2800)]) == pytest.approx(6.0, abs=2.0)
    assert abs(np.median(rise[(f > 300) & (f < 1500)])) < 1.0
    with pytest.raises(DataError, match="source"):
        CycleTranslator(1).fit(src[:1], tgt)
