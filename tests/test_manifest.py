"""A user's own data through a manifest: written for a folder, edited, trained from; bad rows refused first."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vibgan.bearing import characteristic_frequency, fault_frequencies
from vibgan.config import load_config
from vibgan.datasets import prepare_data
from vibgan.errors import ConfigError, DataError
from vibgan.manifest import load_manifest, read_manifest, write_manifest
from vibgan.validate import fault_frequencies as class_fault_frequencies

FS = 25600.0


def recording_file(folder, name, *, fs=FS, seconds=1.0, f0=300.0, with_fs=True):
    t = np.arange(int(fs * seconds)) / fs
    x = np.sin(2 * np.pi * f0 * t)[None, :] + 0.01 * np.random.default_rng(0).standard_normal((1, t.size))
    p = folder / name
    fields = {"signal": x.astype(np.float32)}
    if with_fs:
        fields["fs"] = np.float64(fs)
    np.savez(p, **fields)
    return p


@pytest.fixture
def rig(tmp_path):
    """A test rig's folder: two files the names say nothing about, and a manifest written for them."""
    (tmp_path / "rec").mkdir()
    recording_file(tmp_path / "rec", "run1.npz", f0=200.0)
    recording_file(tmp_path / "rec", "run2.npz", f0=900.0)
    manifest = write_manifest(tmp_path / "rec", tmp_path / "recordings.csv")
    return tmp_path, manifest


def test_write_manifest_then_edit_and_train_from_it(rig):
    root, manifest = rig
    df = pd.read_csv(manifest)
    assert list(df["path"]) == ["rec/run1.npz", "rec/run2.npz"] and list(df["fs"]) == [FS, FS]
    assert df["label"].isna().all()  # nothing in the files says the class: the user fills it in
    df["label"] = ["healthy", "IR2"]  # a 2-degree inner-race defect: not a CWRU label, still an inner fault
    df["fault"] = ["normal", "inner"]
    df["rpm"] = [900, 900]
    df = df.rename(columns={"severity_in": "severity_deg"})
    df["severity_deg"] = [0, 2]
    for c, v in (("n_balls", 13), ("ball_diameter", 7.9), ("pitch_diameter", 38.5), ("diameter_unit", "mm")):
        df[c] = v
    df = df.drop(columns=["bearing"])
    df.to_csv(manifest, index=False)

    recs = load_manifest(manifest)
    assert [(r.label, r.meta["fault"], r.meta["rpm"], r.meta["severity"], r.meta["severity_unit"]) for r in recs] == \
        [("healthy", "normal", 900.0, 0.0, "deg"), ("IR2", "inner", 900.0, 2.0, "deg")]
    bearing = recs[1].meta["bearing"]
    assert (bearing["n_balls"], bearing["unit"]) == (13, "mm")
    fc = class_fault_frequencies(recs)
    assert fc["healthy"] is None
    assert fc["IR2"] == pytest.approx(characteristic_frequency("inner", 900.0, bearing))
    assert fc["IR2"] != pytest.approx(characteristic_frequency("inner", 900.0, "6205"), rel=0.01)  # its own bearing

    cfg = load_config(None, ["data.source='files'", f"data.manifest={str(manifest)!r}", "data.channels=['ch0']",
                             "data.segment_length=1024"])
    td = prepare_data(cfg)
    assert td.classes == ["healthy", "IR2"] and td.fs == FS and td.geometry["n_balls"] == 13
    resampled = prepare_data(load_config(None, [*["data.source='files'", f"data.manifest={str(manifest)!r}",
                                                  "data.channels=['ch0']", "data.segment_length=1024"],
                                                "data.fs=12800.0"]))
    assert resampled.fs == 12800.0 and resampled.train_parts[0].meta["fs_original"] == FS


def _edit(manifest, **changes):
    df = pd.read_csv(manifest)
    df["label"], df["fault"], df["rpm"] = ["a", "b"], ["normal", "outer"], [1200, 1200]
    for k, v in changes.items():
        if v is None:
            df = df.drop(columns=[k])
        else:
            df[k] = v
    df.to_csv(manifest, index=False)
    return manifest


@pytest.mark.parametrize("changes, words", [
    ({"fault": None}, ["missing column", "fault"]),
    ({"fault": ["normal", "crack"]}, ["row 3", "fault", "crack", "normal, inner, outer, ball, other"]),
    ({"path": ["rec/run1.npz", "rec/missing.npz"]}, ["row 3", "path", "missing.npz", "does not exist"]),
    ({"rpm": [1200, -5]}, ["row 3", "rpm", "positive"]),
    ({"n_balls": [9, 9], "ball_diameter": [0.3, 2.0], "pitch_diameter": [1.5, 1.5]},
     ["row 3", "bearing", "ball_diameter < pitch_diameter"]),
    ({"bearing": ["6205", "nonsuch"]}, ["row 3", "bearing", "unknown name", "nonsuch"]),
])
def test_bad_manifests_name_the_row_and_the_field(rig, changes, words):
    _, manifest = rig
    with pytest.raises(DataError) as e:
        read_manifest(_edit(manifest, **changes))
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_an_fs_that_disagrees_with_the_file_is_refused_with_its_row(rig):
    _, manifest = rig
    _edit(manifest, fs=[FS, 48000.0])
    with pytest.raises(DataError, match=r"row 3: .*fs: the file says 25600 Hz.*48000"):
        load_manifest(manifest)


def test_a_row_gives_fs_where_the_file_has_none(tmp_path):
    recording_file(tmp_path, "a.npz", with_fs=False)
    (tmp_path / "m.csv").write_text(f"path,label,fault,rpm,fs\na.npz,x,other,600,{FS}\n")
    (rec,) = load_manifest(tmp_path / "m.csv")
    assert rec.fs == FS and rec.meta["fault"] is None and rec.meta["fault_type"] == "other"


def test_a_bearing_by_its_numbers_in_the_config(tmp_path):
    numbers = ["data.bearing.n_balls=13", "data.bearing.ball_diameter=7.9", "data.bearing.pitch_diameter=38.5"]
    cfg = load_config(None, [*numbers, "data.segment_length=1024", "data.simulate.duration_s=1.0"])
    td = prepare_data(cfg)
    assert td.geometry["n_balls"] == 13 and td.geometry["unit"] == "mm"
    assert fault_frequencies(1500, td.geometry)["bpfo"] == pytest.approx(13 * 25 / 2 * (1 - 7.9 / 38.5))
    with pytest.raises(ConfigError, match="data.bearing"):
        load_config(None, ["data.bearing.n_balls=9", "data.bearing.ball_diameter=40", "data.bearing.pitch_diameter=38"])
    with pytest.raises(ConfigError, match="data.geometry"):
        load_config(None, ["data.geometry='7311'"])


def test_a_generator_of_a_bearing_by_its_numbers_saves_and_loads_them(tmp_path):
    from helpers import TINY_BASE

    from vibgan.generator import TrainedGenerator
    from vibgan.networks import characteristic_ratios
    from vibgan.tracking import MemoryTracker
    from vibgan.train import train

    numbers = ["data.bearing.n_balls=13", "data.bearing.ball_diameter=7.9", "data.bearing.pitch_diameter=38.5"]
    cfg = load_config(None, [*TINY_BASE, *numbers, "train.steps=1", "data.simulate.faults=['normal', 'outer']",
                             "data.simulate.rpms=[1500.0]", "tracking.enabled=false", f"out={str(tmp_path)!r}"])
    res = train(cfg, prepare_data(cfg), MemoryTracker())
    g = TrainedGenerator.load(res.generator_dir)
    assert g.meta["geometry"]["n_balls"] == 13
    expected = characteristic_ratios({"n_balls": 13, "ball_diameter": 7.9, "pitch_diameter": 38.5})
    assert g.model.ratios.tolist() == pytest.approx(expected)
    assert expected != pytest.approx(characteristic_ratios("6205"))
