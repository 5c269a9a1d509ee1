"""Shared test settings and tools: the tiny training configuration, training it, and loading a script by path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: A training run small enough for a test: 1 thread, a short simulated recording, narrow networks.
TINY_BASE = ["train.batch_size=4", "data.simulate.duration_s=2", "data.segment_length=1024", "validate.n_fake=4",
             "train.progress=false", "train.threads=1", "model.widths=[24,16,8]", "model.d_channels=8",
             "model.upsample=[4,4]", "model.out_upsample=4", "model.res_blocks=[1,1,0]",
             # configs/default.toml distils at the end: kept, in 2 steps, so the tests see the student ship
             "distill.widths=[16,8,8]", "distill.steps=2", "distill.batch_size=2"]
#: TINY_BASE for 4 steps, evaluating and checkpointing every 2.
TINY = [*TINY_BASE, "train.steps=4", "train.eval_every=2", "train.sample_every=4", "train.checkpoint_every=2"]


def tiny_config(out: Path, *, uri: str = "", name: str = "vibgan-test", steps: int = 4, extra: list[str] | None = None):
    """configs/default.toml with TINY_BASE for ``steps`` steps (evaluated and checkpointed twice), tracked at
    ``uri`` (empty: the default store) and registered as ``name``."""
    from vibgan.config import load_config

    every = max(1, steps // 2)
    return load_config(ROOT / "configs" / "default.toml",
                       TINY_BASE + [f"train.steps={steps}", f"train.eval_every={every}", f"train.sample_every={steps}",
                                    f"train.checkpoint_every={every}", f"out={str(out)!r}", f"tracking.uri={uri!r}",
                                    f"tracking.register_name={name!r}"] + (extra or []))


def train_tiny(cfg, data, tracker, **kw):
    """Train with one torch thread (the 2-core CI box is shared), then give torch its threads back."""
    import torch

    from vibgan.train import train

    threads = torch.get_num_threads()
    try:
        return train(cfg, data, tracker, **kw)
    finally:
        torch.set_num_threads(threads)


def load_script(relative: str):
    """A script of the project (``pipelines/soak.py``, ``data/fetch_cwru.py``) imported by path as a module."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"{path.stem}_script", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
