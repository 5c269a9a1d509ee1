"""Recordings, loaders, catalogs, windows, time splits, normalisation and datasets.

Data flows one way: ``load`` (any file format) -> ``Recording`` -> ``windows`` / ``split_by_time`` ->
``Normalizer`` (fit on training parts only) -> ``SegmentDataset`` -> training. Generated signals come back
through the HDF5 exchange format (``write_generated`` / ``GeneratedWriter`` / ``read_generated``).

Every loader takes the sampling rate from the file (or a file-name convention, or the CWRU table) or
from the caller, never from a guess; a caller's ``fs`` that disagrees with the file's is an error.
Every problem with a user's file raises ``DataError`` naming the file, the field and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

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


# ---------------------------------------------------------------------------------------------------------
# CWRU naming and the file-number table
# ---------------------------------------------------------------------------------------------------------

#: Nominal motor speed (rpm) of the CWRU test rig at each motor load (hp), from the Bearing Data Center pages.
CWRU_LOAD_RPM = {0: 1797, 1: 1772, 2: 1750, 3: 1730}
#: Inverse map: nominal rpm -> motor load in hp.
RPM_TO_LOAD_HP = {rpm: hp for hp, rpm in CWRU_LOAD_RPM.items()}
#: Channel names of the CWRU accelerometers, in the fixed order loaders return them.
CWRU_CHANNELS = ("DE", "FE", "BA")
#: The file names of the CWRU pages ("105.mat") are served from this URL template by the fetch script.
CWRU_BASE_URL = "https://engineering.case.edu/sites/default/files/{number}.mat"

_FAULT_CODES = {"B": "ball", "IR": "inner", "OR": "outer"}
_FAULT_RANK = {"normal": 0, "ball": 1, "inner": 2, "outer": 3}
_LABEL_RE = re.compile(r"^(?:(?P<normal>Normal)|(?P<code>B|IR)_(?P<size>\d+)|OR@(?P<clock>\d+)_(?P<osize>\d+))$")
_NPZ_NAME_RE = re.compile(
    r"^(?P<rpm>\d{3,5})_(?P<label>Normal|B_\d+|IR_\d+|OR@\d+_\d+)(?:_(?P<end>DE|FE)(?P<khz>12|48))?$"
)


@dataclass(frozen=True)
class CwruFile:
    """One official CWRU Bearing Data Center ``.mat`` file.

    Attributes
    ----------
    number : file number on the CWRU site (``105`` for ``105.mat``).
    label : class label ("Normal", "IR_7", "B_14", "OR@6_21", ...).
    fault : normal, inner, outer or ball.
    diameter_in : fault diameter in inches (0.0 for normal).
    load_hp : motor load in hp (0-3).
    rpm : nominal motor speed in rpm for that load (the file's own ``X###RPM`` may differ by a few rpm).
    fs : sampling rate in Hz.
    fault_end : bearing that carries the seeded fault ("DE"), None for normal.
    clock : outer-race fault position in o'clock (3, 6, 12), None otherwise.
    variable : the number in the file's variable names (``X105_DE_time``); differs from ``number`` for the
        0.028 in files (3001.mat holds ``X056_*``).
    dataset : which CWRU page the file belongs to ("normal", "12k_drive_end").
    """

    number: int
    label: str
    fault: str
    diameter_in: float
    load_hp: int
    rpm: float
    fs: float
    fault_end: str | None
    clock: int | None
    variable: int
    dataset: str

    @property
    def filename(self) -> str:
        return f"{self.number}.mat"


# Label -> file numbers at 0, 1, 2, 3 hp: the "12k Drive End Bearing Fault Data" page and the "Normal
# Baseline Data" page. Cross-checked against three independent public transcriptions of those pages; 157 is
# not a file (OR@12_7 runs 156, 158, 159, 160). The normal baseline is often quoted as 48 kHz; its spectrum
# shows the shaft (29.95 Hz at 1797 rpm) only when read at 12 kHz, and it shares the 12 kHz files'
# anti-alias roll-off, so it is listed at 12 kHz (see ../shared/data/cwru/README.md).
_CWRU_12K_DE: dict[str, tuple[int, int, int, int]] = {
    "Normal": (97, 98, 99, 100),
    "IR_7": (105, 106, 107, 108),
    "B_7": (118, 119, 120, 121),
    "OR@6_7": (130, 131, 132, 133),
    "OR@3_7": (144, 145, 146, 147),
    "OR@12_7": (156, 158, 159, 160),
    "IR_14": (169, 170, 171, 172),
    "B_14": (185, 186, 187, 188),
    "OR@6_14": (197, 198, 199, 200),
    "IR_21": (209, 210, 211, 212),
    "B_21": (222, 223, 224, 225),
    "OR@6_21": (234, 235, 236, 237),
    "OR@3_21": (246, 247, 248, 249),
    "OR@12_21": (258, 259, 260, 261),
    "IR_28": (3001, 3002, 3003, 3004),
    "B_28": (3005, 3006, 3007, 3008),
}
# The 0.028 in files carry variables numbered after an older numbering (X056..X059, X048..X051).
_CWRU_VARIABLE = {3001: 56, 3002: 57, 3003: 58, 3004: 59, 3005: 48, 3006: 49, 3007: 50, 3008: 51}


def cwru_label_info(label: str) -> dict[str, Any] | None:
    """Fault, diameter (in) and outer-race clock position of a CWRU-style label, or None if it is not one.

    ``"IR_7"`` -> ``{"fault": "inner", "diameter_in": 0.007, "clock": None}``; ``"OR@6_21"`` -> outer,
    0.021, 6; ``"Normal"`` -> normal, 0.0. Sizes are in mils (thousandths of an inch).
    """
    m = _LABEL_RE.match(str(label))
    if m is None:
        return None
    if m.group("normal"):
        return {"fault": "normal", "diameter_in": 0.0, "clock": None}
    if m.group("code"):
        return {"fault": _FAULT_CODES[m.group("code")], "diameter_in": int(m.group("size")) / 1000.0, "clock": None}
    return {"fault": "outer", "diameter_in": int(m.group("osize")) / 1000.0, "clock": int(m.group("clock"))}


def _build_cwru_files() -> dict[int, CwruFile]:
    table: dict[int, CwruFile] = {}
    for label, numbers in _CWRU_12K_DE.items():
        info = cwru_label_info(label)
        assert info is not None
        for load_hp, number in enumerate(numbers):
            normal = info["fault"] == "normal"
            table[number] = CwruFile(
                number=number, label=label, fault=info["fault"], diameter_in=info["diameter_in"],
                load_hp=load_hp, rpm=float(CWRU_LOAD_RPM[load_hp]), fs=12000.0,
                fault_end=None if normal else "DE", clock=info["clock"],
                variable=_CWRU_VARIABLE.get(number, number), dataset="normal" if normal else "12k_drive_end",
            )
    return dict(sorted(table.items()))


#: file number -> CwruFile for the official 12 kHz drive-end fault files and the normal baseline.
CWRU_FILES: dict[int, CwruFile] = _build_cwru_files()
#: The usual "CWRU 10-class" set at 0 hp: normal plus ball, inner and outer (6 o'clock) at 7, 14, 21 mils.
CWRU_10CLASS_0HP: tuple[int, ...] = (97, 118, 185, 222, 105, 169, 209, 130, 197, 234)


def cwru_files(labels: Iterable[str] | None = None, loads: Iterable[int] | None = None) -> list[CwruFile]:
    """Entries of ``CWRU_FILES`` filtered by label and motor load (hp); None means all."""
    labels = None if labels is None else set(labels)
    loads = None if loads is None else {int(x) for x in loads}
    if labels is not None:
        unknown = labels - {f.label for f in CWRU_FILES.values()}
        if unknown:
            raise DataError(f"CWRU table: labels: unknown {sorted(unknown)}; expected some of {list(_CWRU_12K_DE)}")
    return [f for f in CWRU_FILES.values()
            if (labels is None or f.label in labels) and (loads is None or f.load_hp in loads)]


def label_sort_key(label: Any) -> tuple:
    """Sort key for class labels: Normal first, then ball, inner, outer race, by clock position and size.

    CWRU labels ("B_7", "OR@6_14") and plain fault names ("normal", "inner") sort by physics; any other
    label sorts after them, alphabetically.
    """
    text = "" if label is None else str(label)
    info = cwru_label_info(text)
    if info is not None:
        return (0, _FAULT_RANK[info["fault"]], info["clock"] or 0, info["diameter_in"], text)
    if text.lower() in _FAULT_RANK:
        return (0, _FAULT_RANK[text.lower()], 0, 0.0, text)
    return (1, 0, 0, 0.0, text)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (checksums for fetch manifests and provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_cwru_name(filename: str | os.PathLike) -> dict[str, Any]:
    """Metadata from a CWRU ``.npz`` file name such as ``1797_IR_7_DE12.npz`` or ``1797_Normal.npz``.

    Returns
    -------
    dict with ``rpm`` (nominal, rpm), ``load_hp`` (hp, None for an rpm outside the CWRU table), ``label``,
    ``fault``, ``diameter_in`` (in), ``clock`` (outer-race o'clock or None), ``fault_end`` ("DE"/"FE"/None) and
    ``fs`` in Hz (12000 from "DE12"/"FE12", 48000 from "DE48"; 12000 for the normal baseline per the data
    README; None for a fault file without the suffix).

    Raises
    ------
    DataError if the name does not follow the convention.
    """
    stem = Path(filename).name
    if stem.lower().endswith(".npz"):
        stem = stem[:-4]
    m = _NPZ_NAME_RE.match(stem)
    if m is None:
        raise DataError(
            f"{filename}: file name: expected the CWRU form '<rpm>_<label>[_DE12|_FE12|_DE48].npz' "
            f"(e.g. 1797_IR_7_DE12.npz, 1797_Normal.npz)"
        )
    label = m.group("label")
    info = cwru_label_info(label)
    if info is None:  # the regex admits only CWRU labels, so this is a programming error
        raise DataError(f"{filename}: label: {label!r} is not a CWRU label")
    rpm = float(m.group("rpm"))
    if m.group("khz"):
        fs: float | None = float(m.group("khz")) * 1000.0
    elif info["fault"] == "normal":
        fs = 12000.0
    else:
        fs = None
    return {
        "rpm": rpm,
        "load_hp": RPM_TO_LOAD_HP.get(int(rpm)),
        "label": label,
        "fault": info["fault"],
        "diameter_in": info["diameter_in"],
        "clock": info["clock"],
        "fault_end": m.group("end"),
        "fs": fs,
    }


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------

_TIME_COLUMNS = ("time", "t", "time_s")
#: Relative spread allowed between the steps of a time column before it counts as non-uniform.
TIME_STEP_TOLERANCE = 0.01


@contextmanager
def _reading(src: str, what: str) -> Iterator[None]:
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


def _positive_fs(value: Any, src: str, field_name: str) -> float:
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


def _as_text(value: Any, src: str, field_name: str) -> str:
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


def _as_names(value: Any, src: str, field_name: str, count: int) -> list[str]:
    arr = np.asarray(value).reshape(-1)
    names = [_as_text(v, src, field_name) for v in arr]
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
        fs_arg = _positive_fs(fs_arg, src, "fs argument")
    if fs_file is None:
        if fs_arg is None:
            raise DataError(f"{src}: fs: the file does not record a sampling rate ({where}); "
                            f"pass load(path, fs=<Hz>)")
        return fs_arg, "argument"
    if fs_arg is not None and abs(fs_arg - fs_file) > 1e-6 * max(fs_arg, fs_file):
        raise DataError(f"{src}: fs: the file says {fs_file:g} Hz ({where}) but fs={fs_arg:g} Hz was passed")
    return fs_file, where


def _label_fields(label: str | None) -> dict[str, Any]:
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
        **_label_fields(label),
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
    with _reading(src, "npz archive"), open(path, "rb") as fh:
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
                    fs_file = _positive_fs(obj["fs"], src, "fs")
                names = (_as_names(obj["channels"], src, "channels", sig.shape[0]) if "channels" in keys
                         else [f"ch{i}" for i in range(sig.shape[0])])
                meta: dict[str, Any] = {
                    "rpm": _optional_float(obj["rpm"], src, "rpm") if "rpm" in keys else None,
                    "load_hp": _optional_float(obj["load_hp"], src, "load_hp") if "load_hp" in keys else None,
                }
                if "units" in keys:
                    meta["units"] = _as_text(obj["units"], src, "units")
                label = _as_text(obj["label"], src, "label") if "label" in keys else None
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
        where = "CWRU convention: normal baseline at 12 kHz (data README)"
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
        with _reading(src, "MATLAB v7.3 (HDF5) file"), h5py.File(path, "r") as f:
            for key, obj in f.items():
                if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu" and obj.ndim <= 2:
                    # v7.3 stores arrays column-major: MATLAB's (N, 1) is the HDF5 dataset (1, N)
                    out[key] = np.asarray(obj[()]).T
        return out
    import scipy.io

    with _reading(src, "MATLAB v5 file"), warnings.catch_warnings():
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
            fs_file = _positive_fs(variables["fs"], src, "fs") if "fs" in variables else None
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
    fs_ds = _positive_fs(ds.attrs["fs"], src, f"{ds.name} attribute 'fs'") if "fs" in ds.attrs else None
    fs_f = _positive_fs(f.attrs["fs"], src, "file attribute 'fs'") if "fs" in f.attrs else None
    if fs_ds is not None and fs_f is not None and abs(fs_ds - fs_f) > 1e-6 * fs_ds:
        raise DataError(f"{src}: fs: the dataset says {fs_ds:g} Hz but the file attribute says {fs_f:g} Hz")
    label = _h5_attr(ds, f, "label")
    names = _h5_attr(ds, f, "channels")
    units = _h5_attr(ds, f, "units")
    return {
        "shape": shape,
        "fs": fs_ds if fs_ds is not None else fs_f,
        "label": None if label is None else _as_text(label, src, "attribute 'label'"),
        "rpm": _optional_float(_h5_attr(ds, f, "rpm"), src, "attribute 'rpm'"),
        "load_hp": _optional_float(_h5_attr(ds, f, "load_hp"), src, "attribute 'load_hp'"),
        "units": "unknown" if units is None else _as_text(units, src, "attribute 'units'"),
        "names": (_as_names(names, src, "attribute 'channels'", shape[0]) if names is not None
                  else [f"ch{i}" for i in range(shape[0])]),
    }


def _h5_signal_dataset(f: h5py.File, src: str) -> h5py.Dataset:
    if "signal" in f and isinstance(f["signal"], h5py.Dataset):
        return f["signal"]
    found = _h5_datasets(f)
    if "signals" in found and "labels" in found:
        raise DataError(f"{src}: datasets: this is a generated-data file (exchange format: 'signals', 'labels'); "
                        f"read it with vibgan.data.read_generated")
    if len(found) != 1:
        raise DataError(f"{src}: datasets: expected a dataset named 'signal' or exactly one dataset, found "
                        f"{sorted(found) or 'none'}")
    return next(iter(found.values()))


def _is_generated_file(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "signals" in f and "labels" in f
    except Exception:  # not HDF5 at all: not a generated file
        return False


def _read_hdf5(path: Path, src: str) -> dict[str, Any]:
    with _reading(src, "HDF5 file"), h5py.File(path, "r") as f:
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

    with _reading(src, "CSV file"):
        df = pd.read_csv(path)
    named, fs = _frame_to_named(df, src)
    return {"named": named, "fs": fs, "where": "time column", "label": None, "meta": {}, "equal": False}


def _read_parquet(path: Path, src: str) -> dict[str, Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{src}: Parquet needs pyarrow: pip install 'vibgan[parquet]'") from None
    with _reading(src, "Parquet file"):
        table = pq.read_table(path)
        md = {k.decode("utf-8", "replace"): v for k, v in (table.schema.metadata or {}).items()}
        df = table.to_pandas()
    named, fs = _frame_to_named(df, src)
    where = "time column"
    meta: dict[str, Any] = {}
    if "fs" in md:  # written by vibgan: schema metadata carries fs (Hz), label, rpm, load_hp, units
        fs_md = _positive_fs(_text_float(md["fs"], src, "metadata 'fs'"), src, "metadata 'fs'")
        if fs is not None and abs(fs - fs_md) > 1e-6 * fs_md:
            raise DataError(f"{src}: fs: the time column gives {fs:g} Hz but metadata 'fs' says {fs_md:g} Hz")
        fs, where = fs_md, "Parquet metadata 'fs'"
    for key in ("rpm", "load_hp"):
        if key in md:
            meta[key] = _text_float(md[key], src, f"metadata {key!r}")
    if "units" in md:
        meta["units"] = _as_text(md["units"], src, "metadata 'units'")
    label = _as_text(md["label"], src, "metadata 'label'") if "label" in md else None
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

    with _reading(src, "WAV file"), warnings.catch_warnings(record=True) as caught:
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
    with _reading(src, "file"):
        raw = _READERS[ext](p, src)
    signal, names = _select(src, raw["named"], channels, equal_length_default=raw["equal"])
    return _finish(src, signal, names, raw["fs"], fs, raw["where"], raw["label"], label, raw["meta"])


# ---------------------------------------------------------------------------------------------------------
# Catalogs and many recordings
# ---------------------------------------------------------------------------------------------------------

CATALOG_COLUMNS = ("path", "label", "fault", "diameter_in", "rpm", "load_hp", "fs", "channels", "sensor",
                   "samples", "duration_s", "units", "fs_source")


def _recording_files(root: Path, pattern: str | None) -> list[Path]:
    if not root.exists():
        raise DataError(f"{root}: directory: not found")
    if root.is_file():
        return [root]
    files = []
    for p in root.rglob(pattern or "*"):
        rel = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel):  # hidden files and folders (.part downloads, caches)
            continue
        if p.is_file() and p.suffix.lower() in _READERS:
            files.append(p)
    return sorted(files)


def _catalog_row(p: Path) -> dict[str, Any] | None:
    src = str(p)
    if p.suffix.lower() in (".h5", ".hdf5"):
        if _is_generated_file(p):
            return None  # generated data (exchange format) is not a recording
        with _reading(src, "HDF5 file"), h5py.File(p, "r") as f:  # metadata only: the file may exceed memory
            info = _h5_recording_info(f, _h5_signal_dataset(f, src), src)
        fs, where = _resolve_fs(src, info["fs"], None, "HDF5 attribute 'fs'")
        rec_label = info["label"]
        meta = {"label": rec_label, "rpm": info["rpm"], "load_hp": info["load_hp"], "units": info["units"],
                "sensor": info["names"], "fs_source": where}
        meta.update(_label_fields(rec_label))
        channels, samples = info["shape"]
    else:
        rec = load(p)
        meta, fs, channels, samples = rec.meta, rec.fs, rec.channels, rec.samples
    return {
        "path": src, "label": meta.get("label"), "fault": meta.get("fault"), "diameter_in": meta.get("diameter_in"),
        "rpm": meta.get("rpm"), "load_hp": meta.get("load_hp"), "fs": fs, "channels": channels,
        "sensor": ",".join(meta.get("sensor", [])), "samples": samples, "duration_s": samples / fs,
        "units": meta.get("units"), "fs_source": meta.get("fs_source"),
    }


def _row_key(label: Any, load_hp: Any, path: str) -> tuple:
    return (label_sort_key(label), float("inf") if load_hp is None else float(load_hp), path)


def catalog(root: str | os.PathLike, pattern: str | None = None, *, errors: str = "raise") -> Any:
    """One row per recording file under ``root`` (searched recursively): what to inspect before training.

    Parameters
    ----------
    root : a directory (or a single file).
    pattern : glob for file names, e.g. ``"*.npz"`` or ``"1797_*"``; default every supported extension.
    errors : "raise" (default): unreadable files raise one DataError naming all of them; "skip": they are
        left out and listed in ``df.attrs["skipped"]``. Generated-data HDF5 files are never listed.

    Returns
    -------
    pandas.DataFrame with columns path, label, fault, diameter_in (in), rpm, load_hp (hp), fs (Hz), channels
    (count), sensor (comma-separated names), samples, duration_s (s), units, fs_source; sorted by class
    (Normal first, then ball, inner, outer race, by size), load and path. HDF5 files are read for metadata
    only.
    """
    import pandas as pd

    if errors not in ("raise", "skip"):
        raise DataError(f"catalog: errors: expected 'raise' or 'skip', got {errors!r}")
    root = Path(root)
    rows, bad = [], []
    for p in _recording_files(root, pattern):
        try:
            row = _catalog_row(p)
        except DataError as exc:
            bad.append(str(exc))
            continue
        if row is not None:
            rows.append(row)
    if bad and errors == "raise":
        raise DataError(f"catalog {root}: {len(bad)} unreadable file(s) (use errors='skip' to leave them out): "
                        + " | ".join(bad))
    rows.sort(key=lambda r: _row_key(r["label"], r["load_hp"], r["path"]))
    df = pd.DataFrame(rows, columns=list(CATALOG_COLUMNS))
    df.attrs["skipped"] = bad
    return df


def load_many(root_or_paths: str | os.PathLike | Iterable[str | os.PathLike], *,
              channels: Sequence[str | int] | str | None = None, classes: Iterable[str] | None = None,
              pattern: str | None = None, allow_mixed_fs: bool = False) -> list[Recording]:
    """Load every recording under a directory (recursive) or in a list of paths, sorted like ``catalog``.

    Parameters
    ----------
    root_or_paths : a directory, a file, or an iterable of files.
    channels : passed to ``load`` for every file.
    classes : keep only recordings with these labels; a class with no recording is an error.
    pattern : glob for file names when a directory is given.
    allow_mixed_fs : recordings of different sampling rates raise a DataError unless this is True.
    """
    if isinstance(root_or_paths, (str, os.PathLike)):
        root = Path(root_or_paths)
        paths = [p for p in _recording_files(root, pattern)
                 if not (p.suffix.lower() in (".h5", ".hdf5") and _is_generated_file(p))]
        where = str(root)
    else:
        paths = [Path(p) for p in root_or_paths]
        where = "the given paths"
    recs = [load(p, channels=channels) for p in paths]
    if classes is not None:
        wanted = [str(c) for c in ([classes] if isinstance(classes, str) else classes)]
        found = {r.label for r in recs}
        missing = [c for c in wanted if c not in found]
        if missing:
            raise DataError(f"{where}: classes: no recording labelled {missing}; found "
                            f"{sorted(found, key=label_sort_key)}")
        recs = [r for r in recs if r.label in wanted]
    if not recs:
        raise DataError(f"{where}: expected at least one recording ({', '.join(SUPPORTED_EXTENSIONS)}), found none")
    rates = sorted({r.fs for r in recs})
    if len(rates) > 1 and not allow_mixed_fs:
        by_fs = {fs: [Path(r.source).name for r in recs if r.fs == fs][:3] for fs in rates}
        raise DataError(f"{where}: fs: recordings have different sampling rates {by_fs} (Hz: files); resample "
                        f"them, load one rate at a time, or pass allow_mixed_fs=True")
    recs.sort(key=lambda r: _row_key(r.label, r.meta.get("load_hp"), r.source))
    return recs


# ---------------------------------------------------------------------------------------------------------
# Windows and time splits
# ---------------------------------------------------------------------------------------------------------


def _positive_int(value: Any, name: str) -> int:
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
    length = _positive_int(length, "windows: length")
    hop = length if hop is None else _positive_int(hop, "windows: hop")
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


# ---------------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------------

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

    def __init__(self, per_class: bool = True) -> None:
        self.per_class = bool(per_class)
        self.classes: list[str] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

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
        groups = {c: [r for r in recs if r.label == c] for c in classes} if self.per_class else {_GLOBAL: recs}
        means, stds = [], []
        for members in groups.values():
            n = sum(r.samples for r in members)
            mean = sum(r.signal.astype(np.float64).sum(axis=1) for r in members) / n
            var = sum(((r.signal.astype(np.float64) - mean[:, None]) ** 2).sum(axis=1) for r in members) / n
            std = np.sqrt(var)
            means.append(mean)
            stds.append(np.where(std > 0, std, 1.0))  # a constant channel is shifted, not blown up
        self.classes, self.mean, self.std = classes, np.stack(means), np.stack(stds)
        return self

    def _rows(self, labels: Any, batch: int) -> np.ndarray:
        """Row of mean/std per batch item, from label strings or int indices into ``classes``."""
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

    def _apply(self, x: Any, labels: Any, inverse: bool) -> Any:
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        single = getattr(x, "ndim", None) == 2
        if single:
            x = x[None]
        if getattr(x, "ndim", None) != 3:
            raise DataError(f"Normalizer: x: expected (B, C, T) or (C, T), got shape {tuple(getattr(x, 'shape', ()))}")
        if x.shape[1] != self.mean.shape[1]:
            raise DataError(f"Normalizer: x: expected {self.mean.shape[1]} channels, got {x.shape[1]}")
        rows = self._rows(labels, int(x.shape[0]))
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

    def transform(self, x: Any, labels: Any = None) -> Any:
        """(x - mean) / std per item and channel; x (B, C, T) or (C, T), numpy or torch, same type back.

        ``labels``: label strings or int indices into ``classes`` (one per item, or one for all); optional in
        global mode.
        """
        return self._apply(x, labels, inverse=False)

    def inverse(self, x: Any, labels: Any = None) -> Any:
        """x * std + mean: normalised values back to physical units; arguments as in ``transform``."""
        return self._apply(x, labels, inverse=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: per_class, classes, channels, mean and std per class (or '*')."""
        self._check_fitted()
        assert self.mean is not None and self.std is not None
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
            classes = [str(c) for c in state["classes"]]
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
        norm = cls(per_class=per_class)
        norm.classes, norm.mean, norm.std = classes, mean, std
        return norm


# ---------------------------------------------------------------------------------------------------------
# Torch dataset
# ---------------------------------------------------------------------------------------------------------


def _cond_value(v: Any, src: str, name: str) -> float:
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise DataError(f"{src}: {name}: expected a number, got {v!r}") from None


def process_local_h5(owner: Any, path: str) -> h5py.File:
    """``path`` opened read-only once per process and cached on ``owner`` (attributes ``_h5``, ``_pid``):
    a handle inherited through fork (DataLoader workers, torchrun) is not safe to use."""
    if getattr(owner, "_h5", None) is None or getattr(owner, "_pid", None) != os.getpid():
        owner._h5 = h5py.File(path, "r")
        owner._pid = os.getpid()
    return owner._h5


class SegmentDataset(Dataset):
    """Windows of recordings as ``(x, class_index, cond)``: x float32 (C, T), cond float32 (2,) = [rpm, load_hp].

    Built from Recordings in memory, or with ``from_hdf5`` from a file read lazily, one window at a time.
    The default DataLoader collate turns items into (B, C, T), (B,) and (B, 2).

    Parameters
    ----------
    recordings : recordings of one sampling rate and channel count (e.g. the training parts).
    length : window length T in samples.
    hop : step between windows in samples (default ``length``).
    classes : class labels in index order (default the recordings' labels in ``label_sort_key`` order).
    normalizer : applied per window with the window's class, if given.
    missing_cond : value for rpm/load_hp where a recording has none; default None raises a DataError.

    Attributes
    ----------
    fs (Hz), channels, length, classes, targets (class index per window, int64).
    """

    def __init__(self, recordings: Iterable[Recording], length: int, hop: int | None = None, *,
                 classes: Sequence[str] | None = None, normalizer: Normalizer | None = None,
                 missing_cond: float | None = None) -> None:
        recs = list(recordings)
        if not recs:
            raise DataError("SegmentDataset: expected at least one recording")
        rates = sorted({r.fs for r in recs})
        if len(rates) > 1:
            raise DataError(f"SegmentDataset: fs: recordings have different sampling rates {rates} Hz")
        self._init_index(
            sources=[r.source for r in recs], labels=[r.label for r in recs],
            samples=[r.samples for r in recs], chans=[r.channels for r in recs],
            cond=[(_cond_value(r.meta.get("rpm"), r.source, "rpm"),
                   _cond_value(r.meta.get("load_hp"), r.source, "load_hp")) for r in recs],
            fs=rates[0], length=length, hop=hop, classes=classes, normalizer=normalizer, missing_cond=missing_cond,
        )
        self._arrays: list[np.ndarray] | None = [r.signal for r in recs]
        self._h5path: str | None = None

    def _init_index(self, *, sources: list[str], labels: list[str], samples: list[int], chans: list[int],
                    cond: Any, fs: float, length: int, hop: int | None,
                    classes: Sequence[str] | None, normalizer: Normalizer | None, missing_cond: float | None) -> None:
        self.length = _positive_int(length, "SegmentDataset: length")
        self.hop = self.length if hop is None else _positive_int(hop, "SegmentDataset: hop")
        if len(set(chans)) != 1:
            raise DataError(f"SegmentDataset: channels: recordings differ in channel count {sorted(set(chans))}; "
                            f"load them with the same channels (e.g. channels=['DE'])")
        self.channels, self.fs = chans[0], float(fs)
        for s, lab in zip(sources, labels, strict=True):
            if not lab:
                raise DataError(f"{s}: label: SegmentDataset needs a class label on every recording")
        self.classes = list(classes) if classes is not None else sorted(set(labels), key=label_sort_key)
        lookup = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(labels) - set(lookup))
        if unknown:
            raise DataError(f"SegmentDataset: classes: recordings labelled {unknown} are not in classes {self.classes}")
        for s, n in zip(sources, samples, strict=True):
            if n < self.length:
                raise DataError(f"{s}: SegmentDataset: {n} samples, shorter than one window of {self.length}")
        counts = (np.asarray(samples, dtype=np.int64) - self.length) // self.hop + 1
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._label_idx = np.asarray([lookup[lab] for lab in labels], dtype=np.int64)
        self.targets = np.repeat(self._label_idx, counts)
        cvec = np.asarray(cond, dtype=np.float64).reshape(len(labels), 2)
        missing = ~np.isfinite(cvec)
        if missing.any():
            if missing_cond is None:
                i, j = np.argwhere(missing)[0]
                raise DataError(f"{sources[i]}: {('rpm', 'load_hp')[j]}: SegmentDataset's condition vector needs "
                                f"rpm and load_hp; set them in meta or pass missing_cond=<value>")
            cvec[missing] = float(missing_cond)
        cvec = cvec.astype(np.float32)
        self._cond = cvec
        if normalizer is not None:
            if normalizer.channels != self.channels:
                raise DataError(f"SegmentDataset: normalizer: fitted on {normalizer.channels} channels, the data "
                                f"has {self.channels}")
            rows = normalizer._rows(list(labels), len(labels))
            assert normalizer.mean is not None and normalizer.std is not None
            self._mean = normalizer.mean[rows].astype(np.float32)[:, :, None]
            self._std = normalizer.std[rows].astype(np.float32)[:, :, None]
        else:
            self._mean = self._std = None
        self._sources = sources

    # -- lazy HDF5 ------------------------------------------------------------------------------------------

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike, length: int | None = None, hop: int | None = None, *,
                  classes: Sequence[str] | None = None, normalizer: Normalizer | None = None,
                  missing_cond: float | None = None) -> SegmentDataset:
        """A dataset over an HDF5 file that may exceed memory: only metadata is read here, windows on demand.

        The file is either the generated-data exchange format (``signals`` (N, C, T), ``labels``, optional
        ``rpm``/``load_hp``, attribute ``fs``; windows are cut inside each row, ``length`` defaults to T) or a
        recordings file (each 1-D/2-D dataset one recording with attributes fs, label, rpm, load_hp on the
        dataset or the file; see ``write_recordings``). Each worker process opens its own file handle.
        """
        src = str(path)
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{src}: file: not found")
        self = cls.__new__(cls)
        with _reading(src, "HDF5 file"), h5py.File(p, "r") as f:
            if "signals" in f:
                gen = _validate_generated(f, src, read_signals=False)
                n, c, t = gen["shape"]
                if n == 0:
                    raise DataError(f"{src}: signals: expected at least one generated signal, got none")
                length = t if length is None else length
                rpm, load = gen["rpm"], gen["load_hp"]
                self._init_index(
                    sources=[f"{src}:signals[{i}]" for i in range(n)] if n <= 100_000 else [src] * n,
                    labels=list(gen["labels"]), samples=[t] * n, chans=[c] * n,
                    cond=np.stack([np.full(n, np.nan) if rpm is None else rpm,
                                   np.full(n, np.nan) if load is None else load], axis=1),
                    fs=gen["fs"], length=length, hop=hop, classes=classes, normalizer=normalizer,
                    missing_cond=missing_cond)
                self._keys = [("signals", i) for i in range(n)]
            else:
                dsets = [ds for ds in _h5_datasets(f).values() if ds.ndim in (1, 2)]
                if not dsets:
                    raise DataError(f"{src}: datasets: expected 'signals' (exchange format) or recording datasets "
                                    f"(channels, samples), found none")
                infos = [_h5_recording_info(f, ds, src) for ds in dsets]
                rates = []
                for ds, info in zip(dsets, infos, strict=True):
                    if info["fs"] is None:
                        raise DataError(f"{src}: dataset {ds.name}: fs: expected an 'fs' attribute (Hz)")
                    rates.append(info["fs"])
                if len(set(rates)) > 1:
                    raise DataError(f"{src}: fs: datasets have different sampling rates {sorted(set(rates))} Hz")
                if length is None:
                    raise DataError(f"{src}: SegmentDataset.from_hdf5: length: required for a recordings file")
                self._init_index(
                    sources=[f"{src}:{ds.name}" for ds in dsets], labels=[i["label"] or "" for i in infos],
                    samples=[i["shape"][1] for i in infos], chans=[i["shape"][0] for i in infos],
                    cond=[(_cond_value(i["rpm"], src, "rpm"), _cond_value(i["load_hp"], src, "load_hp")) for i in infos], fs=rates[0], length=length, hop=hop,
                    classes=classes, normalizer=normalizer, missing_cond=missing_cond)
                self._keys = [(ds.name, None) for ds in dsets]
        self._arrays = None
        self._h5path = str(p)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        return self

    def _file(self) -> h5py.File:
        return process_local_h5(self, self._h5path)

    def close(self) -> None:
        """Close the lazily opened HDF5 file (it reopens on the next item)."""
        h5 = getattr(self, "_h5", None)
        if h5 is not None and self._pid == os.getpid():
            h5.close()
        self._h5 = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = None
        return state

    # -- items ----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"SegmentDataset: index {index} out of range for {n} windows")
        r = int(np.searchsorted(self._offsets, i, side="right") - 1)
        start = (i - int(self._offsets[r])) * self.hop
        stop = start + self.length
        if self._arrays is not None:
            x = self._arrays[r][:, start:stop]
        else:
            name, row = self._keys[r]
            ds = self._file()[name]
            if row is not None:
                x = ds[row, :, start:stop]  # reads one (C, T) hyperslab, never the whole dataset
            elif ds.ndim == 1:
                x = ds[start:stop][None, :]
            else:
                x = ds[:, start:stop]
            x = np.asarray(x)
            if not np.isfinite(x).all():
                raise DataError(f"{self._sources[r]}: samples {start}:{stop}: expected finite values, found NaN/Inf")
        x = np.asarray(x, dtype=np.float32)
        if self._mean is not None:
            x = (x - self._mean[r]) / self._std[r]
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self._label_idx[r]), \
            torch.from_numpy(self._cond[r].copy())


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


# ---------------------------------------------------------------------------------------------------------
# Generated-data exchange format (HDF5)
# ---------------------------------------------------------------------------------------------------------

#: Value of the file attribute ``format`` in generated-data files.
GENERATED_FORMAT = "vibgan.generated"
GENERATED_VERSION = 1


@contextmanager
def _atomic_h5(path: Path) -> Iterator[h5py.File]:
    """Write an HDF5 file under a temporary name in the target folder; rename on success, delete on error."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"{path}: folder: {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
    """

    def __init__(self, path: str | os.PathLike, fs: float, channels: int | Sequence[str], length: int, *,
                 units: str = "g", provenance: Mapping[str, Any] | None = None,
                 compression: str | None = None) -> None:
        self.path = Path(path)
        src = str(self.path)
        self.fs = _positive_fs(fs, src, "fs")
        self.channel_names = _check_channels(channels, src)
        self.length = _positive_int(length, f"{src}: length")
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
        rows = max(1, (1 << 20) // (4 * c * t))  # ~1 MiB chunks
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


def _validate_generated(f: h5py.File, src: str, *, read_signals: bool) -> dict[str, Any]:
    fmt = f.attrs.get("format")
    if fmt is not None and _as_text(fmt, src, "attribute 'format'") != GENERATED_FORMAT:
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
    fs = _positive_fs(f.attrs["fs"], src, "attribute 'fs'")
    units = _as_text(f.attrs["units"], src, "attribute 'units'") if "units" in f.attrs else "unknown"
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
    channels = (_as_names(f.attrs["channels"], src, "attribute 'channels'", c) if "channels" in f.attrs
                else [f"ch{i}" for i in range(c)])
    prov: dict[str, Any] = {}
    if "provenance" in f.attrs:
        try:
            prov = json.loads(_as_text(f.attrs["provenance"], src, "attribute 'provenance'"))
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
    with _reading(src, "generated-data HDF5 file"), h5py.File(p, "r") as f:
        g = _validate_generated(f, src, read_signals=True)
    return GeneratedSet(signals=g["signals"], labels=g["labels"], fs=g["fs"], units=g["units"], rpm=g["rpm"],
                        load_hp=g["load_hp"], channels=g["channels"], provenance=g["provenance"], attrs=g["attrs"])
