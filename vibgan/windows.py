"""Cutting recordings into windows, and splitting them by time (never by shuffling overlapping windows)."""

from __future__ import annotations

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
