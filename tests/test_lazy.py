"""Training from an HDF5 recordings file read lazily (data.lazy): same batches as in memory, bounded
memory whatever the file size, clear errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from vibgan.config import load_config
from vibgan.datasets import TrainData, prepare_data
from vibgan.errors import ConfigError, DataError
from vibgan.exchange import write_recordings
from vibgan.synthetic import simulate_dataset


@pytest.fixture(scope="module")
def recs():
    return simulate_dataset(faults=("normal", "inner"), rpms=(1800.0,), fs=12000.0, duration=4.0, severity=1.0, seed=1)


def lazy_cfg(path, *extra):
    return load_config(None, ["data.source='files'", f"data.path={str(path)!r}", "data.lazy=true",
                              "data.segment_length=1024", *extra])


def test_lazy_batches_equal_in_memory_batches(tmp_path, recs):
    path = write_recordings(tmp_path / "recs.h5", recs)
    lazy = prepare_data(lazy_cfg(path))
    mem = TrainData.from_recordings(recs, length=1024)
    assert type(lazy).__name__ == "LazyTrainData" and lazy.classes == mem.classes
    np.testing.assert_allclose(lazy.normalizer.mean, mem.normalizer.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(lazy.normalizer.std, mem.normalizer.std, rtol=1e-9)
    xl, yl, cl, gl = lazy.sample(64, torch.Generator().manual_seed(3))
    xm, ym, cm, gm = mem.sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(yl, ym) and torch.equal(cl, cm) and torch.equal(gl, gm)
    torch.testing.assert_close(xl, xm, atol=1e-5, rtol=1e-5)  # the same windows, normalised the same way
    assert lazy.signals.numel() <= lazy.signals.shape[0] * len(lazy.channels)  # no samples held in memory


def test_lazy_keeps_only_bounded_excerpts_for_evaluation(tmp_path):
    long = simulate_dataset(faults=("outer",), rpms=(1800.0,), fs=12000.0, duration=30.0, seed=2)
    path = write_recordings(tmp_path / "long.h5", long)
    data = prepare_data(lazy_cfg(path))
    assert data.lengths.tolist() == [int(round(0.7 * 30 * 12000))]  # training draws from the whole 70 %
    assert data.train_parts[0].samples == 64 * 1024 < data.lengths[0]  # but only 64 windows are kept
    assert data.test_parts[0].meta["offset"] == int(round(0.7 * 30 * 12000))  # from the held-out part
    assert data.train_parts[0].meta["fault"] == "outer"


def test_lazy_errors_name_the_file_and_field(tmp_path, recs):
    with pytest.raises(ConfigError, match="data.lazy"):
        load_config(None, ["data.lazy=true"])  # simulated data cannot be lazy
    with pytest.raises(ConfigError, match="no such file"):
        prepare_data(lazy_cfg(tmp_path / "missing.h5"))
    path = write_recordings(tmp_path / "nan.h5", recs)
    with h5py.File(path, "r+") as f:
        f["recordings/00001"][0, 100] = np.nan
    with pytest.raises(DataError, match=r"nan\.h5: dataset /recordings/00001: samples 0:.*NaN"):
        prepare_data(lazy_cfg(path))
