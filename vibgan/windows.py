"""Cutting recordings into windows, and splitting them by time (never by shuffling overlapping windows)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vibgan.errors import DataError
from vibgan.recordings import Recording


def positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise DataError(f"{name}: expected a positive integer number of samples, got {value!r}")
    return int(value)


def windows(x: Recording | np.ndarray, length: int, hop: int | None = None) -> np.ndarray:
    """Cut windows of ``length`` samples every ``hop`` samples (default ``length``: no overlap).

    Parameters
    ----------
    x : a Recording or an array (C, N) or (N,).
    length : window length in samples.
    hop : step between window starts in samples.

    Returns
    -------
    A read-only view (W, C, length), W = (N - length) // hop + 1; the tail shorter than a hop is dropped.
    """
    src = x.source if isinstance(x, Recording) else "<array>"
    arr = x.signal if isinstance(x, Recording) else np.asarray(x)
    length = positive_int(length, "windows: length")
    hop = length if hop is None else positive_int(hop, "windows: hop")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise DataError(f"{src}: windows: expected a signal (channels, samples) or (samples,), got {arr.shape}")
    if arr.shape[1] < length:
        raise DataError(f"{src}: windows: the signal has {arr.shape[1]} samples, shorter than one window of "
                        f"{length}")
    view = np.lib.stride_tricks.sliding_window_view(arr, length, axis=-1)[:, ::hop, :]  # (C, W, length)
    return view.transpose(1, 0, 2)


_PART_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}


def split_bounds(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Sample indices (len(fractions) + 1,) that cut n samples into contiguous parts of those shares."""
    bounds = np.round(np.concatenate([[0.0], np.cumsum(np.asarray(fractions, dtype=np.float64))]) * n).astype(np.int64)
    bounds[-1] = n
    return bounds


def split_by_time(rec: Recording, fractions: Sequence[float] = (0.7, 0.0, 0.3), *,
                  names: Sequence[str] | None = None) -> tuple[Recording | None, ...]:
    """Split one recording into contiguous, non-overlapping parts in time order that tile it.

    Parameters
    ----------
    rec : the recording.
    fractions : share of the samples per part, each >= 0, summing to 1 (default train 0.7, val 0, test 0.3).
    names : part names (default train/val/test for three parts, train/test for two, part0... otherwise).

    Returns
    -------
    One entry per fraction: a Recording whose meta gains ``part`` (name), ``part_index`` and ``offset``
    (first sample's index in the original recording), or None where the fraction is 0.
    """
    try:
        fr = np.asarray([float(f) for f in fractions], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{rec.source}: split_by_time: fractions: expected numbers, got {fractions!r}") from None
    if fr.size == 0 or not np.isfinite(fr).all() or (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-9:
        raise DataError(f"{rec.source}: split_by_time: fractions: expected non-negative shares summing to 1, "
                        f"got {list(fractions)}")
    names = list(names) if names is not None else list(_PART_NAMES.get(fr.size, [f"part{i}" for i in range(fr.size)]))
    if len(names) != fr.size:
        raise DataError(f"{rec.source}: split_by_time: names: expected {fr.size} names, got {names}")
    n = rec.samples
    bounds = split_bounds(n, fr)
    base = int(rec.meta.get("offset", 0) or 0)
    parts: list[Recording | None] = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if fr[i] == 0:
            parts.append(None)
            continue
        if b <= a:
            raise DataError(f"{rec.source}: split_by_time: part {names[i]!r} ({fr[i]:g} of {n} samples) would be "
                            f"empty")
        meta = dict(rec.meta, part=names[i], part_index=i, offset=base + int(a))
        parts.append(Recording(rec.signal[:, a:b], rec.fs, meta))
    return tuple(parts)


#: the envelope check's frequency tolerance (spectral.ENVELOPE_TOLERANCE): a segment's frequency resolution
#: fs / T must be at most this fraction of the lowest fault frequency in use
PHYSICS_TOLERANCE = 0.03
#: bounds of the physics segment length, in samples
PHYSICS_MIN, PHYSICS_MAX = 1024, 65536


def physics_length(fs: float, f_low: float, hop: int, *, tolerance: float = PHYSICS_TOLERANCE,
                   shortest: int | None = None) -> tuple[int, str]:
    """The segment length the physics asks for: the smallest multiple of ``hop`` whose frequency resolution
    fs / T resolves the lowest characteristic frequency in use, ``f_low`` Hz, to ``tolerance`` (the envelope
    check's +-3 %): T >= fs / (tolerance x f_low), i.e. 1 / tolerance (33) periods of f_low. Kept within
    PHYSICS_MIN..PHYSICS_MAX and, where ``shortest`` (samples of the shortest training part) is given, at most
    half of it. Returns (T, why) with ``why`` one sentence for the report."""
    if fs <= 0 or f_low <= 0 or hop < 1:
        raise DataError(f"physics segment length: needs fs > 0, f_low > 0 and hop >= 1 (got {fs}, {f_low}, {hop})")
    need = fs / (tolerance * f_low)
    t = int(-(-math.ceil(need - 1e-9) // hop) * hop)
    why = (f"{t} samples ({t / fs:.3f} s): the smallest multiple of the generator's hop ({hop}) with a frequency "
           f"resolution fs/T <= {tolerance:.0%} of the lowest fault frequency in use ({f_low:.1f} Hz), "
           f"{t * f_low / fs:.0f} of its periods")
    lo, hi = -(-PHYSICS_MIN // hop) * hop, PHYSICS_MAX // hop * hop
    if shortest is not None:
        hi = min(hi, max(hop, shortest // 2 // hop * hop))
    if t < lo:
        why = (f"{lo} samples ({lo / fs:.3f} s): the minimum length (the physics asks for only {need:.0f} to resolve "
               f"{f_low:.1f} Hz to {tolerance:.0%})")
        t = lo
    elif t > hi:
        why = (f"{hi} samples ({hi / fs:.3f} s): capped (the physics asks for {need:.0f} to resolve "
               f"{f_low:.1f} Hz to {tolerance:.0%}; the envelope check is coarser than that)")
        t = hi
    return t, why
