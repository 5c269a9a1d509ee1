"""Saves made before the module split (tests/fixtures/pre_split, written by vibgan 98e9d1c) still load, sample
and resume to the same numbers, and MLflow models that name the old loader module still load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vibgan.config import load_config
from vibgan.datasets import prepare_data
from vibgan.generator import TrainedGenerator
from vibgan.registry import load_generator, save_model
from vibgan.tracking import MemoryTracker
from vibgan.train import train

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pre_split"
#: the settings make_fixture.py trained with
SETTINGS = ["train.batch_size=4", "data.simulate.duration_s=2", "data.segment_length=1024", "validate.n_fake=4",
            "train.progress=false", "train.threads=1", "model.widths=[16,12,8,4]", "model.d_channels=4",
            "model.eq_fft=64", "data.simulate.faults=['normal', 'inner']", "data.simulate.rpms=[1800.0]",
            "train.eval_every=2", "train.sample_every=100", "train.checkpoint_every=2", "tracking.enabled=false"]


def test_a_generator_saved_before_the_split_samples_the_same_numbers():
    g = TrainedGenerator.load(FIXTURE / "generator")
    x = g.sample("inner", 3, rpm=1800, seed=7)
    # the same numbers up to float summation order (torch's thread count changes the last bit)
    np.testing.assert_allclose(x, np.load(FIXTURE / "samples_step2_inner_seed7.npy"), rtol=1e-5, atol=1e-6)
    # and a different seed is a different draw: the equality above is not a constant output
    assert not np.allclose(g.sample("inner", 3, rpm=1800, seed=8), x)


def test_a_checkpoint_written_before_the_split_resumes_to_the_uninterrupted_result(tmp_path, one_torch_thread):
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(FIXTURE / "ckpt_00000002.pt", tmp_path / "checkpoints")
    cfg = load_config(None, [*SETTINGS, "train.steps=4", f"out={str(tmp_path)!r}"])
    res = train(cfg, prepare_data(cfg), MemoryTracker(), resume=True)
    assert res.steps == 4
    x = res.generator.sample("inner", 3, rpm=1800, seed=7)
    # the equaliser filters by FFT since 2026-12 (the same linear convolution, other rounding: 4e-6 on a
    # forward pass); two training steps carry that to ~1e-5, a thousandth of what steps 3-4 change (~0.07 mean)
    expected = np.load(FIXTURE / "samples_step4_inner_seed7.npy")
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=5e-5)
    assert np.abs(expected - np.load(FIXTURE / "samples_step2_inner_seed7.npy")).mean() > 1000 * 5e-5


def test_an_mlflow_model_naming_the_old_loader_module_still_loads(tmp_path):
    import mlflow.pyfunc

    model = save_model(FIXTURE / "generator", tmp_path / "model")
    mlmodel = model / "MLmodel"
    text = mlmodel.read_text()
    assert "loader_module: vibgan.serving" in text
    mlmodel.write_text(text.replace("loader_module: vibgan.serving", "loader_module: vibgan.tracking"))
    expected = np.load(FIXTURE / "samples_step2_inner_seed7.npy")
    g = load_generator(model)
    np.testing.assert_allclose(g.sample("inner", 3, rpm=1800, seed=7), expected, rtol=1e-5, atol=1e-6)
    served = mlflow.pyfunc.load_model(str(model))
    out = served.predict({"label": "inner", "n": 3, "rpm": 1800.0, "seed": 7})
    np.testing.assert_allclose(np.asarray(out["signal"].tolist(), dtype=np.float32), expected, rtol=1e-5, atol=1e-6)

