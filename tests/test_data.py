"""Loaders, CWRU naming, catalogs, windows, time splits, normalisation, datasets and the exchange format.

Physical facts first: a 50 Hz tone written in every format comes back at 50 Hz and the right fs; the CWRU
normal recording turns at 29.95 Hz; the CWRU inner-race recording's envelope peaks at BPFI.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import wave
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vibgan.bearing import characteristic_frequency
from vibgan.catalog import catalog, load_many
from vibgan.cwru import CWRU_10CLASS_0HP, CWRU_FILES, cwru_label_info, label_sort_key, parse_cwru_name
from vibgan.datasets import SegmentDataset
from vibgan.errors import DataError, VibganError
from vibgan.exchange import GeneratedWriter, read_generated, write_generated, write_recordings
from vibgan.normalize import Normalizer
from vibgan.recordings import SUPPORTED_EXTENSIONS, Recording, load
from vibgan.spectral import envelope_hits, fft_magnitude
from vibgan.windows import split_by_time, windows

FS = 12000.0
TONE_HZ = 50.0
AMP = 0.5


def tone(n: int = 24000, f: float = TONE_HZ, fs: float = FS, amp: float = AMP) -> np.ndarray:
    return amp * np.sin(2 * np.pi * f * np.arange(n) / fs)


def peak_hz(x: np.ndarray, fs: float) -> tuple[float, float]:
    freqs, mag = fft_magnitude(x, fs)
    i = int(np.argmax(mag))
    return float(freqs[i]), float(mag[i])


# ---------------------------------------------------------------------------------------------------------
# CWRU naming and table
# ---------------------------------------------------------------------------------------------------------


def test_parse_cwru_name_fault_file():
    info = parse_cwru_name("1797_IR_7_DE12.npz")
    assert info["rpm"] == 1797 and info["load_hp"] == 0
    assert info["label"] == "IR_7" and info["fault"] == "inner"
    assert info["diameter_in"] == pytest.approx(0.007)
    assert info["fs"] == 12000 and info["fault_end"] == "DE"


def test_parse_cwru_name_normal_is_48k_and_other_forms():
    info = parse_cwru_name("/some/dir/1797_Normal.npz")  # CWRU recorded its normal baseline at 48 kHz only
    assert (info["label"], info["fault"], info["diameter_in"], info["fs"]) == ("Normal", "normal", 0.0, 48000)
    o = parse_cwru_name("1772_OR@3_21_DE48.npz")
    assert (o["fault"], o["clock"], o["diameter_in"], o["fs"], o["load_hp"]) == ("outer", 3, 0.021, 48000, 1)
    b = parse_cwru_name("1730_B_28_FE12.npz")
    assert (b["fault"], b["diameter_in"], b["fault_end"], b["load_hp"]) == ("ball", 0.028, "FE", 3)
    assert parse_cwru_name("1797_IR_7.npz")["fs"] is None  # no suffix: fs is not guessed
    for bad in ("IR_7_DE12.npz", "1797_XX_7_DE12.npz", "1797_IR_7_DE24.npz", "recording.npz"):
        with pytest.raises(DataError, match="file name"):
            parse_cwru_name(bad)


def test_cwru_table_entries():
    e = CWRU_FILES[105]
    assert (e.label, e.fault, e.diameter_in, e.load_hp, e.rpm, e.fs, e.fault_end) == \
        ("IR_7", "inner", 0.007, 0, 1797, 12000, "DE")
    assert [CWRU_FILES[n].load_hp for n in (97, 98, 99, 100)] == [0, 1, 2, 3]
    assert {CWRU_FILES[n].label for n in (97, 98, 99, 100)} == {"Normal"}
    assert [CWRU_FILES[n].rpm for n in (234, 235, 236, 237)] == [1797, 1772, 1750, 1730]
    assert CWRU_FILES[156].label == "OR@12_7" and CWRU_FILES[158].load_hp == 1 and 157 not in CWRU_FILES
    assert CWRU_FILES[3001].variable == 56 and CWRU_FILES[3005].variable == 48
    labels = [CWRU_FILES[n].label for n in CWRU_10CLASS_0HP]
    assert labels == ["Normal", "B_7", "B_14", "B_21", "IR_7", "IR_14", "IR_21", "OR@6_7", "OR@6_14", "OR@6_21"]
    assert all(CWRU_FILES[n].load_hp == 0 for n in CWRU_10CLASS_0HP)
    per_label: dict[str, list[int]] = {}
    for f in CWRU_FILES.values():
        per_label.setdefault(f.label, []).append(f.load_hp)
    assert all(sorted(v) == [0, 1, 2, 3] for v in per_label.values())


def test_label_order_and_info():
    shuffled = ["OR@6_7", "IR_21", "Normal", "B_14", "custom", "B_7", "OR@3_7", "IR_7"]
    assert sorted(shuffled, key=label_sort_key) == ["Normal", "B_7", "B_14", "IR_7", "IR_21", "OR@3_7", "OR@6_7",
                                                    "custom"]
    assert sorted(["outer", "normal", "inner", "ball"], key=label_sort_key) == ["normal", "ball", "inner", "outer"]
    assert cwru_label_info("OR@12_21") == {"fault": "outer", "diameter_in": 0.021, "clock": 12}
    assert cwru_label_info("whatever") is None


# ---------------------------------------------------------------------------------------------------------
# A 50 Hz tone in every format
# ---------------------------------------------------------------------------------------------------------


def _write_npz(d: Path) -> tuple[Path, dict]:
    p = d / "tone.npz"
    np.savez(p, signal=np.stack([tone(), tone(f=120.0)]), fs=np.float64(FS), label="tone", rpm=1500.0)
    return p, {}


def _write_cwru_npz(d: Path) -> tuple[Path, dict]:
    p = d / "1797_IR_7_DE12.npz"
    x = tone()[:, None]
    np.savez(p, DE=x, FE=0.1 * x, BA=0.01 * x)
    return p, {}


def _write_mat_v5(d: Path) -> tuple[Path, dict]:
    p = d / "105.mat"
    x = tone()[:, None]
    scipy.io.savemat(p, {"X105_DE_time": x, "X105_FE_time": 0.1 * x, "X105_BA_time": 0.01 * x,
                         "X105RPM": np.array([[1796.0]])})
    return p, {}


def _write_mat_v73(d: Path) -> tuple[Path, dict]:
    p = d / "105.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        # MATLAB v7.3 stores column-major: MATLAB's (N, 1) vector is the HDF5 dataset (1, N)
        f.create_dataset("X105_DE_time", data=tone()[None, :])
        f.create_dataset("X105RPM", data=np.array([[1797.0]]))
    with open(p, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
    return p, {}


def _write_h5(d: Path) -> tuple[Path, dict]:
    p = d / "tone.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("signal", data=tone()[None, :].astype(np.float32))
        ds.attrs["fs"] = FS
        ds.attrs["label"] = "tone"
        ds.attrs["units"] = "g"
    return p, {}


def _write_csv(d: Path) -> tuple[Path, dict]:
    p = d / "tone.csv"
    n = 24000
    pd.DataFrame({"time": np.arange(n) / FS, "acc": tone(n)}).to_csv(p, index=False)
    return p, {}


def _write_parquet(d: Path) -> tuple[Path, dict]:
    p = d / "tone.parquet"
    pd.DataFrame({"acc_x": tone(), "acc_y": tone(f=120.0)}).to_parquet(p)
    return p, {"fs": FS}


def _write_wav(d: Path) -> tuple[Path, dict]:
    p = d / "tone.wav"
    scipy.io.wavfile.write(p, int(FS), np.round(tone() * 32767).astype(np.int16))
    return p, {}


WRITERS = {"npz": _write_npz, "cwru_npz": _write_cwru_npz, "mat_v5": _write_mat_v5, "mat_v73": _write_mat_v73,
           "hdf5": _write_h5, "csv": _write_csv, "parquet": _write_parquet, "wav": _write_wav}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_tone_in_every_format_peaks_at_50_hz(fmt, tmp_path):
    path, kwargs = WRITERS[fmt](tmp_path)
    rec = load(path, **kwargs)
    assert isinstance(rec, Recording) and rec.signal.dtype == np.float32
    assert rec.fs == FS
    assert rec.samples == 24000
    f, a = peak_hz(rec.signal[0], rec.fs)
    assert f == pytest.approx(TONE_HZ, abs=0.5)
    assert a == pytest.approx(AMP, rel=0.02)
    assert rec.meta["source"] == str(path)
    assert len(rec.meta["sensor"]) == rec.channels
    w = windows(rec, 12000)
    assert w.shape == (2, rec.channels, 12000)
    assert peak_hz(w[1, 0], rec.fs)[0] == pytest.approx(TONE_HZ, abs=1.0)


def test_format_metadata(tmp_path):
    rec = load(_write_npz(tmp_path)[0])
    assert rec.channels == 2 and rec.label == "tone" and rec.meta["rpm"] == 1500
    assert peak_hz(rec.signal[1], rec.fs)[0] == pytest.approx(120.0, abs=0.5)
    rec = load(_write_cwru_npz(tmp_path)[0])
    assert rec.meta["sensor"] == ["DE", "FE", "BA"] and rec.meta["units"] == "g"
    assert (rec.label, rec.meta["fault"], rec.meta["rpm"], rec.meta["load_hp"]) == ("IR_7", "inner", 1797, 0)
    rec = load(_write_mat_v5(tmp_path)[0])
    assert (rec.label, rec.meta["load_hp"], rec.meta["rpm"], rec.meta["rpm_nominal"]) == ("IR_7", 0, 1796, 1797)
    assert rec.meta["fs_source"] == "CWRU table" and rec.meta["sensor"] == ["DE", "FE", "BA"]
    np.testing.assert_allclose(rec.signal[1], 0.1 * rec.signal[0], rtol=1e-5, atol=1e-7)
    rec = load(_write_wav(tmp_path)[0])
    assert rec.meta["units"] == "normalized" and np.abs(rec.signal).max() <= 1.0
    rec = load(_write_parquet(tmp_path)[0], fs=FS, channels=["acc_y"])
    assert rec.meta["sensor"] == ["acc_y"] and peak_hz(rec.signal[0], FS)[0] == pytest.approx(120.0, abs=0.5)


def test_mat_v73_generic_signal_is_transposed(tmp_path):
    p = tmp_path / "generic.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        # MATLAB's (2, N) array `signal` lands in HDF5 as (N, 2)
        f.create_dataset("signal", data=np.stack([tone(), tone(f=120.0)]).T)
        f.create_dataset("fs", data=np.array([[FS]]))
    rec = load(p)
    assert rec.signal.shape == (2, 24000)
    assert peak_hz(rec.signal[0], rec.fs)[0] == pytest.approx(50.0, abs=0.5)
    assert peak_hz(rec.signal[1], rec.fs)[0] == pytest.approx(120.0, abs=0.5)


def test_mat_28_mil_files_hold_older_variable_numbers(tmp_path):
    p = tmp_path / "3001.mat"
    scipy.io.savemat(p, {"X056_DE_time": tone()[:, None], "X056_FE_time": tone()[:, None]})
    rec = load(p)
    assert (rec.label, rec.meta["load_hp"], rec.fs, rec.meta["cwru_variable"]) == ("IR_28", 0, 12000, 56)
    renamed = tmp_path / "IR028_0.mat"  # a renamed copy is still recognised by its variable number
    os.replace(p, renamed)
    assert load(renamed).label == "IR_28"


def test_mat_unknown_number_needs_fs(tmp_path):
    p = tmp_path / "109.mat"  # a 48 kHz file, not in the 12 kHz table
    scipy.io.savemat(p, {"X109_DE_time": tone()[:, None]})
    with pytest.raises(DataError, match=r"109\.mat.*fs.*pass load"):
        load(p)
    rec = load(p, fs=48000, label="IR_7")
    assert rec.fs == 48000 and rec.meta["fault"] == "inner" and rec.meta["fs_source"] == "argument"


def test_fs_is_never_guessed_and_conflicts_raise(tmp_path):
    p = tmp_path / "no_time.csv"
    pd.DataFrame({"acc": tone(1000)}).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"no_time\.csv: fs:.*pass load"):
        load(p)
    assert load(p, fs=FS).fs == FS
    csv, _ = _write_csv(tmp_path)
    with pytest.raises(DataError, match=r"fs: the file says 12000 Hz .* fs=48000"):
        load(csv, fs=48000)
    assert load(csv, fs=12000.0).fs == FS  # agreeing is fine
    cwru, _ = _write_cwru_npz(tmp_path)
    with pytest.raises(DataError, match="fs"):
        load(cwru, fs=48000)
    with pytest.raises(DataError, match="label"):
        load(cwru, label="B_7")
    wav, _ = _write_wav(tmp_path)
    with pytest.raises(DataError, match="WAV header"):
        load(wav, fs=8000)
    with pytest.raises(DataError, match="fs argument"):
        load(p, fs=-1)


def test_csv_time_column_must_be_uniform(tmp_path):
    t = np.arange(1000) / FS
    t[500:] += 0.01  # a gap
    p = tmp_path / "gap.csv"
    pd.DataFrame({"t": t, "acc": tone(1000)}).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"gap\.csv: column 't': expected uniform"):
        load(p)


def test_channel_selection_cwru(tmp_path):
    p = tmp_path / "1797_B_7_DE12.npz"
    np.savez(p, BA=np.zeros((100, 1)) + 1, FE=tone(200)[:, None], DE=tone(200)[:, None])
    rec = load(p)
    assert rec.meta["sensor"] == ["DE", "FE"]  # fixed order; BA differs in length and is left out
    assert load(p, channels=["DE"]).channels == 1
    assert load(p, channels="FE").meta["sensor"] == ["FE"]
    with pytest.raises(DataError, match="differ in length"):
        load(p, channels=["DE", "BA"])
    with pytest.raises(DataError, match="no channel 'XX'"):
        load(p, channels=["XX"])
    with pytest.raises(DataError, match="twice"):
        load(p, channels=["DE", "DE"])


@pytest.mark.parametrize("arrays,match", [
    ({"signal": np.array([1.0, np.nan, 2.0]), "fs": 100.0}, "NaN"),
    ({"signal": np.array([1.0, np.inf, 2.0]), "fs": 100.0}, "NaN/Inf"),
    ({"signal": np.zeros((2, 3, 4)), "fs": 100.0}, "shape"),
    ({"signal": np.zeros(0), "fs": 100.0}, "empty"),
    ({"signal": np.zeros((100, 2)), "fs": 100.0}, "fewer channels than samples"),
    ({"signal": np.zeros(10), "fs": 0.0}, "fs"),
    ({"signal": np.zeros(10), "fs": np.array([1.0, 2.0])}, "fs"),
    ({"signal": np.array(["a", "b"]), "fs": 100.0}, "real numbers"),
    ({"other": np.zeros(10)}, "expected 'signal'"),
    ({"DE": np.zeros((10, 2))}, "DE: expected a vector"),
])
def test_bad_arrays_raise_data_error(tmp_path, arrays, match):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError, match=match) as err:
        load(p)
    assert "bad.npz" in str(err.value)


def test_bad_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="extension"):
        load(tmp_path / "x.txt")
    with pytest.raises(DataError, match="not found"):
        load(tmp_path / "missing.npz")
    for ext in SUPPORTED_EXTENSIONS:
        empty = tmp_path / f"empty{ext}"
        empty.write_bytes(b"")
        with pytest.raises(DataError, match=f"empty{ext}"):
            load(empty, fs=FS)
    # truncated copies of valid files
    for fmt in ("npz", "mat_v5", "hdf5", "wav", "parquet"):
        d = tmp_path / fmt
        d.mkdir()
        path, kw = WRITERS[fmt](d)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match=path.name):
            load(path, **kw)
    gen = tmp_path / "gen.h5"
    write_generated(gen, np.zeros((2, 1, 8), np.float32), ["a", "b"], FS)
    with pytest.raises(DataError, match="read_generated"):
        load(gen)


# ---------------------------------------------------------------------------------------------------------
# Real CWRU data (skipped where ../shared/data/cwru is absent)
# ---------------------------------------------------------------------------------------------------------


def test_cwru_normal_line_read_as_the_shaft_is_the_119_75_hz_machine_line(cwru_dir):
    """Read at 12 kHz, the normal file showed a line at 29.94 Hz that passed for the shaft (29.95 Hz): it is the
    rig's 119.75 Hz machine line at a quarter of its frequency. At its true 48 kHz it sits at 119.75 Hz."""
    rec = load(cwru_dir / "1797_Normal.npz", channels=["DE"])
    assert rec.fs == 48000 and rec.duration_s == pytest.approx(5.08, abs=0.01)
    freqs, mag = fft_magnitude(rec.signal[0], rec.fs)  # 5.08 s: 0.2 Hz resolution
    band = (freqs >= 110) & (freqs <= 130)
    assert freqs[band][np.argmax(mag[band])] == pytest.approx(119.75, abs=0.25)
    assert mag[band].max() > 20 * np.median(mag[band])


def test_cwru_ir7_envelope_peaks_at_bpfi(cwru_dir):
    rec = load(cwru_dir / "1797_IR_7_DE12.npz", channels=["DE"])
    bpfi = characteristic_frequency("inner", rec.meta["rpm"])
    assert bpfi == pytest.approx(162.19, abs=0.01)
    w = windows(rec, 4096)
    assert w.shape == (29, 1, 4096)
    hits = envelope_hits(w, rec.fs, bpfi)
    assert hits.mean() == 1.0


def test_cwru_catalog(cwru_dir):
    df = catalog(cwru_dir)
    assert len(df) == 10
    assert set(df["rpm"]) == {1797.0} and set(df["load_hp"]) == {0}
    assert list(df["label"]) == ["Normal", "B_7", "B_14", "B_21", "IR_7", "IR_14", "IR_21", "OR@6_7", "OR@6_14",
                                 "OR@6_21"]
    assert list(df["fs"]) == [48000.0] + [12000.0] * 9  # the normal baseline at its true rate, the faults at 12 kHz
    normal = df.iloc[0]
    assert normal["samples"] == 243938 and normal["duration_s"] == pytest.approx(5.08, abs=0.01)
    assert normal["sensor"] == "DE,FE" and normal["channels"] == 2
    assert (df["fault"].iloc[1:4] == "ball").all() and (df["diameter_in"].iloc[4:7] == [0.007, 0.014, 0.021]).all()
    with pytest.raises(DataError, match="different sampling rates.*1797_Normal.npz.*load_many.fs"):
        load_many(cwru_dir, channels=["DE"], classes=["IR_7", "Normal"])  # never mixed silently
    recs = load_many(cwru_dir, channels=["DE"], classes=["IR_7", "Normal"], fs=12000.0)
    assert [r.label for r in recs] == ["Normal", "IR_7"] and all(r.channels == 1 for r in recs)
    assert [(r.fs, r.meta.get("fs_original")) for r in recs] == [(12000.0, 48000.0), (12000.0, None)]
    assert recs[0].samples == 60985  # 243,938 samples at 48 kHz, decimated by 4 (resample_poly, anti-aliased)


def test_the_normal_baseline_read_at_its_rate_has_the_rigs_machine_lines(cwru_dir):
    """Every recording of the CWRU rig carries the same narrow machine lines (the fault files' 119.75, 147.75,
    161.75, 191.5, 360, 973.5 and 1436.75 Hz). Loaded from its true 48 kHz and resampled to 12 kHz, the normal
    file has each of them at least 30 dB above its local floor; read at 12 kHz (the old reading, every frequency
    a quarter of the truth) none is (measured: >= 38 dB here, <= 29.6 dB there)."""
    from scipy.signal import periodogram

    lines = (119.75, 147.75, 161.75, 191.5, 360.0, 973.5, 1436.75)

    def prominence(rec, line):  # the line's peak (within 0.5 Hz) over the median of the 10 Hz around it
        f, p = periodogram(rec.signal[0].astype(np.float64), rec.fs, window="hann")
        near = np.abs(f - line) <= 0.5
        return p[near].max() / np.median(p[(np.abs(f - line) <= 10) & ~near])

    (normal,) = load_many(cwru_dir, channels=["DE"], classes=["Normal"], fs=12000.0)
    (fault,) = load_many(cwru_dir, channels=["DE"], classes=["B_7"])
    raw = load(cwru_dir / "1797_Normal.npz", channels=["DE"])
    old = Recording(raw.signal, 12000.0, raw.meta)  # the 48 kHz samples taken for 12 kHz ones
    for line in lines:
        assert prominence(fault, line) > 1000, line  # the rig's line, in a 12 kHz fault file
        assert prominence(normal, line) > 1000, f"{line} Hz: {10 * np.log10(prominence(normal, line)):.1f} dB"
        assert prominence(old, line) < 1000, line


# ---------------------------------------------------------------------------------------------------------
# Catalog and load_many on synthetic files
# ---------------------------------------------------------------------------------------------------------


def _rec_file(d: Path, name: str, fs: float, label: str, n: int = 4000, amp: float = 1.0, rpm: float = 1797.0):
    p = d / name
    np.savez(p, signal=amp * tone(n, fs=fs)[None, :], fs=np.float64(fs), label=label, rpm=rpm, load_hp=0.0)
    return p


def test_resample_keeps_a_tone_at_its_frequency_by_an_exact_ratio():
    from vibgan.recordings import resample, resample_ratio

    t = np.arange(48000) / 48000.0
    rec = Recording(np.sin(2 * np.pi * 1000.0 * t)[None], 48000.0, {"label": "x", "source": "tone.npz"})
    out = resample(rec, 12000.0)
    assert out.fs == 12000.0 and out.samples == 12000 and out.meta["fs_original"] == 48000.0
    freqs, mag = fft_magnitude(out.signal[0], out.fs)
    assert freqs[np.argmax(mag)] == pytest.approx(1000.0, abs=1.0)
    assert float(np.sqrt(np.mean(out.signal[0, 100:-100] ** 2))) == pytest.approx(np.sqrt(0.5), rel=1e-3)
    high = Recording(np.sin(2 * np.pi * 9000.0 * t)[None], 48000.0, {"label": "x"})  # above 12 kHz's Nyquist
    assert float(np.abs(resample(high, 12000.0).signal[0, 100:-100]).max()) < 0.01  # filtered out, not aliased
    assert resample_ratio(51200.0, 12000.0) == (15, 64) and resample(out, 12000.0) is out
    with pytest.raises(DataError, match="no exact rational ratio"):
        resample_ratio(12000.0, 12000.0 * np.pi)


def test_data_fs_resamples_mixed_rates_and_without_it_names_two_files(tmp_path):
    from vibgan.config import load_config
    from vibgan.datasets import prepare_data

    _rec_file(tmp_path, "a.npz", 12000, "IR_7", n=24000)
    _rec_file(tmp_path, "b.npz", 48000, "Normal", n=96000)
    base = ["data.source='files'", f"data.path={str(tmp_path)!r}", "data.segment_length=1024", "data.channels=['ch0']"]
    with pytest.raises(DataError, match=r"different sampling rates.*12000.*a\.npz.*48000.*b\.npz.*data\.fs"):
        prepare_data(load_config(None, base))
    td = prepare_data(load_config(None, [*base, "data.fs=12000.0"]))
    assert td.fs == 12000.0 and td.classes == ["Normal", "IR_7"]
    normal = td.train_parts[0]
    assert normal.meta["fs_original"] == 48000.0 and normal.samples == int(0.7 * 24000)


def test_catalog_and_load_many_refuse_mixed_fs(tmp_path):
    (tmp_path / "sub").mkdir()
    _rec_file(tmp_path, "a.npz", 12000, "IR_7")
    _rec_file(tmp_path / "sub", "b.npz", 48000, "Normal")
    df = catalog(tmp_path)
    assert list(df["label"]) == ["Normal", "IR_7"] and sorted(df["fs"]) == [12000, 48000]
    with pytest.raises(DataError, match="different sampling rates"):
        load_many(tmp_path)
    assert len(load_many(tmp_path, allow_mixed_fs=True)) == 2
    assert [r.fs for r in load_many(tmp_path, classes=["IR_7"])] == [12000]
    with pytest.raises(DataError, match="no recording labelled"):
        load_many(tmp_path, classes=["B_7"])
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="broken.npz"):
        catalog(tmp_path)
    df = catalog(tmp_path, errors="skip")
    assert len(df) == 2 and len(df.attrs["skipped"]) == 1
    assert len(catalog(tmp_path, pattern="a.*")) == 1


def test_catalog_reads_hdf5_metadata_only(tmp_path, monkeypatch):
    p = tmp_path / "rec.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("signal", data=np.zeros((1, 5000), np.float32))
        ds.attrs.update({"fs": FS, "label": "B_14", "rpm": 1772.0, "load_hp": 1.0})
    reads = []
    orig = h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, k: reads.append(k) or orig(self, k))
    df = catalog(tmp_path)
    assert reads == []
    row = df.iloc[0]
    assert (row["label"], row["fault"], row["samples"], row["load_hp"], row["fs"]) == ("B_14", "ball", 5000, 1, FS)


# ---------------------------------------------------------------------------------------------------------
# Windows and time splits
# ---------------------------------------------------------------------------------------------------------


def test_windows_values_and_view():
    x = np.arange(2 * 20, dtype=np.float32).reshape(2, 20)
    w = windows(x, 8, 4)
    assert w.shape == (4, 2, 8)
    for i in range(4):
        np.testing.assert_array_equal(w[i], x[:, 4 * i: 4 * i + 8])
    assert not w.flags.writeable and np.shares_memory(w, x)
    assert windows(x, 8).shape == (2, 2, 8)  # hop defaults to length: no overlap
    assert windows(np.arange(10.0), 10).shape == (1, 1, 10)
    with pytest.raises(DataError, match="shorter than one window"):
        windows(x, 21)
    with pytest.raises(DataError, match="positive integer"):
        windows(x, 8, 0)


def test_split_by_time_tiles_without_overlap():
    rec = Recording(np.arange(3 * 1001, dtype=np.float32).reshape(3, 1001), FS, {"label": "x", "source": "s"})
    train, val, test = split_by_time(rec, (0.6, 0.1, 0.3))
    parts = [train, val, test]
    assert [p.meta["part"] for p in parts] == ["train", "val", "test"]
    ends = [p.meta["offset"] + p.samples for p in parts]
    assert [p.meta["offset"] for p in parts] == [0, ends[0], ends[1]] and ends[-1] == 1001
    np.testing.assert_array_equal(np.concatenate([p.signal for p in parts], axis=1), rec.signal)
    for p in parts:  # every part holds exactly the samples at its offsets
        np.testing.assert_array_equal(p.signal, rec.signal[:, p.meta["offset"]: p.meta["offset"] + p.samples])
    train, val, test = split_by_time(rec)
    assert val is None and train.samples == 701 and test.samples == 300 and test.meta["offset"] == 701
    nested = split_by_time(test, (0.5, 0.5))
    assert nested[1].meta["offset"] == 701 + 150
    for bad in [(0.5, 0.4), (1.2, -0.2), (), (0.5, float("nan"))]:
        with pytest.raises(DataError, match="fractions"):
            split_by_time(rec, bad)
    tiny = Recording(np.zeros((1, 3), np.float32), FS, {"source": "t"})
    with pytest.raises(DataError, match="empty"):
        split_by_time(tiny, (0.9, 0.1))


# ---------------------------------------------------------------------------------------------------------
# Normalizer
# ---------------------------------------------------------------------------------------------------------


def _two_class_recs(rng):
    quiet = Recording(rng.normal(0.2, 0.1, (2, 5000)), FS, {"label": "Normal", "rpm": 1797, "load_hp": 0})
    loud = Recording(rng.normal(-1.0, 1.0, (2, 5000)) * np.array([[1.0], [3.0]]), FS,
                     {"label": "IR_7", "rpm": 1797, "load_hp": 0})  # 20 dB above Normal
    return quiet, loud


def test_normalizer_per_class_unit_std_and_roundtrip():
    rng = np.random.default_rng(0)
    quiet, loud = _two_class_recs(rng)
    norm = Normalizer().fit([loud, quiet])
    assert norm.classes == ["Normal", "IR_7"]
    for rec in (quiet, loud):
        z = norm.transform(rec.signal[None], [rec.label])[0]
        np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-5)
        np.testing.assert_allclose(z.std(axis=1), 1.0, rtol=1e-4)
    x = np.stack([quiet.signal[:, :256], loud.signal[:, :256]])
    idx = np.array([0, 1])
    z = norm.transform(x, idx)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(norm.inverse(z, ["Normal", "IR_7"]), x, rtol=1e-5, atol=1e-5)
    zt = norm.transform(torch.from_numpy(x), torch.tensor(idx))
    assert isinstance(zt, torch.Tensor) and zt.dtype == torch.float32
    np.testing.assert_allclose(zt.numpy(), z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm.inverse(zt, idx).numpy(), x, rtol=1e-5, atol=1e-5)
    state = json.loads(json.dumps(norm.to_dict()))
    again = Normalizer.from_dict(state)
    np.testing.assert_allclose(again.transform(x, idx), z)
    with pytest.raises(DataError, match="unknown classes"):
        norm.transform(x, ["Normal", "B_7"])
    with pytest.raises(DataError, match="out of range"):
        norm.transform(x, [0, 5])
    with pytest.raises(DataError, match="channels"):
        norm.transform(x[:, :1], idx)
    with pytest.raises(DataError, match="from_dict"):
        Normalizer.from_dict({"per_class": True, "classes": ["a"], "mean": {}, "std": {}})


def test_normalizer_global_mode():
    rng = np.random.default_rng(1)
    quiet, loud = _two_class_recs(rng)
    norm = Normalizer(per_class=False).fit([quiet, loud])
    both = np.concatenate([quiet.signal, loud.signal], axis=1)
    z = norm.transform(both)
    np.testing.assert_allclose(z.std(axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(norm.inverse(z), both, rtol=1e-4, atol=1e-4)
    assert Normalizer.from_dict(norm.to_dict()).per_class is False
    with pytest.raises(DataError, match="not fitted"):
        Normalizer().transform(both[None], ["x"])


# ---------------------------------------------------------------------------------------------------------
# SegmentDataset
# ---------------------------------------------------------------------------------------------------------


def test_segment_dataset_items_and_collate():
    rng = np.random.default_rng(2)
    quiet, loud = _two_class_recs(rng)
    loud.meta["load_hp"] = 2
    norm = Normalizer().fit([quiet, loud])
    ds = SegmentDataset([loud, quiet], 1024, 512, normalizer=norm)
    per_rec = (5000 - 1024) // 512 + 1
    assert len(ds) == 2 * per_rec and ds.classes == ["Normal", "IR_7"] and ds.fs == FS
    x, k, cond = ds[0]
    assert x.dtype == torch.float32 and x.shape == (2, 1024) and k == 1
    assert cond.dtype == torch.float32 and cond.tolist() == [1797.0, 2.0]
    expected = norm.transform(loud.signal[None, :, 512:1536], ["IR_7"])[0]
    np.testing.assert_allclose(ds[1][0].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert ds[-1][1] == 0 and list(np.bincount(ds.targets)) == [per_rec, per_rec]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch[0].shape == (4, 2, 1024) and batch[1].dtype == torch.int64 and batch[2].shape == (4, 2)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_segment_dataset_refuses_inconsistent_input():
    a = Recording(np.zeros((1, 100)), FS, {"label": "a", "rpm": 1, "load_hp": 0, "source": "a"})
    b = Recording(np.zeros((2, 100)), FS, {"label": "b", "rpm": 1, "load_hp": 0, "source": "b"})
    c = Recording(np.zeros((1, 100)), 2 * FS, {"label": "c", "rpm": 1, "load_hp": 0, "source": "c"})
    no_rpm = Recording(np.zeros((1, 100)), FS, {"label": "a", "source": "no_rpm"})
    with pytest.raises(DataError, match="channel count"):
        SegmentDataset([a, b], 10)
    with pytest.raises(DataError, match="sampling rates"):
        SegmentDataset([a, c], 10)
    with pytest.raises(DataError, match="shorter than one window"):
        SegmentDataset([a], 101)
    with pytest.raises(DataError, match="no_rpm: rpm"):
        SegmentDataset([no_rpm], 10)
    assert torch.isnan(SegmentDataset([no_rpm], 10, missing_cond=float("nan"))[0][2]).all()
    with pytest.raises(DataError, match="not in classes"):
        SegmentDataset([a], 10, classes=["z"])


class _ReadLog:
    """Records the number of elements every h5py read returns, per dataset name."""

    def __init__(self, monkeypatch):
        self.reads: list[tuple[str, int]] = []
        orig = h5py.Dataset.__getitem__

        def getitem(ds, key):
            out = orig(ds, key)
            self.reads.append((ds.name, int(np.size(out))))
            return out

        monkeypatch.setattr(h5py.Dataset, "__getitem__", getitem)

    def of(self, name: str) -> list[int]:
        return [n for d, n in self.reads if d == name]


def test_segment_dataset_from_generated_file_reads_lazily(tmp_path, monkeypatch):
    n, c, t = 200, 2, 1024
    rng = np.random.default_rng(3)
    sig = rng.normal(size=(n, c, t)).astype(np.float32)
    labels = ["IR_7" if i % 2 else "Normal" for i in range(n)]
    path = write_generated(tmp_path / "gen.h5", sig, labels, FS, rpm=np.full(n, 1797.0), load_hp=np.arange(n) % 4)
    log = _ReadLog(monkeypatch)
    ds = SegmentDataset.from_hdf5(path, 256, 256)
    assert log.of("/signals") == []  # building the index reads no signal samples
    assert len(ds) == n * 4 and ds.classes == ["Normal", "IR_7"]
    for i in (0, 5, 799, 401):
        x, k, cond = ds[i]
        row, w = divmod(i, 4)
        np.testing.assert_array_equal(x.numpy(), sig[row, :, 256 * w: 256 * w + 256])
        assert k == (1 if row % 2 else 0) and cond.tolist() == [1797.0, float(row % 4)]
    assert log.of("/signals") == [c * 256] * 4  # one window per item, never the whole dataset
    clone = pickle.loads(pickle.dumps(ds))  # what DataLoader workers receive: no open handle
    np.testing.assert_array_equal(clone[3][0].numpy(), sig[0, :, 768:1024])
    ds.close()


def test_segment_dataset_from_recordings_file_matches_memory(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    quiet, loud = _two_class_recs(rng)
    quiet.meta["sensor"], loud.meta["sensor"] = ["DE", "FE"], ["DE", "FE"]
    path = write_recordings(tmp_path / "recs.h5", [quiet, loud])
    norm = Normalizer().fit([quiet, loud])
    mem = SegmentDataset([quiet, loud], 512, 300, normalizer=norm)
    log = _ReadLog(monkeypatch)
    lazy = SegmentDataset.from_hdf5(path, 512, 300, normalizer=norm)
    assert len(lazy) == len(mem) and lazy.classes == mem.classes
    for i in (0, 7, len(mem) - 1):
        for a, b in zip(lazy[i], mem[i], strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    assert max(n for _, n in log.reads) == 2 * 512
    single = tmp_path / "one.h5"
    write_recordings(single, [quiet])
    assert load(single).label == "Normal" and load(single).meta["sensor"] == ["DE", "FE"]


# ---------------------------------------------------------------------------------------------------------
# Generated-data exchange format
# ---------------------------------------------------------------------------------------------------------


def test_generated_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    sig = rng.normal(size=(6, 2, 64)).astype(np.float32)
    labels = ["B_7", "IR_7", "B_7", "Normal", "IR_7", "B_7"]
    prov = {"model_uri": "models:/vibgan@champion", "model_version": "3", "seed": 7, "config": {"train": {"steps": 5}}}
    path = write_generated(tmp_path / "g.h5", torch.from_numpy(sig), labels, FS, rpm=1797.0, load_hp=np.zeros(6),
                           provenance=prov, channels=["DE", "FE"])
    g = read_generated(path)
    np.testing.assert_array_equal(g.signals, sig)
    assert g.signals.dtype == np.float32 and list(g.labels) == labels and g.fs == FS and g.units == "g"
    assert g.rpm.tolist() == [1797.0] * 6 and g.load_hp.tolist() == [0.0] * 6
    assert g.channels == ["DE", "FE"] and g.provenance == prov and g.attrs["format"] == "vibgan.generated"
    assert g.classes == ["Normal", "B_7", "IR_7"] and g.by_class()["B_7"].shape == (3, 2, 64)
    with h5py.File(path) as f:  # the layout DESIGN.md promises
        assert f["signals"].dtype == np.float32 and f["signals"].shape == (6, 2, 64)
        assert h5py.check_string_dtype(f["labels"].dtype).encoding == "utf-8"
        assert float(f.attrs["fs"]) == FS and f.attrs["units"] == "g"
    assert [p.name for p in tmp_path.iterdir()] == ["g.h5"]


def test_generated_writer_streams_batches(tmp_path):
    rng = np.random.default_rng(6)
    batches = [rng.normal(size=(b, 1, 32)).astype(np.float32) for b in (3, 0, 5, 1)]
    with GeneratedWriter(tmp_path / "s.h5", FS, ["DE"], 32, provenance={"seed": 1}) as w:
        for i, b in enumerate(batches):
            w.append(b, f"c{i}", rpm=np.full(len(b), 1750.0), load_hp=2)
        assert len(w) == 9
        assert not (tmp_path / "s.h5").exists()  # nothing at the destination until close
    g = read_generated(tmp_path / "s.h5")
    np.testing.assert_array_equal(g.signals, np.concatenate(batches))
    assert list(g.labels) == ["c0"] * 3 + ["c2"] * 5 + ["c3"] and g.load_hp.tolist() == [2.0] * 9


def test_generated_writer_is_atomic(tmp_path):
    dest = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="boom"), GeneratedWriter(dest, FS, 1, 16) as w:
        w.append(np.zeros((4, 1, 16)), "a")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_generated(dest, np.ones((2, 1, 16), np.float32), "old", FS)
    with pytest.raises(DataError, match="expected real"), GeneratedWriter(dest, FS, 1, 16) as w:
        w.append(np.zeros((4, 1, 16)), "a")
        w.append(np.zeros((4, 1, 15)), "a")  # wrong length
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"] and list(read_generated(dest).labels) == ["old"] * 2
    w = GeneratedWriter(tmp_path / "x.h5", FS, 1, 16)
    w.append(np.zeros((1, 1, 16)), "a")
    w.abort()
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


def test_generated_writer_rejects_bad_batches(tmp_path):
    with GeneratedWriter(tmp_path / "b.h5", FS, 1, 8) as w:
        w.append(np.zeros((2, 1, 8)), ["a", "b"], rpm=[1.0, 2.0])
        with pytest.raises(DataError, match="rpm: given in some batches"):
            w.append(np.zeros((1, 1, 8)), ["a"])
        with pytest.raises(DataError, match="labels"):
            w.append(np.zeros((2, 1, 8)), ["a"], rpm=[1.0, 2.0])
        with pytest.raises(DataError, match="NaN"):
            w.append(np.full((1, 1, 8), np.nan), ["a"], rpm=[1.0])
    assert len(read_generated(tmp_path / "b.h5")) == 2
    with pytest.raises(DataError, match="fs"):
        GeneratedWriter(tmp_path / "c.h5", 0, 1, 8)
    with pytest.raises(DataError, match="folder"):
        GeneratedWriter(tmp_path / "no" / "c.h5", FS, 1, 8)


def _h5(path: Path, **edits):
    with h5py.File(path, "w") as f:
        f.create_dataset("signals", data=edits.get("signals", np.zeros((3, 1, 8), np.float32)))
        f.create_dataset("labels", data=edits.get("labels", np.array(["a", "b", "c"], dtype=object)),
                         dtype=h5py.string_dtype("utf-8") if "labels" not in edits else None)
        if "fs" in edits:
            if edits["fs"] is not None:
                f.attrs["fs"] = edits["fs"]
        else:
            f.attrs["fs"] = FS
        for k in ("rpm", "provenance"):
            if k in edits:
                (f.attrs if k == "provenance" else f).__setitem__(k, edits[k])
    return path


@pytest.mark.parametrize("edits,match", [
    ({"signals": np.zeros((3, 1, 8), np.float64)}, "float32"),
    ({"signals": np.zeros((3, 8), np.float32)}, r"\(N, C, T\)"),
    ({"labels": np.arange(3)}, "UTF-8"),
    ({"labels": np.array(["a", "b"], dtype=h5py.string_dtype())}, "match signals"),
    ({"fs": None}, "attribute 'fs'"),
    ({"fs": -5.0}, "fs"),
    ({"rpm": np.zeros(2)}, "rpm"),
    ({"signals": np.full((3, 1, 8), np.nan, np.float32)}, "finite"),
    ({"provenance": "{not json"}, "provenance"),
])
def test_read_generated_validates(tmp_path, edits, match):
    path = _h5(tmp_path / "bad.h5", **edits)
    with pytest.raises(DataError, match=match) as err:
        read_generated(path)
    assert "bad.h5" in str(err.value)


def test_read_generated_rejects_garbage(tmp_path):
    p = tmp_path / "junk.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(DataError, match="junk.h5"):
        read_generated(p)
    with pytest.raises(DataError, match="not found"):
        read_generated(tmp_path / "none.h5")


# ---------------------------------------------------------------------------------------------------------
# Property tests: garbage in, only VibganError out
# ---------------------------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                             HealthCheck.too_slow])


def _load_or_vibgan_error(path: Path, **kwargs) -> None:
    try:
        rec = load(path, **kwargs)
    except VibganError:
        return
    assert isinstance(rec, Recording) and np.isfinite(rec.signal).all()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


_MAGIC = {".npz": b"PK\x03\x04", ".mat": b"MATLAB 5.0 MAT-file", ".h5": b"\x89HDF\r\n\x1a\n",
          ".hdf5": b"\x89HDF\r\n\x1a\n", ".csv": b"time,acc\n", ".parquet": b"PAR1", ".wav": b"RIFF"}


@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_random_bytes_raise_only_vibgan_errors(ext, scratch):
    @PROPERTY
    @given(data=st.binary(max_size=2048), magic=st.booleans())
    def check(data, magic):
        p = scratch / f"random{ext}"
        p.write_bytes((_MAGIC[ext] if magic else b"") + data)
        _load_or_vibgan_error(p)
        _load_or_vibgan_error(p, fs=FS)

    check()


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    out = {}
    for fmt in ("npz", "cwru_npz", "mat_v5", "csv", "parquet", "wav", "hdf5", "mat_v73"):
        sub = d / fmt
        sub.mkdir()
        path, kw = WRITERS[fmt](sub)
        # small files keep each mutated load fast
        rec = load(path, **kw)
        if fmt in ("npz", "csv", "parquet", "wav", "hdf5"):
            short = Recording(rec.signal[:, :600], rec.fs, rec.meta)
            path.unlink()
            if fmt == "npz":
                np.savez(path, signal=short.signal, fs=short.fs, label="x")
            elif fmt == "csv":
                pd.DataFrame({"time": np.arange(600) / FS, "acc": short.signal[0]}).to_csv(path, index=False)
            elif fmt == "parquet":
                pd.DataFrame({"a": short.signal[0]}).to_parquet(path)
            elif fmt == "wav":
                scipy.io.wavfile.write(path, int(FS), np.round(short.signal[0] * 30000).astype(np.int16))
            else:
                write_recordings(path, [short])
        out[fmt] = (path.read_bytes(), path.suffix, kw)
    return out


@pytest.mark.parametrize("fmt", ["npz", "cwru_npz", "mat_v5", "csv", "parquet", "wav", "hdf5", "mat_v73"])
def test_corrupted_files_raise_only_vibgan_errors(fmt, valid_files, scratch):
    data, ext, kw = valid_files[fmt]
    name = {"cwru_npz": "1797_IR_7_DE12.npz", "mat_v5": "105.mat", "mat_v73": "105.mat"}.get(fmt, f"valid{ext}")

    @PROPERTY
    @given(cut=st.integers(0, len(data)), flips=st.lists(st.tuples(st.integers(0, len(data) - 1),
                                                                   st.integers(1, 255)), max_size=8))
    def check(cut, flips):
        buf = bytearray(data)
        if fmt not in ("hdf5", "mat_v73"):  # HDF5 is only truncated: the C library is not hardened against flips
            for pos, x in flips:
                buf[pos] ^= x
        p = scratch / name
        p.write_bytes(bytes(buf[:cut]) if cut < len(data) - 1 or fmt in ("hdf5", "mat_v73") else bytes(buf))
        _load_or_vibgan_error(p, **kw)

    check()


@PROPERTY
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=3),
    fill=st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf]),
    dtype=st.sampled_from(["float64", "float32", "int16", "bool", "complex64", "U3"]),
    fs=st.sampled_from([FS, 0.0, -1.0, np.nan, "abc"]),
    key=st.sampled_from(["signal", "DE", "other"]),
)
def test_random_arrays_raise_only_vibgan_errors(scratch, shape, fill, dtype, fs, key):
    arr = np.full(shape, fill if dtype.startswith("float") or dtype.startswith("complex") else 1).astype(dtype)
    p = scratch / "arrays.npz"
    np.savez(p, **{key: arr, "fs": np.asarray(fs)})
    _load_or_vibgan_error(p)
    h = scratch / "arrays.h5"
    with h5py.File(h, "w") as f:
        if arr.dtype.kind != "U":
            ds = f.create_dataset("signal", data=arr)
            ds.attrs["fs"] = np.asarray(fs).astype("S") if isinstance(fs, str) else fs
    _load_or_vibgan_error(h)


def test_wav_header_claiming_more_data_than_present(tmp_path):
    p = tmp_path / "lying.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(struct.pack("<100h", *range(100)))
    data = bytearray(p.read_bytes())
    data[40:44] = struct.pack("<I", 10**9)  # the data chunk now claims a gigabyte
    p.write_bytes(bytes(data))
    _load_or_vibgan_error(p)


def test_parquet_datetime_time_column_and_metadata_fs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 24000
    t = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) * 250_000, unit="ns")  # 4 kHz
    p = tmp_path / "dt.parquet"
    pd.DataFrame({"time": t, "acc": tone(n, fs=4000.0)}).to_parquet(p)
    rec = load(p)
    assert rec.fs == 4000.0 and rec.meta["sensor"] == ["acc"]
    assert peak_hz(rec.signal[0], rec.fs)[0] == pytest.approx(50.0, abs=0.5)
    table = pa.table({"acc": tone()}).replace_schema_metadata({"fs": "12000", "label": "IR_7", "rpm": "1797",
                                                                "units": "g"})
    pq.write_table(table, tmp_path / "md.parquet")
    rec = load(tmp_path / "md.parquet")
    assert (rec.fs, rec.label, rec.meta["fault"], rec.meta["rpm"], rec.meta["units"]) == (FS, "IR_7", "inner", 1797,
                                                                                         "g")


def test_load_many_from_paths_and_fault_name_labels(tmp_path):
    a = _rec_file(tmp_path, "a.npz", FS, "outer")
    b = _rec_file(tmp_path, "b.npz", FS, "normal")
    recs = load_many([a, b])
    assert [r.label for r in recs] == ["normal", "outer"] and [r.meta["fault"] for r in recs] == ["normal", "outer"]


def test_write_failures_are_data_errors(tmp_path):
    rec = Recording(np.zeros((1, 10), np.float32), FS, {"label": "a"})
    with pytest.raises(DataError, match="folder"):
        write_recordings(tmp_path / "missing" / "r.h5", [rec])
    (tmp_path / "taken.h5").mkdir()  # the destination is a folder: the rename fails
    w = GeneratedWriter(tmp_path / "taken.h5", FS, 1, 10)
    w.append(np.zeros((1, 1, 10)), "a")
    with pytest.raises(DataError, match="move it into place"):
        w.close()
    assert [p.name for p in tmp_path.iterdir()] == ["taken.h5"]


def test_the_second_simulated_machine_owes_nothing_to_cwru():
    """configs/machine_b.toml, shortened: a 51.2 kHz sensor resampled to 16 kHz, another bearing by its numbers,
    its own resonances; the segment length comes from its physics and the envelope band from its data, and the
    real recordings pass the envelope check at this bearing's frequencies in that band."""
    from vibgan import validate
    from vibgan.config import load_config
    from vibgan.datasets import load_recordings, prepare_data

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "machine_b.toml", ["data.simulate.duration_s=6", "data.simulate.rpms=[600, 1200]"])
    data = prepare_data(cfg)
    assert data.fs == 16000.0 and data.train_parts[0].meta["fs_original"] == 51200.0
    fcs = data.class_fault_freqs()
    assert fcs["outer"] == pytest.approx(600 / 60 * 6 * (1 - 9.5 / 58), rel=1e-6)  # BPFO of 12 balls, 9.5/58 mm
    assert data.length % 64 == 0 and 16000 / data.length <= 0.03 * fcs["outer"] < 16000 / (data.length - 64)
    assert "50.2 Hz" in data.length_why
    lo, hi = data.envelope_band
    assert lo <= 4800 <= hi or lo <= 6300 <= hi, data.envelope_band_info  # this machine's resonances
    assert lo >= 10 * max(f for f in fcs.values() if f)
    slow = [r for r in load_recordings(cfg) if r.meta["rpm"] == 600 and r.label in ("inner", "outer")]
    train_w, test_w = validate.real_segments(slow, data.length, (0.7, 0.0, 0.3))
    rep = validate.fidelity_report(test_w, train_w, data.fs, real_train=train_w,
                                   fault_freqs={k: characteristic_frequency(k, 600.0, data.geometry) for k in test_w},
                                   c2st=False, envelope_band=data.envelope_band)
    assert rep.envelope_band == data.envelope_band
    for k in ("inner", "outer"):
        assert rep.classes[k].envelope_hit_rate_real >= 0.9, (k, rep.classes[k].envelope_hit_rate_real)
    wrong = validate.fidelity_report(test_w, train_w, data.fs, real_train=train_w, c2st=False,
                                     fault_freqs={k: characteristic_frequency(k, 600.0, "6205") for k in test_w},
                                     envelope_band=data.envelope_band)
    assert all(wrong.classes[k].envelope_hit_rate_real < 0.5 for k in ("inner", "outer"))  # CWRU's bearing: no hits


def test_per_recording_normalisation_trains_each_gain_at_unit_variance_and_returns_its_units():
    """Two speeds of one class recorded by sensors of gains 1 and 10: per class, the quiet recording would be
    a tenth of unit variance in training; per recording both are at unit variance, and the normaliser sends
    outputs back at each condition's own level (the nearest recorded speed for others)."""
    from vibgan.datasets import TrainData
    from vibgan.normalize import Normalizer
    from vibgan.synthetic import simulate_bearing

    recs = []
    for rpm, gain in ((1500.0, 1.0), (1800.0, 10.0)):
        r = simulate_bearing("inner", rpm, 12000.0, 3.0, seed=int(rpm))
        recs.append(type(r)(r.signal * gain, r.fs, r.meta))
    per_class = TrainData.from_recordings(recs, length=1024)
    per_rec = TrainData.from_recordings(recs, length=1024, per_recording=True)
    for td, want in ((per_class, None), (per_rec, (1.0, 1.0))):
        stds = [float(td.signals[i, : int(td.lengths[i])].std()) for i in range(2)]
        if want is None:
            assert stds[1] / stds[0] > 5  # one scale per class: the gain difference stays in training
        else:
            assert stds == pytest.approx(want, rel=1e-3)
    norm = per_rec.normalizer
    ones = np.ones((2, 1, 8), dtype=np.float32)
    std_of = {rpm: float(norm.std[norm._rows(["inner"], 1, (rpm, 0.0))[0], 0]) for rpm in (1500.0, 1750.0, 1800.0)}
    own = {p.meta["rpm"]: float(p.signal.std()) for p in per_rec.train_parts}  # each recording's own level
    assert std_of[1800.0] / std_of[1500.0] == pytest.approx(own[1800.0] / own[1500.0], rel=1e-3)
    assert std_of[1800.0] / std_of[1500.0] > 8  # the gain of 10, not averaged away
    assert std_of[1750.0] == std_of[1800.0]  # nearest recorded speed
    back = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_allclose(back.inverse(ones, ["inner"] * 2, conds=(1800.0, 0.0)),
                               norm.inverse(ones, ["inner"] * 2, conds=(1800.0, 0.0)))
