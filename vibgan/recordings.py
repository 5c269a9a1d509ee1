"""Recordings and the readers for the formats people have: ``load`` (CWRU ``.mat``, ``.npz``, HDF5, CSV,
Parquet, WAV) -> ``Recording``; ``catalog`` and ``load_many`` over a folder.

Every loader takes the sampling rate from the file (or a file-name convention, or the CWRU table) or from the
caller, never from a guess; a caller's ``fs`` that disagrees with the file's is an error. Every problem with a
user's file raises ``DataError`` naming the file, the field and what was expected."""

from __future__ import annotations

import os
import re
import signal
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from scipy import signal as sps

from vibgan.cwru import _FAULT_RANK, CWRU_CHANNELS, CWRU_FILES, cwru_label_info, parse_cwru_name
from vibgan.errors import DataError, VibganError


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

    @property
    def source(self) -> str:
        """Where the signal came from (a path, 'simulated' or '<array>')."""
        return str(self.meta.get("source", "<array>"))


_TIME_COLUMNS = ("time", "t", "time_s")


#: Relative spread allowed between the steps of a time column before it counts as non-uniform.
TIME_STEP_TOLERANCE = 0.01


@contextmanager
def reading_file(src: str, what: str) -> Iterator[None]:
    """Turn whatever a third-party parser raises on a corrupt file into a DataError naming the file."""
    try:
        yield
    except VibganError:
        raise
    except MemoryError:
        raise DataError(f"{src}: {what}: the file declares more data than fits in memory (corrupt?)") from None
    except RecursionError:
        raise DataError(f"{src}: {what}: unreadable (nesting too deep; corrupt?)") from None
    except Exception as exc:  # parsers (zipfile, scipy.io, h5py, pandas, pyarrow) raise anything on garbage
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise DataError(f"{src}: {what}: unreadable or corrupt file ({type(exc).__name__}{': ' if msg else ''}"
                        f"{msg})") from exc


#: seconds the structure of an HDF5 file may take to read in a child process before the file counts as corrupt
HDF5_PROBE_S = float(os.environ.get("VIBGAN_HDF5_PROBE_S", "10"))


def probe_hdf5(path: str | os.PathLike, src: str, timeout_s: float | None = None) -> None:
    """Walk an HDF5 file's structure and attributes in a forked child first: one corrupt byte can make libhdf5
    loop forever while it holds the GIL, which no time limit in this process could stop. A DataError naming the
    file when the walk has not finished within ``timeout_s`` (default ``VIBGAN_HDF5_PROBE_S``, 10 s); errors the
    walk meets are left to the reader here, which reports them with their own message. No-op without fork."""
    if not hasattr(os, "fork"):
        return
    limit = HDF5_PROBE_S if timeout_s is None else float(timeout_s)
    pid = os.fork()
    if pid == 0:  # the child: walk, then leave without running any of the parent's exit code
        try:
            with h5py.File(path, "r") as f:
                def visit(name: str, obj: Any) -> None:
                    _ = [obj.attrs[k] for k in obj.attrs]
                    if isinstance(obj, h5py.Dataset):
                        _ = (obj.shape, obj.dtype)

                _ = [f.attrs[k] for k in f.attrs]
                f.visititems(visit)
        finally:
            os._exit(0)
    deadline = time.monotonic() + limit
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise DataError(f"{src}: HDF5 file: reading its structure did not finish within {limit:g} s (a corrupt "
                            "file can make libhdf5 loop forever); nothing was read from it")
        time.sleep(0.002)


@contextmanager
def open_hdf5(path: str | os.PathLike, src: str, what: str = "HDF5 file") -> Iterator[h5py.File]:
    """An HDF5 file opened read-only after ``probe_hdf5``, with parser errors turned into a DataError naming it."""
    probe_hdf5(path, src)
    with reading_file(src, what), h5py.File(path, "r") as f:
        yield f


def positive_fs(value: Any, src: str, field_name: str) -> float:
    try:
        fs = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) if np.size(value) == 1 else float("nan")
    except (TypeError, ValueError):
        raise DataError(f"{src}: {field_name}: expected a sampling rate in Hz, got {value!r}") from None
    if not np.isfinite(fs) or fs <= 0:
        raise DataError(f"{src}: {field_name}: expected a positive finite sampling rate in Hz, got {value!r}")
    return fs


def _optional_float(value: Any, src: str, field_name: str) -> float | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{src}: {field_name}: expected a number, got {value!r}") from None
    if arr.size != 1 or not np.isfinite(arr).all():
        raise DataError(f"{src}: {field_name}: expected one finite number, got {value!r}")
    return float(arr.reshape(-1)[0])


def as_text(value: Any, src: str, field_name: str) -> str:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise DataError(f"{src}: {field_name}: expected one string, got an array of shape {value.shape}")
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{src}: {field_name}: expected UTF-8 text") from None
    if isinstance(value, (str, np.str_)):
        return str(value)
    raise DataError(f"{src}: {field_name}: expected a string, got {type(value).__name__}")


def as_names(value: Any, src: str, field_name: str, count: int) -> list[str]:
    arr = np.asarray(value).reshape(-1)
    names = [as_text(v, src, field_name) for v in arr]
    if len(names) != count or len(set(names)) != count:
        raise DataError(f"{src}: {field_name}: expected {count} distinct channel names, got {names}")
    return names


def _vector(arr: Any, src: str, field_name: str) -> np.ndarray:
    """A (N,), (N, 1) or (1, N) numeric array as a 1-D float64 vector."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        raise DataError(f"{src}: {field_name}: expected real numbers, got dtype {a.dtype}")
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise DataError(f"{src}: {field_name}: expected a vector (N,), (N, 1) or (1, N), got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{src}: {field_name}: expected samples, got an empty array")
    return a


def _matrix(arr: Any, src: str, field_name: str) -> np.ndarray:
    """A (C, N) or (N,) numeric array as (C, N)."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fiu":
        raise DataError(f"{src}: {field_name}: expected real numbers, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise DataError(f"{src}: {field_name}: expected shape (channels, samples) or (samples,), got {a.shape}")
    if a.size == 0:
        raise DataError(f"{src}: {field_name}: expected samples, got an empty array of shape {a.shape}")
    if a.shape[0] > a.shape[1]:
        raise DataError(f"{src}: {field_name}: expected (channels, samples) with fewer channels than samples, "
                        f"got {a.shape}; store signals as (C, N)")
    return a


def _select(src: str, named: list[tuple[str, np.ndarray]], channels: Sequence[str | int] | str | int | None,
            *, equal_length_default: bool) -> tuple[np.ndarray, list[str]]:
    """Pick channels by name or index; default all (only those as long as the first, for CWRU files)."""
    names = [n for n, _ in named]
    if channels is None:
        n0 = len(named[0][1])
        chosen = [(n, a) for n, a in named if len(a) == n0] if equal_length_default else list(named)
    else:
        if isinstance(channels, (str, int, np.integer)):
            channels = [channels]
        channels = list(channels)
        if not channels:
            raise DataError(f"{src}: channels: expected at least one channel name or index, got []")
        chosen = []
        for c in channels:
            if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
                if not -len(named) <= int(c) < len(named):
                    raise DataError(f"{src}: channels: index {c} out of range for {len(named)} channels {names}")
                chosen.append(named[int(c)])
            elif isinstance(c, str):
                if c not in names:
                    raise DataError(f"{src}: channels: no channel {c!r}; the file has {names}")
                chosen.append(named[names.index(c)])
            else:
                raise DataError(f"{src}: channels: expected names or indices, got {c!r}")
        picked = [n for n, _ in chosen]
        if len(set(picked)) != len(picked):
            raise DataError(f"{src}: channels: a channel is asked for twice: {picked}")
    lengths = {n: len(a) for n, a in chosen}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{src}: channels: the chosen channels differ in length {lengths}; choose channels of "
                        f"equal length")
    # float32 before stacking: a long float64 file is not held twice more in memory
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which Recording reports
        return np.stack([np.asarray(a, dtype=np.float32) for _, a in chosen]), [n for n, _ in chosen]


def _resolve_fs(src: str, fs_file: float | None, fs_arg: float | None, where: str) -> tuple[float, str]:
    if fs_arg is not None:
        fs_arg = positive_fs(fs_arg, src, "fs argument")
    if fs_file is None:
        if fs_arg is None:
            raise DataError(f"{src}: fs: the file does not record a sampling rate ({where}); "
                            f"pass load(path, fs=<Hz>)")
        return fs_arg, "argument"
    if fs_arg is not None and abs(fs_arg - fs_file) > 1e-6 * max(fs_arg, fs_file):
        raise DataError(f"{src}: fs: the file says {fs_file:g} Hz ({where}) but fs={fs_arg:g} Hz was passed")
    return fs_file, where


def label_fields(label: str | None) -> dict[str, Any]:
    """fault and diameter_in implied by a label: CWRU labels, or plain fault names (normal/inner/outer/ball)."""
    info = cwru_label_info(label) if label else None
    if info is not None:
        return {"fault": info["fault"], "diameter_in": info["diameter_in"]}
    if label and label.lower() in _FAULT_RANK:
        return {"fault": label.lower(), "diameter_in": 0.0 if label.lower() == "normal" else None}
    return {"fault": None, "diameter_in": None}


def _finish(src: str, signal: np.ndarray, names: list[str], fs_file: float | None, fs_arg: float | None,
            fs_where: str, label_file: str | None, label_arg: str | None, meta: dict[str, Any]) -> Recording:
    fs, fs_source = _resolve_fs(src, fs_file, fs_arg, fs_where)
    if label_arg is not None:
        label_arg = str(label_arg)
        if label_file is not None and label_file != label_arg:
            raise DataError(f"{src}: label: the file says {label_file!r} but label={label_arg!r} was passed")
    label = label_file if label_file is not None else label_arg
    full = {
        "label": label,
        **label_fields(label),
        "rpm": None,
        "load_hp": None,
        "units": "unknown",
    }
    full.update({k: v for k, v in meta.items() if v is not None or k not in full})
    full["sensor"] = list(names)
    full["source"] = src
    full["fs_source"] = fs_source
    return Recording(signal, fs, full)


def _read_npz(path: Path, src: str) -> dict[str, Any]:
    # np.load leaks its handle when the zip directory is corrupt, so the file is opened here
    with reading_file(src, "npz archive"), open(path, "rb") as fh:
        obj = np.load(fh, allow_pickle=False)
        if not isinstance(obj, np.lib.npyio.NpzFile):
            raise DataError(f"{src}: format: expected an .npz archive (zip of arrays), found a single .npy array")
        try:
            keys = list(obj.files)
            if "signal" in keys:
                sig = _matrix(obj["signal"], src, "signal")
                if "fs" not in keys:
                    fs_file = None
                else:
                    fs_file = positive_fs(obj["fs"], src, "fs")
                names = (as_names(obj["channels"], src, "channels", sig.shape[0]) if "channels" in keys
                         else [f"ch{i}" for i in range(sig.shape[0])])
                meta: dict[str, Any] = {
                    "rpm": _optional_float(obj["rpm"], src, "rpm") if "rpm" in keys else None,
                    "load_hp": _optional_float(obj["load_hp"], src, "load_hp") if "load_hp" in keys else None,
                }
                if "units" in keys:
                    meta["units"] = as_text(obj["units"], src, "units")
                label = as_text(obj["label"], src, "label") if "label" in keys else None
                return {"named": list(zip(names, sig, strict=True)), "fs": fs_file, "where": "npz 'fs'", "label": label,
                        "meta": meta, "equal": False}
            present = [k for k in CWRU_CHANNELS if k in keys]
            if not present:
                raise DataError(f"{src}: arrays: expected 'signal' (with 'fs') or CWRU arrays 'DE'/'FE'/'BA', "
                                f"found {keys}")
            named = [(k, _vector(obj[k], src, k)) for k in present]
        finally:
            obj.close()
    try:
        info = parse_cwru_name(path.name)
    except DataError:
        info = None
    meta = {"units": "g"}
    if info is None:
        return {"named": named, "fs": None, "where": "file name", "label": None, "meta": meta, "equal": True}
    meta.update({k: info[k] for k in ("fault", "diameter_in", "rpm", "load_hp", "clock", "fault_end")})
    if info["fault_end"]:
        where = "file name"
    elif info["fault"] == "normal":
        where = "CWRU convention: the normal baseline is recorded at 48 kHz"
    else:
        where = "file name has no _DE12/_FE12/_DE48 suffix"
    return {"named": named, "fs": info["fs"], "where": where, "label": info["label"], "meta": meta, "equal": True}


_MAT_SIGNAL_RE = re.compile(r"^X(\d+)_(DE|FE|BA)_time$")


_MAT_RPM_RE = re.compile(r"^X(\d+)RPM$")


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(1032)
    # HDF5 superblock signature sits at 0 or at 512 (MATLAB v7.3 puts a 512-byte text header first)
    sig = b"\x89HDF\r\n\x1a\n"
    return head[:8] == sig or head[512:520] == sig or head[1024:1032] == sig


def _mat_variables(path: Path, src: str) -> dict[str, np.ndarray]:
    """All numeric variables of a MATLAB file (v5 via scipy.io, v7.3 via h5py), in MATLAB's orientation."""
    if not path.stat().st_size:
        raise DataError(f"{src}: MATLAB file: empty file")
    if _is_hdf5(path):
        out: dict[str, np.ndarray] = {}
        with open_hdf5(path, src, "MATLAB v7.3 (HDF5) file") as f:
            for key, obj in f.items():
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu" and obj.ndim <= 2:
                    # v7.3 stores arrays column-major: MATLAB's (N, 1) is the HDF5 dataset (1, N)
                    out[key] = np.asarray(obj[()]).T
        return out
    import scipy.io

    with reading_file(src, "MATLAB v5 file"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    return {k: v for k, v in raw.items() if not k.startswith("__") and isinstance(v, np.ndarray)
            and v.dtype.kind in "fiu"}


def _read_mat(path: Path, src: str) -> dict[str, Any]:
    variables = _mat_variables(path, src)
    groups: dict[int, dict[str, str]] = {}
    rpm_vars: dict[int, str] = {}
    for key in variables:
        m = _MAT_SIGNAL_RE.match(key)
        if m:
            groups.setdefault(int(m.group(1)), {})[m.group(2)] = key
        m = _MAT_RPM_RE.match(key)
        if m:
            rpm_vars[int(m.group(1))] = key
    if not groups:
        if "signal" in variables:  # a generic MATLAB file: 'signal' (C, N) and 'fs'
            sig = _matrix(variables["signal"], src, "signal")
            fs_file = positive_fs(variables["fs"], src, "fs") if "fs" in variables else None
            return {"named": [(f"ch{i}", row) for i, row in enumerate(sig)], "fs": fs_file, "where": "MATLAB 'fs'",
                    "label": None, "meta": {}, "equal": False}
        raise DataError(f"{src}: variables: expected CWRU variables like 'X105_DE_time' (or 'signal' and 'fs'), "
                        f"found {sorted(variables)}")
    stem = path.stem
    number = int(stem) if stem.isdigit() else None
    entry = CWRU_FILES.get(number) if number is not None else None
    if entry is not None and entry.variable in groups:
        var = entry.variable
    elif number is not None and number in groups:
        var = number
    elif len(groups) == 1:
        var = next(iter(groups))
    else:
        raise DataError(f"{src}: variables: the file holds several recordings {sorted(groups)}; name the file "
                        f"by its CWRU number (e.g. 105.mat) so the right one is read")
    if entry is None:
        matches = [f for f in CWRU_FILES.values() if f.variable == var]
        entry = matches[0] if len(matches) == 1 else None
    named = [(ch, _vector(variables[groups[var][ch]], src, groups[var][ch]))
             for ch in CWRU_CHANNELS if ch in groups[var]]
    rpm_file = None
    if var in rpm_vars:
        rpm_file = _optional_float(variables[rpm_vars[var]], src, rpm_vars[var])
        if rpm_file is not None and rpm_file <= 0:
            rpm_file = None
    meta: dict[str, Any] = {"units": "g", "cwru_number": entry.number if entry else number, "cwru_variable": var}
    if entry is not None:
        meta.update({"fault": entry.fault, "diameter_in": entry.diameter_in, "load_hp": entry.load_hp,
                     "rpm": rpm_file if rpm_file is not None else entry.rpm, "rpm_nominal": entry.rpm,
                     "clock": entry.clock, "fault_end": entry.fault_end})
        return {"named": named, "fs": entry.fs, "where": "CWRU table", "label": entry.label, "meta": meta,
                "equal": True}
    meta["rpm"] = rpm_file
    return {"named": named, "fs": None, "where": f"CWRU file {number or var} is not in CWRU_FILES", "label": None,
            "meta": meta, "equal": True}


def _h5_datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    f.visititems(visit)
    return found


def _h5_attr(ds: h5py.Dataset, f: h5py.File, key: str) -> Any:
    if key in ds.attrs:
        return ds.attrs[key]
    return f.attrs[key] if key in f.attrs else None


def _h5_recording_info(f: h5py.File, ds: h5py.Dataset, src: str) -> dict[str, Any]:
    """fs, label, rpm, load_hp, units and channel names of one recording dataset, without reading samples."""
    where = f"dataset {ds.name}"
    if ds.ndim not in (1, 2) or ds.dtype.kind not in "fiu":
        raise DataError(f"{src}: {where}: expected a real (channels, samples) or (samples,) array, got shape "
                        f"{ds.shape} dtype {ds.dtype}")
    shape = (1, ds.shape[0]) if ds.ndim == 1 else tuple(ds.shape)
    if shape[0] < 1 or shape[1] < 1:
        raise DataError(f"{src}: {where}: expected samples, got an empty array of shape {ds.shape}")
    if shape[0] > shape[1]:
        raise DataError(f"{src}: {where}: expected (channels, samples) with fewer channels than samples, got "
                        f"{ds.shape}; store signals as (C, N)")
    fs_ds = positive_fs(ds.attrs["fs"], src, f"{ds.name} attribute 'fs'") if "fs" in ds.attrs else None
    fs_f = positive_fs(f.attrs["fs"], src, "file attribute 'fs'") if "fs" in f.attrs else None
    if fs_ds is not None and fs_f is not None and abs(fs_ds - fs_f) > 1e-6 * fs_ds:
        raise DataError(f"{src}: fs: the dataset says {fs_ds:g} Hz but the file attribute says {fs_f:g} Hz")
    label = _h5_attr(ds, f, "label")
    names = _h5_attr(ds, f, "channels")
    units = _h5_attr(ds, f, "units")
    return {
        "shape": shape,
        "fs": fs_ds if fs_ds is not None else fs_f,
        "label": None if label is None else as_text(label, src, "attribute 'label'"),
        "rpm": _optional_float(_h5_attr(ds, f, "rpm"), src, "attribute 'rpm'"),
        "load_hp": _optional_float(_h5_attr(ds, f, "load_hp"), src, "attribute 'load_hp'"),
        "units": "unknown" if units is None else as_text(units, src, "attribute 'units'"),
        "names": (as_names(names, src, "attribute 'channels'", shape[0]) if names is not None
                  else [f"ch{i}" for i in range(shape[0])]),
    }


def hdf5_recordings(f: h5py.File, src: str, *, labelled: bool = False) -> list[tuple[h5py.Dataset, dict[str, Any]]]:
    """The recordings of an HDF5 recordings file (``write_recordings``): each 1-D/2-D dataset with its
    ``_h5_recording_info``, metadata only. Every one must have an ``fs`` (and a ``label`` when ``labelled``),
    all at one rate; a DataError names the file and the dataset otherwise."""
    dsets = [ds for ds in _h5_datasets(f).values() if ds.ndim in (1, 2)]
    if not dsets:
        raise DataError(f"{src}: datasets: expected one (channels, samples) dataset per recording, found none")
    found = [(ds, _h5_recording_info(f, ds, src)) for ds in dsets]
    for ds, info in found:
        if info["fs"] is None:
            raise DataError(f"{src}: dataset {ds.name}: fs: expected an 'fs' attribute (Hz)")
        if labelled and not info["label"]:
            raise DataError(f"{src}: dataset {ds.name}: label: expected a 'label' attribute (the class)")
    rates = sorted({info["fs"] for _, info in found})
    if len(rates) > 1:
        raise DataError(f"{src}: fs: datasets have different sampling rates {rates} Hz; one model per rate")
    return found


def _h5_signal_dataset(f: h5py.File, src: str) -> h5py.Dataset:
    if "signal" in f and isinstance(f["signal"], h5py.Dataset):
        return f["signal"]
    found = _h5_datasets(f)
    if "signals" in found and "labels" in found:
        raise DataError(f"{src}: datasets: this is a generated-data file (exchange format: 'signals', 'labels'); "
                        f"read it with vibgan.exchange.read_generated")
    if len(found) != 1:
        raise DataError(f"{src}: datasets: expected a dataset named 'signal' or exactly one dataset, found "
                        f"{sorted(found) or 'none'}")
    return next(iter(found.values()))


def _is_generated_file(path: Path) -> bool:
    probe_hdf5(path, str(path))  # a file that would hang libhdf5 is an error here, not a silent skip
    try:
        with h5py.File(path, "r") as f:
            return "signals" in f and "labels" in f
    except Exception:  # not HDF5 at all: not a generated file
        return False


def _read_hdf5(path: Path, src: str) -> dict[str, Any]:
    with open_hdf5(path, src) as f:
        ds = _h5_signal_dataset(f, src)
        info = _h5_recording_info(f, ds, src)
        sig = np.asarray(ds[()])
    sig = sig.reshape(info["shape"])
    meta = {"rpm": info["rpm"], "load_hp": info["load_hp"], "units": info["units"]}
    return {"named": list(zip(info["names"], sig, strict=True)), "fs": info["fs"], "where": "HDF5 attribute 'fs'",
            "label": info["label"], "meta": meta, "equal": False}


def _frame_to_named(df: Any, src: str) -> tuple[list[tuple[str, np.ndarray]], float | None]:
    """Columns -> channels; a time column (time/t/time_s, in s) gives fs and must be uniform."""
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise DataError(f"{src}: table: expected a header row and at least one row of samples, got shape {df.shape}")
    cols = [str(c) for c in df.columns]
    if len(set(cols)) != len(cols):
        raise DataError(f"{src}: columns: expected distinct column names, got {cols}")
    time_cols = [c for c in cols if c.strip().lower() in _TIME_COLUMNS]
    if len(time_cols) > 1:
        raise DataError(f"{src}: columns: expected at most one time column, found {time_cols}")
    fs = None
    if time_cols:
        t = _table_column(df, cols.index(time_cols[0]), src, time_cols[0])
        if t.size < 2:
            raise DataError(f"{src}: column {time_cols[0]!r}: expected at least two time stamps to give fs")
        steps = np.diff(t)
        step = (t[-1] - t[0]) / (t.size - 1)
        if not step > 0 or np.max(np.abs(steps - step)) > TIME_STEP_TOLERANCE * step:
            raise DataError(f"{src}: column {time_cols[0]!r}: expected uniform, increasing time stamps in s "
                            f"(steps {steps.min():.6g} to {steps.max():.6g} s); resample, or drop the column "
                            f"and pass fs")
        fs = 1.0 / step
        if abs(fs - round(fs)) <= 1e-6 * fs:  # float round-off in printed time stamps
            fs = float(round(fs))
    named = [(c, _table_column(df, i, src, c)) for i, c in enumerate(cols) if c not in time_cols]
    if not named:
        raise DataError(f"{src}: columns: expected at least one signal column besides the time column {time_cols}")
    return named, fs


def _table_column(df: Any, i: int, src: str, name: str) -> np.ndarray:
    col = df.iloc[:, i]
    if col.dtype.kind == "M":  # datetime time stamps -> seconds from the first
        ns = col.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        return (ns - ns[0]) / 1e9
    if col.dtype.kind not in "fiu":
        raise DataError(f"{src}: column {name!r}: expected numbers, got {col.dtype} values")
    return col.to_numpy(dtype=np.float64)


def _read_csv(path: Path, src: str) -> dict[str, Any]:
    import pandas as pd

    with reading_file(src, "CSV file"):
        df = pd.read_csv(path)
    named, fs = _frame_to_named(df, src)
    return {"named": named, "fs": fs, "where": "time column", "label": None, "meta": {}, "equal": False}


def _read_parquet(path: Path, src: str) -> dict[str, Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{src}: Parquet needs pyarrow: pip install 'vibgan[parquet]'") from None
    with reading_file(src, "Parquet file"):
        table = pq.read_table(path)
        md = {k.decode("utf-8", "replace"): v for k, v in (table.schema.metadata or {}).items()}
        df = table.to_pandas()
    named, fs = _frame_to_named(df, src)
    where = "time column"
    meta: dict[str, Any] = {}
    if "fs" in md:  # written by vibgan: schema metadata carries fs (Hz), label, rpm, load_hp, units
        fs_md = positive_fs(_text_float(md["fs"], src, "metadata 'fs'"), src, "metadata 'fs'")
        if fs is not None and abs(fs - fs_md) > 1e-6 * fs_md:
            raise DataError(f"{src}: fs: the time column gives {fs:g} Hz but metadata 'fs' says {fs_md:g} Hz")
        fs, where = fs_md, "Parquet metadata 'fs'"
    for key in ("rpm", "load_hp"):
        if key in md:
            meta[key] = _text_float(md[key], src, f"metadata {key!r}")
    if "units" in md:
        meta["units"] = as_text(md["units"], src, "metadata 'units'")
    label = as_text(md["label"], src, "metadata 'label'") if "label" in md else None
    return {"named": named, "fs": fs, "where": where, "label": label, "meta": meta, "equal": False}


def _text_float(raw: bytes, src: str, field_name: str) -> float:
    try:
        value = float(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DataError(f"{src}: {field_name}: expected a number, got {raw[:40]!r}") from None
    if not np.isfinite(value):
        raise DataError(f"{src}: {field_name}: expected a finite number, got {value}")
    return value


def _read_wav(path: Path, src: str) -> dict[str, Any]:
    import scipy.io.wavfile

    with reading_file(src, "WAV file"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rate, data = scipy.io.wavfile.read(path)
    for w in caught:  # scipy returns what it could read from a truncated file, with only a warning
        if "EOF" in str(w.message) or "Incomplete chunk" in str(w.message):
            raise DataError(f"{src}: WAV data: truncated file ({w.message})")
    data = np.asarray(data)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.size == 0:
        raise DataError(f"{src}: WAV data: expected samples, got shape {data.shape}")
    units = "unknown"
    if data.dtype.kind == "u":  # 8-bit PCM is unsigned, centred on 128
        bits = 8 * data.dtype.itemsize
        data = (data.astype(np.float64) - 2.0 ** (bits - 1)) / 2.0 ** (bits - 1)
        units = "normalized"
    elif data.dtype.kind == "i":
        data = data.astype(np.float64) / 2.0 ** (8 * data.dtype.itemsize - 1)
        units = "normalized"
    named = [(f"ch{i}", data[:, i]) for i in range(data.shape[1])]
    return {"named": named, "fs": float(rate) if rate else None, "where": "WAV header", "label": None,
            "meta": {"units": units}, "equal": False}


_READERS = {
    ".npz": _read_npz,
    ".mat": _read_mat,
    ".h5": _read_hdf5,
    ".hdf5": _read_hdf5,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
    ".wav": _read_wav,
}


#: File extensions that ``load`` understands.
SUPPORTED_EXTENSIONS = tuple(_READERS)


def load(path: str | os.PathLike, *, fs: float | None = None, channels: Sequence[str | int] | str | None = None,
         label: str | None = None) -> Recording:
    """Load one recording from a file, dispatching on its extension.

    Formats
    -------
    ``.npz``: CWRU form (arrays ``DE``/``FE``/``BA`` of shape (N, 1), g; class, rpm and fs from the file name
    ``1797_IR_7_DE12.npz``) or generic (``signal`` (C, N) or (N,), scalar ``fs``; optional ``label``, ``rpm``,
    ``load_hp``, ``units``, ``channels``). ``.mat``: CWRU MATLAB v5 or v7.3 (variables ``X105_DE_time``,
    ``X105RPM``; class, load and fs from ``CWRU_FILES`` by file number) or generic (``signal``, ``fs``).
    ``.h5``/``.hdf5``: dataset ``signal`` (or the only dataset), (C, N) or (N,), attribute ``fs`` on the
    dataset or the file; optional ``label``, ``rpm``, ``load_hp``, ``units``, ``channels`` attributes.
    ``.csv``/``.parquet``: one column per channel, a header row; a time column (``time``/``t``/``time_s``, s)
    gives fs and must be uniform. ``.wav``: integer PCM scaled to [-1, 1] (units "normalized").

    Parameters
    ----------
    path : the file.
    fs : sampling rate in Hz; required where the file records none, and must agree with the file otherwise.
    channels : channel names or indices to keep. Default: all channels; for CWRU files the channels DE, FE, BA
        that are present and as long as the first of them.
    label : class label; required to agree with the file's label where it has one.

    Returns
    -------
    Recording with float32 signal (channels, samples) and meta keys label, fault, diameter_in, rpm, load_hp,
    sensor (channel names), units, source (the path), fs_source (where fs came from).

    Raises
    ------
    DataError for a missing, unreadable, corrupt or truncated file, an unknown extension, missing keys,
    NaN/Inf samples, empty or wrongly shaped arrays, a missing or conflicting fs, or a conflicting label.
    """
    p = Path(path)
    src = str(p)
    ext = p.suffix.lower()
    if ext not in _READERS:
        raise DataError(f"{src}: extension: expected one of {', '.join(SUPPORTED_EXTENSIONS)}, got {ext or 'none'!r}")
    if not p.is_file():
        raise DataError(f"{src}: file: not found (or not a regular file)")
    with reading_file(src, "file"):
        raw = _READERS[ext](p, src)
    signal, names = _select(src, raw["named"], channels, equal_length_default=raw["equal"])
    return _finish(src, signal, names, raw["fs"], fs, raw["where"], raw["label"], label, raw["meta"])


def resample_ratio(fs_from: float, fs_to: float, where: str = "resample") -> tuple[int, int]:
    """(up, down), the exact rational ratio fs_to / fs_from in lowest terms (denominators up to 10**6 each);
    a DataError when the rates have no such ratio (resampling by an approximate one would shift every line)."""
    ratio = (Fraction(fs_to).limit_denominator(10**6) / Fraction(fs_from).limit_denominator(10**6))
    up, down = ratio.numerator, ratio.denominator
    if abs(fs_from * up / down - fs_to) > 1e-9 * fs_to or max(up, down) > 10**6:
        raise DataError(f"{where}: fs: no exact rational ratio from {fs_from:g} Hz to {fs_to:g} Hz")
    return up, down


def resample(rec: Recording, fs: float) -> Recording:
    """``rec`` at ``fs`` Hz: ``scipy.signal.resample_poly`` by the exact ratio (anti-aliased, zero phase), in
    float64; ``meta['fs_original']`` keeps the rate it was recorded at. The same recording when already at ``fs``."""
    if abs(rec.fs - fs) <= 1e-9 * fs:
        return rec
    up, down = resample_ratio(rec.fs, fs, rec.source)
    x = sps.resample_poly(rec.signal.astype(np.float64), up, down, axis=-1)
    meta = {**rec.meta, "fs_original": rec.meta.get("fs_original", rec.fs)}
    return Recording(x.astype(np.float32), float(fs), meta)

