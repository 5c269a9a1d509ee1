"""The HDF5 exchange formats: recordings files (``write_recordings``: one ``(C, N)`` dataset per recording)
and generated-data files (``signals`` ``(N, C, T)`` in physical units, ``labels``, optional ``rpm``/``load_hp``,
attributes ``fs``, ``units`` and provenance), written atomically and read back with checks."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from vibgan.cwru import label_sort_key
from vibgan.errors import DataError
from vibgan.files import atomic_path
from vibgan.recordings import Recording, as_names, as_text, open_hdf5, positive_fs
from vibgan.windows import positive_int


def process_local_h5(owner: Any, path: str) -> h5py.File:
    """``path`` opened read-only once per process and cached on ``owner`` (attributes ``_h5``, ``_pid``):
    a handle inherited through fork (DataLoader workers, torchrun) is not safe to use."""
    if getattr(owner, "_h5", None) is None or getattr(owner, "_pid", None) != os.getpid():
        owner._h5 = h5py.File(path, "r")
        owner._pid = os.getpid()
    return owner._h5


def write_recordings(path: str | os.PathLike, recordings: Iterable[Recording]) -> Path:
    """Write recordings to one HDF5 file (``recordings/NNNNN`` datasets with attributes fs, label, rpm,
    load_hp, units, channels, source), atomically; ``load`` reads single-recording files, and
    ``SegmentDataset.from_hdf5`` reads any such file lazily."""
    recs = list(recordings)
    if not recs:
        raise DataError(f"{path}: write_recordings: expected at least one recording")
    try:
        _write_recordings(Path(path), recs)
    except OSError as exc:
        raise DataError(f"{path}: write_recordings: cannot write ({exc})") from None
    return Path(path)


def _write_recordings(path: Path, recs: list[Recording]) -> None:
    with _atomic_h5(path) as f:
        grp = f.create_group("recordings")
        for i, r in enumerate(recs):
            ds = grp.create_dataset(f"{i:05d}", data=r.signal, chunks=(r.channels, min(r.samples, 65536)))
            ds.attrs["fs"] = r.fs
            ds.attrs["label"] = r.label
            ds.attrs["units"] = str(r.meta.get("units") or "unknown")
            ds.attrs["source"] = r.source
            names = r.meta.get("sensor") or [f"ch{c}" for c in range(r.channels)]
            if len(names) == r.channels:
                ds.attrs["channels"] = [str(n) for n in names]
            for key in ("rpm", "load_hp"):
                if r.meta.get(key) is not None:
                    ds.attrs[key] = float(r.meta[key])


#: Value of the file attribute ``format`` in generated-data files.
GENERATED_FORMAT = "vibgan.generated"


GENERATED_VERSION = 1


@contextmanager
def _atomic_h5(path: Path) -> Iterator[h5py.File]:
    """Write an HDF5 file under a temporary name in the target folder; rename on success, delete on error."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"{path}: folder: {parent} does not exist")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


@dataclass
class GeneratedSet:
    """Generated signals read from the exchange format.

    Attributes
    ----------
    signals : float32 (N, C, T) in ``units``.
    labels : (N,) class labels (str).
    fs : sampling rate in Hz.
    units : physical units of the signals (e.g. "g").
    rpm, load_hp : (N,) float64 operating conditions (rpm, hp), or None where the file has none.
    channels : channel names (C,).
    provenance : model URI and version, config, seed, ... as written.
    attrs : every file attribute, decoded.
    """
    signals: np.ndarray
    labels: np.ndarray
    fs: float
    units: str
    rpm: np.ndarray | None = None
    load_hp: np.ndarray | None = None
    channels: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.signals.shape[0])

    @property
    def classes(self) -> list[str]:
        """Distinct labels in ``label_sort_key`` order."""
        return sorted({str(x) for x in self.labels.tolist()}, key=label_sort_key)

    def by_class(self) -> dict[str, np.ndarray]:
        """label -> signals (n, C, T) of that class."""
        return {c: self.signals[self.labels == c] for c in self.classes}


def _check_channels(channels: int | Sequence[str], src: str) -> list[str]:
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        if int(channels) < 1:
            raise DataError(f"{src}: channels: expected a positive count or channel names, got {channels}")
        return [f"ch{i}" for i in range(int(channels))]
    if isinstance(channels, str):
        channels = [channels]
    names = [str(c) for c in channels]
    if not names or len(set(names)) != len(names):
        raise DataError(f"{src}: channels: expected distinct channel names, got {names}")
    return names


class GeneratedWriter:
    """Stream generated signals into an HDF5 exchange-format file, batch by batch, atomically.

    Rows go to a temporary file in the target folder; ``close()`` renames it into place, an exception in
    a ``with`` block (or ``abort()``) deletes it, so a half-written file never appears under ``path``.

    Parameters
    ----------
    path : destination file (.h5).
    fs : sampling rate in Hz.
    channels : channel count or names (C).
    length : samples per signal (T).
    units : physical units of the signals ("g").
    provenance : JSON-serialisable dict (model URI and version, config, seed, ...).
    compression : h5py compression for ``signals`` (None, "gzip", "lzf").
    expected_rows : how many signals will be appended, if known: chunks are no larger than that.
    """
    @staticmethod
    def chunk_rows(channels: int, length: int, expected_rows: int | None = None) -> int:
        """Segments per HDF5 chunk of ``signals``: about 1 MiB, and no more than ``expected_rows`` (a file holds
        whole chunks, so a small set in 1 MiB chunks would take 1 MiB)."""
        rows = max(1, (1 << 20) // (4 * channels * length))
        return min(rows, max(1, int(expected_rows))) if expected_rows else rows

    @staticmethod
    def file_bytes(n: int, channels: int, length: int) -> int:
        """About the size of a file of ``n`` segments as this writer lays it out (whole chunks, labels, attributes)."""
        rows = GeneratedWriter.chunk_rows(channels, length, n)
        return -(-n // rows) * rows * channels * length * 4 + n * 64 + 64 * 1024

    def __init__(self, path: str | os.PathLike, fs: float, channels: int | Sequence[str], length: int, *,
                 units: str = "g", provenance: Mapping[str, Any] | None = None,
                 compression: str | None = None, expected_rows: int | None = None) -> None:
        self.path = Path(path)
        src = str(self.path)
        self.fs = positive_fs(fs, src, "fs")
        self.channel_names = _check_channels(channels, src)
        self.length = positive_int(length, f"{src}: length")
        if provenance is not None and not isinstance(provenance, Mapping):
            raise DataError(f"{src}: provenance: expected a dict, got {type(provenance).__name__}")
        try:
            prov_json = json.dumps(dict(provenance or {}), sort_keys=True, default=str)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{src}: provenance: expected JSON-serialisable values ({exc})") from None
        self._ctx = _atomic_h5(self.path)
        try:
            self._f = self._ctx.__enter__()
        except OSError as exc:
            raise DataError(f"{src}: cannot create a temporary file beside it ({exc})") from None
        c, t = len(self.channel_names), self.length
        rows = self.chunk_rows(c, t, expected_rows)
        self._rows = rows
        try:
            self._f.create_dataset("signals", shape=(0, c, t), maxshape=(None, c, t), dtype=np.float32,
                                   chunks=(rows, c, t), compression=compression)
            self._f.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype("utf-8"),
                                   chunks=(max(rows, 256),))
            a = self._f.attrs
            a["format"] = GENERATED_FORMAT
            a["format_version"] = GENERATED_VERSION
            a["fs"] = self.fs
            a["units"] = str(units)
            a["channels"] = self.channel_names
            a["provenance"] = prov_json
        except BaseException:
            self.abort()
            raise
        self._n = 0
        self._has: dict[str, bool | None] = {"rpm": None, "load_hp": None}
        self._closed = False

    def __len__(self) -> int:
        return self._n

    def append(self, signals: Any, labels: Sequence[str] | str, rpm: Any = None, load_hp: Any = None) -> None:
        """Append a batch: signals (B, C, T) (numpy or torch) in physical units, labels (B,) or one label,
        rpm and load_hp (B,) or scalars (rpm, hp); rpm/load_hp must be given in every batch or in none."""
        if self._closed:
            raise DataError(f"{self.path}: GeneratedWriter: append after close")
        src = str(self.path)
        if isinstance(signals, torch.Tensor):
            signals = signals.detach().cpu().numpy()
        x = np.asarray(signals)
        c, t = len(self.channel_names), self.length
        if x.ndim != 3 or x.shape[1:] != (c, t) or x.dtype.kind not in "fiu":
            raise DataError(f"{src}: signals: expected real (B, {c}, {t}), got {x.shape} dtype {x.dtype}")
        b = x.shape[0]
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise DataError(f"{src}: signals: expected finite values, found {int(np.size(x) - np.isfinite(x).sum())} "
                            f"NaN/Inf in this batch")
        labs = [labels] * b if isinstance(labels, str) else [str(v) for v in labels]
        if len(labs) != b or any(not lab for lab in labs):
            raise DataError(f"{src}: labels: expected {b} non-empty labels, got {len(labs)}")
        conds = {}
        for name, v in (("rpm", rpm), ("load_hp", load_hp)):
            given = v is not None
            if self._has[name] is None:
                self._has[name] = given
            elif self._has[name] != given:
                raise DataError(f"{src}: {name}: given in some batches and not in others; give it in every batch "
                                f"or in none")
            if given:
                if isinstance(v, torch.Tensor):
                    v = v.detach().cpu().numpy()
                arr = np.broadcast_to(np.asarray(v, dtype=np.float64), (b,)) if np.ndim(v) == 0 else \
                    np.asarray(v, dtype=np.float64)
                if arr.shape != (b,) or not np.isfinite(arr).all():
                    raise DataError(f"{src}: {name}: expected {b} finite values, got shape {arr.shape}")
                conds[name] = arr
        if b == 0:
            return
        n0, n1 = self._n, self._n + b
        f = self._f
        f["signals"].resize(n1, axis=0)
        f["signals"][n0:n1] = x
        f["labels"].resize(n1, axis=0)
        f["labels"][n0:n1] = labs
        for name, arr in conds.items():
            if name not in f:
                f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(max(self._rows, 256),))
            f[name].resize(n1, axis=0)
            f[name][n0:n1] = arr
        self._n = n1

    def close(self) -> Path:
        """Finish the file and move it to ``path``; returns the path."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            self._ctx.__exit__(None, None, None)
        except OSError as exc:
            raise DataError(f"{self.path}: cannot finish the file or move it into place ({exc})") from None
        return self.path

    def abort(self) -> None:
        """Discard everything written: no file appears at ``path``."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            self._ctx.__exit__(DataError, DataError("aborted"), None)
        except DataError:
            pass

    def __enter__(self) -> GeneratedWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.abort()
            except Exception:  # interpreter shutdown: nothing sensible left to do
                pass


def write_generated(path: str | os.PathLike, signals: Any, labels: Sequence[str] | str, fs: float, *,
                    rpm: Any = None, load_hp: Any = None, units: str = "g",
                    provenance: Mapping[str, Any] | None = None, channels: Sequence[str] | None = None) -> Path:
    """Write generated signals (N, C, T) in physical units to the HDF5 exchange format, atomically.

    Parameters
    ----------
    path : destination (.h5).
    signals : (N, C, T) numpy or torch.
    labels : (N,) class labels, or one label for all.
    fs : sampling rate in Hz.
    rpm, load_hp : (N,) or scalar operating conditions (rpm, hp), optional.
    units : physical units ("g").
    provenance : model URI and version, config, seed (JSON-serialisable dict).
    channels : channel names (default ch0, ch1, ...).
    """
    if isinstance(signals, torch.Tensor):
        signals = signals.detach().cpu().numpy()
    x = np.asarray(signals)
    if x.ndim != 3:
        raise DataError(f"{path}: signals: expected (N, C, T), got shape {x.shape}")
    with GeneratedWriter(path, fs, channels if channels is not None else x.shape[1], x.shape[2], units=units,
                         provenance=provenance) as w:
        w.append(x, labels, rpm, load_hp)
    return Path(path)


def validate_generated(f: h5py.File, src: str, *, read_signals: bool) -> dict[str, Any]:
    fmt = f.attrs.get("format")
    if fmt is not None and as_text(fmt, src, "attribute 'format'") != GENERATED_FORMAT:
        raise DataError(f"{src}: attribute 'format': expected {GENERATED_FORMAT!r}, got {fmt!r}")
    if "signals" not in f or not isinstance(f["signals"], h5py.Dataset):
        raise DataError(f"{src}: signals: expected a dataset 'signals' (N, C, T)")
    sig = f["signals"]
    if sig.ndim != 3 or sig.dtype != np.float32:
        raise DataError(f"{src}: signals: expected float32 (N, C, T), got shape {sig.shape} dtype {sig.dtype}")
    n, c, t = sig.shape
    if c < 1 or t < 1:
        raise DataError(f"{src}: signals: expected at least one channel and one sample, got {sig.shape}")
    if "labels" not in f or not isinstance(f["labels"], h5py.Dataset):
        raise DataError(f"{src}: labels: expected a dataset 'labels' (N,) of UTF-8 strings")
    lab = f["labels"]
    if lab.ndim != 1 or lab.shape[0] != n:
        raise DataError(f"{src}: labels: expected shape ({n},) to match signals, got {lab.shape}")
    if h5py.check_string_dtype(lab.dtype) is None:
        raise DataError(f"{src}: labels: expected UTF-8 strings, got dtype {lab.dtype}")
    labels = np.asarray([str(v) for v in lab.asstr()[()]], dtype=str) if n else np.asarray([], dtype=str)
    if "fs" not in f.attrs:
        raise DataError(f"{src}: attribute 'fs': expected the sampling rate in Hz, found none")
    fs = positive_fs(f.attrs["fs"], src, "attribute 'fs'")
    units = as_text(f.attrs["units"], src, "attribute 'units'") if "units" in f.attrs else "unknown"
    conds: dict[str, np.ndarray | None] = {}
    for name in ("rpm", "load_hp"):
        if name not in f:
            conds[name] = None
            continue
        d = f[name]
        if not isinstance(d, h5py.Dataset) or d.ndim != 1 or d.shape[0] != n or d.dtype.kind not in "fiu":
            raise DataError(f"{src}: {name}: expected a numeric dataset of shape ({n},), got "
                            f"{getattr(d, 'shape', None)} {getattr(d, 'dtype', '')}")
        arr = np.asarray(d[()], dtype=np.float64)
        if not np.isfinite(arr).all():
            raise DataError(f"{src}: {name}: expected finite values")
        conds[name] = arr
    channels = (as_names(f.attrs["channels"], src, "attribute 'channels'", c) if "channels" in f.attrs
                else [f"ch{i}" for i in range(c)])
    prov: dict[str, Any] = {}
    if "provenance" in f.attrs:
        try:
            prov = json.loads(as_text(f.attrs["provenance"], src, "attribute 'provenance'"))
        except json.JSONDecodeError:
            raise DataError(f"{src}: attribute 'provenance': expected JSON text") from None
        if not isinstance(prov, dict):
            raise DataError(f"{src}: attribute 'provenance': expected a JSON object")
    attrs = {}
    for k, v in f.attrs.items():
        if isinstance(v, (bytes, np.bytes_)):
            v = bytes(v).decode("utf-8", "replace")
        elif isinstance(v, np.ndarray):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v.tolist()]
        elif isinstance(v, np.generic):
            v = v.item()
        attrs[k] = v
    out = {"shape": (n, c, t), "labels": labels, "fs": fs, "units": units, "rpm": conds["rpm"],
           "load_hp": conds["load_hp"], "channels": channels, "provenance": prov, "attrs": attrs}
    if read_signals:
        x = np.asarray(sig[()])
        if not np.isfinite(x).all():
            raise DataError(f"{src}: signals: expected finite values, found {int(x.size - np.isfinite(x).sum())} "
                            f"NaN/Inf")
        out["signals"] = x
    return out


def read_generated(path: str | os.PathLike) -> GeneratedSet:
    """Read and validate a generated-data file (exchange format); DataError on anything missing or wrong.

    Checks: ``signals`` float32 (N, C, T) with finite values, ``labels`` UTF-8 strings (N,), optional ``rpm``
    and ``load_hp`` numeric (N,), attribute ``fs`` (Hz) positive, ``channels`` (C names) and ``provenance``
    (JSON) if present.
    """
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise DataError(f"{src}: file: not found")
    with open_hdf5(p, src, "generated-data HDF5 file") as f:
        g = validate_generated(f, src, read_signals=True)
    return GeneratedSet(signals=g["signals"], labels=g["labels"], fs=g["fs"], units=g["units"], rpm=g["rpm"],
                        load_hp=g["load_hp"], channels=g["channels"], provenance=g["provenance"], attrs=g["attrs"])
