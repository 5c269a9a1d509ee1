"""The training state (models, optimisers, RNG, step) and its checkpoints: written atomically, pruned, resumed."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vibgan.errors import ModelError, TrainingError
from vibgan.files import atomic_path
from vibgan.networks import with_optional_buffers


@dataclass
class TrainState:
    """Everything that changes during training; checkpoints as a whole."""
    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    gen: torch.Generator  # data sampling and latent noise
    scaler: Any = None
    step: int = 0
    rollbacks: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    stop: bool = False  # set (by a hook) to end the loop after this step; not checkpointed

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "step": self.step, "rollbacks": self.rollbacks, "history": self.history,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.G.load_state_dict(with_optional_buffers(self.G, sd["G"]))
        self.D.load_state_dict(sd["D"])
        self.G_ema.load_state_dict(with_optional_buffers(self.G_ema, sd["G_ema"]))
        self.opt_g.load_state_dict(sd["opt_g"])
        self.opt_d.load_state_dict(sd["opt_d"])
        self.gen.set_state(sd["gen"])
        torch.set_rng_state(sd["torch_rng"])
        if self.scaler is not None and sd.get("scaler"):
            self.scaler.load_state_dict(sd["scaler"])
        self.step = int(sd["step"])
        self.rollbacks = int(sd.get("rollbacks", 0))
        self.history = {k: list(v) for k, v in sd["history"].items()}


def save_checkpoint(state: TrainState, directory: Path, extra: dict, keep: int,
                    rank_gens: list[torch.Tensor] | None = None) -> Path:
    """Write ``ckpt_<step>.pt`` atomically (temp file + rename) and keep the newest ``keep``.

    ``rank_gens``: under torchrun, every rank's sampling RNG state, so a resumed job continues each
    rank's stream where it stopped.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt_{state.step:08d}.pt"
    payload = {**state.state_dict(), "extra": json.dumps(extra)}
    if rank_gens is not None:
        payload["gen_ranks"] = [g.cpu() for g in rank_gens]
    try:
        with atomic_path(path, tmp_name=f".{path.name}.tmp") as tmp:
            torch.save(payload, tmp)
    except OSError as e:
        raise TrainingError(f"checkpoint {path}: could not be written ({e.strerror or e}); "
                            f"the previous checkpoint in {directory} is intact") from None
    for old in sorted(directory.glob("ckpt_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def set_aside_checkpoints(directory: Path) -> Path | None:
    """Before a fresh run's (no --resume) first checkpoint: move another run's checkpoints in ``directory``
    into ``previous/`` inside it, replacing what an older run left there (reruns of an unattended job take
    bounded space). Left in place, the old files would sort after the new run's early checkpoints, so
    pruning would delete the new ones and --resume after a crash would continue the old run. The files go
    to a temporary folder first, which then replaces ``previous/`` by renames only, so a kill leaves every
    checkpoint of the old run in one folder. Returns ``previous/``, or None when there was nothing."""
    directory = Path(directory)
    found = sorted(directory.glob("ckpt_*.pt"))
    if not found:
        return None
    dest, tmp, old = directory / "previous", directory / ".previous.tmp", directory / ".previous.old"
    for stale in (tmp, old):  # left by a kill during an earlier set-aside
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir()
    for p in found:
        os.replace(p, tmp / p.name)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def require_checkpoint(directory: Path) -> Path:
    """The newest checkpoint in ``directory`` for --resume, or a TrainingError saying there is none (and where an
    earlier run's are)."""
    found = latest_checkpoint(directory)
    if found is None:
        aside = " (an earlier run's are in previous/: move them back to continue it)" \
            if any((Path(directory) / "previous").glob("ckpt_*.pt")) else ""
        raise TrainingError(f"--resume: no checkpoint in {directory}{aside}; start without --resume")
    return found


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (temp files are ignored)."""
    found = sorted(Path(directory).glob("ckpt_*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain values only, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        first = (str(e).splitlines() or [""])[0][:200]  # EOFError() of a truncated file has no message
        raise ModelError(f"checkpoint {path}: refused or unreadable ({type(e).__name__}: {first})") from None
