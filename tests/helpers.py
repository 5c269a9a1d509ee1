"""Shared test settings: the tiny training configuration several test files train with."""

from __future__ import annotations

#: A training run small enough for a test: 1 thread, a short simulated recording, narrow networks.
TINY_BASE = ["train.batch_size=4", "data.simulate.duration_s=2", "data.segment_length=1024", "validate.n_fake=4",
             "train.progress=false", "train.threads=1", "model.widths=[32,24,16,8]", "model.d_channels=8"]
#: TINY_BASE for 4 steps, evaluating and checkpointing every 2.
TINY = [*TINY_BASE, "train.steps=4", "train.eval_every=2", "train.sample_every=4", "train.checkpoint_every=2"]


def train_tiny(cfg, data, tracker, **kw):
    """Train with one torch thread (the 2-core CI box is shared), then give torch its threads back."""
    import torch

    from vibgan.train import train

    threads = torch.get_num_threads()
    try:
        return train(cfg, data, tracker, **kw)
    finally:
        torch.set_num_threads(threads)
