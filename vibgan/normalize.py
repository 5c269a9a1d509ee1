"""Normalisation statistics fit on training parts only and kept with the model, so outputs return in physical units."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from vibgan.cwru import label_sort_key
from vibgan.errors import DataError
from vibgan.recordings import Recording

_GLOBAL = "*"


class Normalizer:
    """Per-class (default) or global, per-channel standardisation: (x - mean) / std, and its inverse.

    Classes in CWRU differ by some 20 dB in level, so scaling per class keeps every class at unit variance
    for the generator and puts outputs back in physical units (g) with the class's own statistics.
    Fit on training parts only (``split_by_time``); keep ``to_dict()`` with the model.

    Attributes
    ----------
    classes : labels seen by ``fit``, in ``label_sort_key`` order; int labels index this list.
    mean, std : float64 (K, C) per class (K = len(classes)) or (1, C) in global mode, in signal units.
    """
    def __init__(self, per_class: bool = True, per_recording: bool = False) -> None:
        self.per_class = bool(per_class) or bool(per_recording)
        # per recording (data.normalize = "recording"): every recording is standardised by its own statistics in
        # training; outputs go back with the statistics of the recordings of their (class, rpm, load) group, the
        # nearest recorded condition of the class when another is asked for
        self.per_recording = bool(per_recording)
        self.classes: list[str] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.groups: list[tuple[str, float, float]] = []  # per_recording: the rows' (label, rpm, load_hp)

    @property
    def channels(self) -> int:
        self._check_fitted()
        assert self.mean is not None
        return int(self.mean.shape[1])

    def _check_fitted(self) -> None:
        if self.mean is None or self.std is None:
            raise DataError("Normalizer: not fitted; call fit(recordings) on the training parts first")

    def fit(self, recordings: Iterable[Recording]) -> Normalizer:
        """Fit mean and std (float64, per channel) over all samples of each class (or of all recordings)."""
        recs = list(recordings)
        if not recs:
            raise DataError("Normalizer.fit: expected at least one recording")
        chans = {r.channels for r in recs}
        if len(chans) != 1:
            raise DataError(f"Normalizer.fit: recordings differ in channel count {sorted(chans)}; load them with "
                            f"the same channels")
        for r in recs:
            if not r.label:
                raise DataError(f"{r.source}: label: Normalizer.fit needs a class label on every recording")
        classes = sorted({r.label for r in recs}, key=label_sort_key)
        if self.per_recording:
            keys = sorted({group_key(r) for r in recs}, key=lambda k: (label_sort_key(k[0]), k[1], k[2]))
            groups = {k: [r for r in recs if group_key(r) == k] for k in keys}
            self.groups = keys
        else:
            groups = {c: [r for r in recs if r.label == c] for c in classes} if self.per_class else {_GLOBAL: recs}
        means, stds = [], []
        for members in groups.values():
            n = sum(r.samples for r in members)
            if self.per_recording:  # each recording at unit variance: the group's mean and RMS-mean std
                own = [recording_stats(r) for r in members]
                w = np.asarray([r.samples for r in members], dtype=np.float64)[:, None]
                mean = (np.stack([m for m, _ in own]) * w).sum(axis=0) / w.sum()
                std = np.sqrt((np.stack([sd for _, sd in own]) ** 2 * w).sum(axis=0) / w.sum())
            else:
                mean = sum(r.signal.astype(np.float64).sum(axis=1) for r in members) / n
                var = sum(((r.signal.astype(np.float64) - mean[:, None]) ** 2).sum(axis=1) for r in members) / n
                std = np.sqrt(var)
            means.append(mean)
            stds.append(np.where(std > 0, std, 1.0))  # a constant channel is shifted, not blown up
        self.classes, self.mean, self.std = classes, np.stack(means), np.stack(stds)
        return self

    def _rows(self, labels: Any, batch: int, conds: Any = None) -> np.ndarray:
        """Row of mean/std per batch item, from label strings or int indices into ``classes`` (per recording:
        and ``conds``, one (rpm, load_hp) for all items or one per item; the class's nearest recorded group,
        its first one without ``conds``)."""
        idx = self._class_rows(labels, batch)
        if not self.per_recording:
            return idx
        c = np.zeros((batch, 2)) if conds is None else np.broadcast_to(np.asarray(conds, dtype=np.float64).reshape(-1, 2),
                                                                         (batch, 2))
        out = np.empty(batch, dtype=np.int64)
        for i, (k, (rpm, load)) in enumerate(zip(idx.tolist(), c.tolist())):
            mine = [j for j, g in enumerate(self.groups) if g[0] == self.classes[k]]
            out[i] = mine[0] if conds is None else min(
                mine, key=lambda j: (abs(self.groups[j][1] - rpm) / max(self.groups[j][1], 1.0),
                                     abs(self.groups[j][2] - load)))
        return out

    def _class_rows(self, labels: Any, batch: int) -> np.ndarray:
        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        if labels is None:
            if self.per_class:
                raise DataError("Normalizer: labels: per-class statistics need a label per item")
            return np.zeros(batch, dtype=np.int64)
        if isinstance(labels, (str, int, np.integer)):
            labels = [labels] * batch
        arr = np.asarray(labels)
        if arr.ndim != 1 or arr.shape[0] != batch:
            raise DataError(f"Normalizer: labels: expected {batch} labels, one per item, got shape {arr.shape}")
        if arr.dtype.kind in "iu":
            if batch and (arr.min() < 0 or arr.max() >= len(self.classes)):
                raise DataError(f"Normalizer: labels: class index out of range 0..{len(self.classes) - 1}: "
                                f"{sorted(set(arr.tolist()))}")
            idx = arr.astype(np.int64)
        elif arr.dtype.kind in "US" or arr.dtype == object:
            lookup = {c: i for i, c in enumerate(self.classes)}
            unknown = sorted({str(a) for a in arr.tolist()} - set(lookup))
            if unknown:
                raise DataError(f"Normalizer: labels: unknown classes {unknown}; fitted on {self.classes}")
            idx = np.asarray([lookup[str(a)] for a in arr.tolist()], dtype=np.int64)
        else:
            raise DataError(f"Normalizer: labels: expected label strings or int class indices, got dtype {arr.dtype}")
        return idx if self.per_class else np.zeros(batch, dtype=np.int64)

    def _apply(self, x: Any, labels: Any, inverse: bool, conds: Any = None) -> Any:
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        single = getattr(x, "ndim", None) == 2
        if single:
            x = x[None]
        if getattr(x, "ndim", None) != 3:
            raise DataError(f"Normalizer: x: expected (B, C, T) or (C, T), got shape {tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] != self.mean.shape[1]:
            raise DataError(f"Normalizer: x: expected {self.mean.shape[1]} channels, got {x.shape[1]}")
        rows = self._rows(labels, int(x.shape[0]), conds)
        mean, std = self.mean[rows][:, :, None], self.std[rows][:, :, None]
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float32
            m = torch.as_tensor(mean, dtype=dtype, device=x.device)
            s = torch.as_tensor(std, dtype=dtype, device=x.device)
            out = x.to(dtype) * s + m if inverse else (x.to(dtype) - m) / s
        else:
            arr = np.asarray(x)
            dtype = arr.dtype if arr.dtype.kind == "f" else np.float32
            out = (arr * std + mean if inverse else (arr - mean) / std).astype(dtype, copy=False)
        return out[0] if single else out

    def transform(self, x: Any, labels: Any = None, conds: Any = None) -> Any:
        """(x - mean) / std per item and channel; x (B, C, T) or (C, T), numpy or torch, same type back.

        ``labels``: label strings or int indices into ``classes`` (one per item, or one for all); optional in
        global mode.
        """
        return self._apply(x, labels, inverse=False, conds=conds)

    def inverse(self, x: Any, labels: Any = None, conds: Any = None) -> Any:
        """x * std + mean: normalised values back to physical units; arguments as in ``transform`` (``conds``:
        the (rpm, load_hp) of the items, used per recording)."""
        return self._apply(x, labels, inverse=True, conds=conds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: per_class, classes, channels, mean and std per class (or '*')."""
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        if self.per_recording:
            return {"kind": "vibgan.Normalizer", "version": 2, "per_class": True, "per_recording": True,
                    "classes": list(self.classes), "groups": [list(g) for g in self.groups],
                    "mean": self.mean.tolist(), "std": self.std.tolist()}
        keys = self.classes if self.per_class else [_GLOBAL]
        return {
            "kind": "vibgan.Normalizer", "version": 1, "per_class": self.per_class, "classes": list(self.classes),
            "mean": {k: self.mean[i].tolist() for i, k in enumerate(keys)},
            "std": {k: self.std[i].tolist() for i, k in enumerate(keys)},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Normalizer:
        """Rebuild from ``to_dict()`` output; DataError on anything missing or inconsistent."""
        try:
            per_class = bool(state["per_class"])
            per_recording = bool(state.get("per_recording", False))
            classes = [str(c) for c in state["classes"]]
            groups = [(str(g[0]), float(g[1]), float(g[2])) for g in state.get("groups", [])]
            if per_recording:
                mean = np.asarray(state["mean"], dtype=np.float64)
                std = np.asarray(state["std"], dtype=np.float64)
                if len(groups) != len(mean) or {g[0] for g in groups} != set(classes):
                    raise ValueError("groups do not match the rows or the classes")
            else:
                keys = classes if per_class else [_GLOBAL]
                mean = np.asarray([state["mean"][k] for k in keys], dtype=np.float64)
                std = np.asarray([state["std"][k] for k in keys], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Normalizer.from_dict: expected keys per_class, classes, mean, std with one entry "
                            f"per class ({type(exc).__name__}: {exc})") from None
        if mean.ndim != 2 or mean.shape != std.shape or mean.shape[1] < 1 or mean.shape[0] < 1:
            raise DataError(f"Normalizer.from_dict: mean/std: expected equal (classes, channels) shapes, got "
                            f"{mean.shape} and {std.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise DataError("Normalizer.from_dict: mean/std: expected finite values and positive std")
        norm = cls(per_class=per_class, per_recording=per_recording)
        norm.classes, norm.mean, norm.std, norm.groups = classes, mean, std, groups
        return norm


def group_key(rec: Recording) -> tuple[str, float, float]:
    """A recording's (label, rpm, load_hp): the group the per-recording normaliser returns outputs with."""
    return (str(rec.label), float(rec.meta.get("rpm") or 0.0), float(rec.meta.get("load_hp") or 0.0))


def recording_stats(rec: Recording) -> tuple[np.ndarray, np.ndarray]:
    """A recording's own mean and std per channel (float64; a zero std becomes 1)."""
    x = rec.signal.astype(np.float64)
    std = x.std(axis=1)
    return x.mean(axis=1), np.where(std > 0, std, 1.0)
