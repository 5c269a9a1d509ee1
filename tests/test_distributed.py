"""Multi-process training under torchrun (gloo on the CPU): identical weights, rank 0 alone writes,
per-rank data shards, resume; and the pipeline end to end with MLflow."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no gloo backend")


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def run_worker(out: Path, record: Path, steps: int, resume: bool = False) -> list[dict]:
    torchrun(str(ROOT / "tests" / "ddp_worker.py"), str(out), str(record), str(steps), *(["resume"] if resume else []))
    return [json.loads((record / f"rank{r}.json").read_text()) for r in range(2)]


def weights(record: Path, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(record / f"rank{rank}.pt", weights_only=True)["G"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """Two gloo ranks, 4 uninterrupted steps: (output dir, record dir, per-rank info)."""
    tmp = tmp_path_factory.mktemp("ddp_full")
    return tmp / "out", tmp / "rec", run_worker(tmp / "out", tmp / "rec", steps=4)


@pytest.mark.slow
def test_two_gloo_ranks_end_identical_and_only_rank0_writes(full_run):
    out, rec, info = full_run
    assert [i["world"] for i in info] == [2, 2]
    w0, w1 = weights(rec, 0), weights(rec, 1)
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # DDP averaged the gradients: the weights never diverged
    assert info[0]["fingerprints"][0] == info[0]["fingerprints"][1]
    # rank 0 wrote every checkpoint (steps 2 and 4) and the generator, and logged; rank 1 wrote and logged nothing
    assert info[0]["wrote"] == ["checkpoint", "checkpoint", "generator"] and info[0]["metrics"] > 0
    assert info[1]["wrote"] == [] and info[1]["metrics"] == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    ck = torch.load(out / "checkpoints" / "ckpt_00000004.pt", weights_only=True)
    assert len(ck["gen_ranks"]) == 2 and not torch.equal(ck["gen_ranks"][0], ck["gen_ranks"][1])  # own streams


@pytest.mark.slow
def test_distributed_resume_equals_uninterrupted(full_run, tmp_path):
    run_worker(tmp_path / "part", tmp_path / "rec_a", steps=2)
    info = run_worker(tmp_path / "part", tmp_path / "rec_b", steps=4, resume=True)
    assert info[0]["steps"] == 4
    full, resumed = weights(full_run[1], 0), weights(tmp_path / "rec_b", 0)
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    assert not all(torch.equal(full[k], weights(tmp_path / "rec_a", 0)[k]) for k in full)  # it did train on


def test_shards_draw_window_starts_from_disjoint_parts_of_each_recording():
    from vibgan.datasets import TrainData

    n, T = 10_000, 256
    ramp = torch.arange(n, dtype=torch.float32)[None, :, None].repeat(2, 1, 1)  # value = sample index
    data = TrainData(classes=["a", "b"], fs=1000.0, channels=["x"], length=T, signals=ramp,
                     lengths=torch.tensor([n, n]), rec_class=torch.tensor([0, 1]), rec_cond=torch.zeros(2, 2),
                     normalizer=None)
    starts = {}
    for r in range(3):
        x, *_ = dataclasses.replace(data, shard=(r, 3)).sample(2000, torch.Generator().manual_seed(r))
        starts[r] = x[:, 0, 0].numpy()
    span = n - T + 1
    for r in range(3):
        assert starts[r].min() >= r * span // 3 and starts[r].max() < (r + 1) * span // 3
        assert starts[r].max() - starts[r].min() > 0.9 * span / 3  # the whole shard is used
    one, *_ = data.sample(2000, torch.Generator().manual_seed(0))
    assert np.ptp(one[:, 0, 0].numpy()) > 0.9 * span  # a single process still sees everything


@pytest.mark.slow
def test_torchrun_pipeline_logs_one_run_and_registers_once(tmp_path):
    db = tmp_path / "mlflow.db"
    proc = torchrun(str(ROOT / "pipelines" / "train.py"), "--out", str(tmp_path / "out"),
                    "--tracking-uri", f"sqlite:///{db}", "--no-report",
                    "--set", "train.steps=4", "--set", "train.batch_size=4", "--set", "data.simulate.duration_s=2",
                    "--set", "data.segment_length=1024", "--set", "train.eval_every=2", "--set", "train.sample_every=4",
                    "--set", "train.checkpoint_every=2", "--set", "train.progress=false", "--set", "train.threads=1",
                    "--set", "model.widths=[24,16,8]", "--set", "model.d_channels=8",
                    "--set", "tracking.register_name='vibgan-ddp'", "--set", "tracking.champion_if='always'")
    assert "ranks: 2 processes (DDP), generator weights identical on all" in proc.stdout
    assert proc.stdout.count("trained 4 steps") == 1  # rank 1 prints nothing of its own
    con = sqlite3.connect(db)
    assert con.execute("select count(*) from runs").fetchone()[0] == 1
    assert con.execute("select count(*) from model_versions where name='vibgan-ddp'").fetchone()[0] == 1
    assert con.execute("select count(distinct step) from metrics where key='loss/d'").fetchone()[0] >= 1
