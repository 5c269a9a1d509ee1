"""Run by tests/test_distributed.py under torchrun: train a tiny model and record, per rank, the final
weights and which outputs this rank wrote (not collected by pytest)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from vibgan import distributed
from vibgan import train as train_mod
from vibgan.config import load_config
from vibgan.datasets import prepare_data
from vibgan.tracking import MemoryTracker


def main(out: str, record: str, steps: int, resume: bool) -> None:
    cfg = load_config(None, [
        f"train.steps={steps}", "train.batch_size=4", "data.simulate.duration_s=2", "data.segment_length=1024",
        "data.simulate.faults=['normal', 'inner']", "data.simulate.rpms=[1800.0]",
        "train.eval_every=2", "train.sample_every=100", "train.checkpoint_every=2", "train.progress=false",
        "train.threads=1", "model.widths=[32,24,16,8]", "model.d_channels=8", "tracking.enabled=false",
        f"out={out!r}",
    ])
    ctx = distributed.setup("cpu")
    wrote: list[str] = []
    save_ckpt, save_gen = train_mod.save_checkpoint, train_mod.TrainedGenerator.save

    def spy_ckpt(*a, **k):
        wrote.append("checkpoint")
        return save_ckpt(*a, **k)

    def spy_gen(self, *a, **k):
        wrote.append("generator")
        return save_gen(self, *a, **k)

    train_mod.save_checkpoint, train_mod.TrainedGenerator.save = spy_ckpt, spy_gen
    tracker = MemoryTracker()
    data = prepare_data(cfg)
    res = train_mod.train(cfg, data, tracker, resume=resume)
    rec = Path(record)
    rec.mkdir(parents=True, exist_ok=True)
    torch.save({"G": res.generator.model.state_dict(), "D": None}, rec / f"rank{ctx.rank}.pt")
    # what this rank wrote, and how many distinct windows it trained on (its shard of each recording)
    (rec / f"rank{ctx.rank}.json").write_text(json.dumps({
        "rank": ctx.rank, "world": ctx.world, "wrote": wrote, "metrics": len(tracker.metrics),
        "fingerprints": res.fingerprints, "steps": res.steps,
    }))
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "resume")
