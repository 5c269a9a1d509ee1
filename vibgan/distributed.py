"""Multi-process training under ``torchrun``: process group set-up, rank roles and small collectives.

``torchrun --nproc_per_node=N pipelines/train.py ...`` sets RANK, WORLD_SIZE and LOCAL_RANK; :func:`setup`
reads them and joins the process group (NCCL on CUDA devices, gloo on the CPU). With no such variables
everything here is a no-op for a single process, so the training loop has one code path.

Roles: every rank trains on its own shard of the data with DistributedDataParallel (gradients
averaged, so the weights stay identical); rank 0 alone logs, writes checkpoints, plots, the generator,
the fidelity report and registers the model.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vibgan.errors import ConfigError


@dataclass(frozen=True)
class Context:
    """This process's place in the job."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CTX = Context()


def context() -> Context:
    return _CTX


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r}: expected an integer (torchrun sets it)") from None


def setup(device_name: str = "auto") -> Context:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); return this process's context.

    The backend is NCCL when the job trains on CUDA, gloo otherwise. Each rank uses cuda:LOCAL_RANK.
    """
    global _CTX
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        _CTX = Context()
        return _CTX
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    _CTX = Context(rank, world, local)
    return _CTX


def teardown() -> None:
    global _CTX
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CTX = Context()


def device_for(ctx: Context, device: torch.device) -> torch.device:
    """The device of this rank: cuda:LOCAL_RANK when training on CUDA under torchrun."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def all_finite(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on every rank (so all ranks skip a non-finite step together)."""
    if not _CTX.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def gather_objects(obj):
    """Every rank's ``obj`` as a list on every rank (a one-item list for a single process)."""
    if not _CTX.enabled:
        return [obj]
    out = [None] * _CTX.world
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _CTX.enabled:
        dist.barrier()


def fingerprint(module: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of a module's parameters and buffers: equal weights, equal fingerprint."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
