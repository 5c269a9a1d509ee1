"""Distillation (issue 22): a narrower body learns the full one's output; the parts outside the body are copied."""

from __future__ import annotations

import json

import pytest
import torch

from vibgan.config import ModelConfig, load_config
from vibgan.distill import distill, student_config
from vibgan.errors import ConfigError
from vibgan.generator import TrainedGenerator
from vibgan.networks import build_models

FS, T = 12000.0, 1024
TEACHER = ModelConfig(widths=[24, 16, 8], upsample=[4, 4], out_upsample=4, res_blocks=[1, 1, 0], noise_dim=8,
                      kernel=7, impulse_ms=5.0, jitter_cell_ms=0.5, impulse_trains="fault", variety=True)
META = {"classes": ["normal", "inner"], "fs": FS, "channels": ["DE"], "length": T, "geometry": "6205",
        "conditions": {"normal": [[1500.0, 0.0]], "inner": [[1500.0, 0.0], [1800.0, 0.0]]}}


def _teacher(seed: int = 0) -> TrainedGenerator:
    from dataclasses import asdict

    torch.manual_seed(seed)
    G, _ = build_models(TEACHER, n_classes=2, channels=1, length=T, fs=FS, faults=["normal", "inner"])
    with torch.no_grad():  # a body that is not the identity at start: FiLM and noise gains away from zero
        for p in G.phase_proj.parameters():
            p.normal_(0.0, 0.2)
        for part in (G.inp, G.ups, G.blocks):  # a body whose output is mostly its own, not the fine noise's
            for p in part.parameters():
                p.mul_(2.0)
        G.noise_gain[-1].fill_(0.01)
        G.temperature.copy_(torch.tensor([0.8, 1.3]))
        G.impulse.kernel.normal_(0.0, 0.1)
    return TrainedGenerator(G, None, {**META, "model": asdict(TEACHER)})


def _gap(teacher: TrainedGenerator, student: TrainedGenerator, seed: int = 99) -> float:
    """Relative L1 of the student's body output against the teacher's on fresh latents at the two conditions."""
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([0, 1] * 8)
    cond = torch.tensor([[1500.0, 0.0], [1800.0, 0.0]] * 8)
    with torch.no_grad():
        latent = teacher.model.sample_latent(16, T, g)
        a = teacher.model.body_output(latent, y, cond)[0]
        b = student.model.body_output(latent, y, cond)[0]
    return float((a - b).abs().mean() / a.abs().mean())


def test_the_student_learns_the_teachers_output_and_keeps_its_other_parts():
    teacher = _teacher()
    teacher.model.train()  # whatever mode the teacher is in, it comes back in it, its gradients untouched
    flags = [p.requires_grad for p in teacher.model.parameters()]
    untrained, _ = distill(teacher, widths=[12, 8, 8], kernel=5, steps=1, lr=1e-9)
    assert teacher.model.training and [p.requires_grad for p in teacher.model.parameters()] == flags
    teacher.model.eval()
    student, info = distill(teacher, widths=[12, 8, 8], kernel=5, steps=400, batch_size=16, lr=5e-3)
    before, after = _gap(teacher, untrained), _gap(teacher, student)
    assert after < 0.65 * before, (before, after)  # it learned (a random teacher body ×2 is hard to fit)
    assert info["params_student"] < 0.6 * info["params_teacher"]
    assert student.meta["model"]["widths"] == [12, 8, 8] and student.meta["model"]["kernel"] == 5
    assert student.meta["distilled_from"]["model"]["widths"] == [24, 16, 8]
    # outside the body everything is the teacher's, exactly: the same impacts, equaliser and knobs
    t_sd, s_sd = teacher.model.state_dict(), student.model.state_dict()
    for name in [n for n in t_sd if n.startswith(("impulse.", "eq.", "class_embed.")) or
                 n in ("temperature", "slip_scale", "segment_mode", "impulse_gain")]:
        assert torch.equal(t_sd[name], s_sd[name]), name
    g = torch.Generator().manual_seed(5)
    latent = teacher.model.sample_latent(4, T, g)
    y, cond = torch.tensor([1, 1, 0, 1]), torch.tensor([[1650.0, 0.0]] * 4)
    with torch.no_grad():
        xt, it = teacher.model.sources(latent, y, cond)
        xs, is_ = student.model.sources(latent, y, cond)
    assert torch.equal(it, is_)
    # the teacher's weights are left as they were; the student needs no gradients once made
    assert not any(p.requires_grad for p in student.model.parameters())
    assert all(torch.equal(v, teacher.model.state_dict()[k]) for k, v in _teacher().model.state_dict().items())


def test_a_student_that_changes_the_latent_or_the_levels_is_refused():
    with pytest.raises(ConfigError, match="noise_dim cannot differ"):
        student_config(TEACHER, noise_dim=4)
    with pytest.raises(ConfigError, match="needs 3 levels"):
        student_config(TEACHER, widths=[8, 8])
    with pytest.raises(ConfigError, match="widths = \\[0, 8, 8\\]"):
        student_config(TEACHER, widths=[0, 8, 8])
    with pytest.raises(ConfigError, match="res_blocks"):
        student_config(TEACHER, res_blocks=[-1, 0, 0])
    with pytest.raises(ConfigError, match="kernel = 4"):
        student_config(TEACHER, kernel=4)
    with pytest.raises(ConfigError, match="distill.steps"):
        load_config(None, ["distill.enabled=true", "distill.steps=0"])
    with pytest.raises(ConfigError, match="distill.widths"):
        load_config(None, ["distill.enabled=true", "distill.widths=[8, 8]"])
    with pytest.raises(ConfigError, match="distill.kernel"):
        load_config(None, ["distill.enabled=true", "distill.kernel=4"])
    with pytest.raises(ConfigError, match="distill.enabled"):
        load_config(None, ["distill.enabled=true", "model.kind='mlp'", "data.segment_length=1024"])


def test_training_with_distill_ships_the_student_and_keeps_the_full_generator(tmp_path):
    from tests.test_train import small_cfg
    from vibgan.datasets import prepare_data
    from vibgan.tracking import MemoryTracker
    from vibgan.train import train

    cfg = small_cfg(tmp_path, "train.steps=2", "model.widths=[16, 12, 8]", "model.upsample=[4, 4]",
                    "model.out_upsample=4", "model.res_blocks=[1, 1, 0]", "model.noise_dim=8",
                    "distill.enabled=true", "distill.widths=[8, 8, 8]", "distill.kernel=5", "distill.steps=3",
                    "distill.batch_size=2")
    tracker = MemoryTracker()
    res = train(cfg, prepare_data(cfg), tracker)
    saved = json.loads((tmp_path / "generator" / "generator.json").read_text())
    assert saved["model"]["widths"] == [8, 8, 8] and saved["distilled_from"]["model"]["widths"] == [16, 12, 8]
    full = TrainedGenerator.load(tmp_path / "generator_full")
    assert full.meta["model"]["widths"] == [16, 12, 8] and "distilled_from" not in full.meta
    loaded = TrainedGenerator.load(tmp_path / "generator")
    assert loaded.model.inp.out_channels == 8 and res.full is not None
    assert tracker.params["distill/widths"] in ([8, 8, 8], "[8, 8, 8]")
    x = loaded.sample("inner", 2, seed=1)
    assert x.shape == (2, 1, 1024) and torch.isfinite(torch.from_numpy(x)).all()


def test_the_distill_command_writes_a_loadable_student_and_refuses_bad_input(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("distill_cli", Path(__file__).parents[1] / "pipelines" / "distill.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    _teacher().save(tmp_path / "teacher")
    assert cli.main(["--model", str(tmp_path / "teacher"), "--out", str(tmp_path / "s"), "--kernel", "4"]) == 2
    assert "--kernel" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert cli.main(["--model", str(tmp_path / "teacher"), "--out", str(tmp_path / "s"), "--widths", "8", "8", "8",
                     "--steps", "2", "--batch-size", "2"]) == 0
    student = TrainedGenerator.load(tmp_path / "s")
    assert student.meta["model"]["widths"] == [8, 8, 8] and student.sample("inner", 1, seed=0).shape == (1, 1, T)
    assert cli.main(["--model", str(tmp_path / "teacher"), "--out", str(tmp_path / "s2"), "--widths", "8", "8"]) == 2
    assert "needs 3 levels" in capsys.readouterr().err


def test_the_model_card_says_the_generator_was_distilled():
    from types import SimpleNamespace

    from vibgan.registry import model_card

    student, _ = distill(_teacher(), widths=[8, 8, 8], steps=1, batch_size=2)
    cfg = load_config(None, ["data.segment_length=1024"])
    card = model_card(SimpleNamespace(generator=student, steps=5, device="cpu", wall_s=1.0), cfg)
    assert "distilled (vibgan.distill, 1 steps) from a body of widths [24, 16, 8], kernel 7 into widths [8, 8, 8]" in card
    assert "distilled" not in model_card(SimpleNamespace(generator=_teacher(), steps=5, device="cpu", wall_s=1.0), cfg)


def test_short_segments_distil_and_a_stale_full_generator_is_set_aside(tmp_path):
    from tests.test_train import small_cfg
    from vibgan.datasets import prepare_data
    from vibgan.tracking import MemoryTracker
    from vibgan.train import train

    base = ["train.steps=1", "model.widths=[8, 8, 8]", "model.upsample=[4, 4]", "model.out_upsample=4",
            "model.res_blocks=[0, 0, 0]", "model.noise_dim=4", "data.segment_length=128"]
    cfg = small_cfg(tmp_path, *base, "distill.enabled=true", "distill.steps=2", "distill.batch_size=2")
    train(cfg, prepare_data(cfg), MemoryTracker())  # 128 samples: shorter than the STFT sizes, which shrink to it
    assert (tmp_path / "generator_full" / "generator.json").is_file()
    cfg = small_cfg(tmp_path, *base)
    train(cfg, prepare_data(cfg), MemoryTracker())
    assert not (tmp_path / "generator_full").exists()
    assert len(list(tmp_path.glob("generator_full.set-aside-*"))) == 1  # kept, not deleted
