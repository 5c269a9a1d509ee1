"""The compute device and precision, chosen once per run."""

from __future__ import annotations

import torch

from vibgan.errors import ConfigError, ModelError

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    """The device, chosen once: ``auto`` takes CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r}: CUDA is not available on this machine; use auto or cpu")
    return dev


def check_device(device) -> None:


    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ModelError(f"device {device!r}: not a torch device ({e}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ModelError(f"device {device!r}: not available on this machine; use cpu")


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of returning it to the system (glibc only; False
    elsewhere, where nothing changes).

    A CPU forward pass allocates and frees tensors of a few MB each, every batch. By default glibc serves
    large blocks with fresh ``mmap`` pages and trims the heap after frees, so each batch pays for zeroed pages
    again (page faults): on a 2-core machine about a quarter of the fast generator's eager time per batch
    (docs/BENCHMARKS.md, "Generation"). Blocks up to 32 MB (glibc's ceiling) now come from the heap, which is
    never trimmed: the resident memory stays at the process's peak, which a generation or training job
    reaches in its first batches anyway. Process-wide: for jobs (pipelines/generate.py, pipelines/train.py),
    not for a library import."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries without mallopt
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1
    return bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok)
