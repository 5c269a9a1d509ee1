"""Recordings, loaders, catalogs, windows, time splits, normalisation and datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vibgan.errors import DataError


@dataclass
class Recording:
    """One continuous signal.

    Attributes
    ----------
    signal : float32 array (channels, samples) in physical units (``meta['units']``, g for accelerometers).
    fs : sampling rate in Hz.
    meta : label, fault (normal/inner/outer/ball), diameter_in, rpm, load_hp, sensor (list of channel
        names), units, source (path or 'simulated').
    """

    signal: np.ndarray
    fs: float
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = self.meta.get("source", "<array>")
        sig = np.asarray(self.signal)
        if sig.ndim == 1:
            sig = sig[None, :]
        if sig.ndim != 2:
            raise DataError(f"{src}: signal: expected shape (channels, samples), got {sig.shape}")
        if sig.shape[0] < 1 or sig.shape[1] < 1:
            raise DataError(f"{src}: signal: expected at least one channel and one sample, got {sig.shape}")
        if sig.dtype.kind not in "fiu":
            raise DataError(f"{src}: signal: expected real numbers, got dtype {sig.dtype}")
        sig = np.ascontiguousarray(sig, dtype=np.float32)
        if not np.isfinite(sig).all():
            bad = int(np.size(sig) - np.isfinite(sig).sum())
            raise DataError(f"{src}: signal: expected finite samples, found {bad} NaN/Inf values")
        try:
            fs = float(self.fs)
        except (TypeError, ValueError):
            raise DataError(f"{src}: fs: expected a sampling rate in Hz, got {self.fs!r}") from None
        if not np.isfinite(fs) or fs <= 0:
            raise DataError(f"{src}: fs: expected a positive sampling rate in Hz, got {self.fs!r}")
        self.signal = sig
        self.fs = fs

    @property
    def label(self) -> str:
        return str(self.meta.get("label", ""))

    @property
    def channels(self) -> int:
        return int(self.signal.shape[0])

    @property
    def samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.samples / self.fs
