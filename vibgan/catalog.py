"""Many recordings at once: ``catalog`` (a DataFrame, one row per recording file, what a user inspects before
training) and ``load_many`` (every recording under a folder, or a list of files)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from vibgan.cwru import label_sort_key
from vibgan.errors import DataError
from vibgan.recordings import (
    SUPPORTED_EXTENSIONS,
    Recording,
    _h5_recording_info,
    _h5_signal_dataset,
    _is_generated_file,
    _resolve_fs,
    label_fields,
    load,
    open_hdf5,
    resample,
)

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
        if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS:
            files.append(p)
    return sorted(files)


def _catalog_row(p: Path) -> dict[str, Any] | None:
    src = str(p)
    if p.suffix.lower() in (".h5", ".hdf5"):
        if _is_generated_file(p):
            return None  # generated data (exchange format) is not a recording
        with open_hdf5(p, src) as f:  # metadata only: the file may exceed memory
            info = _h5_recording_info(f, _h5_signal_dataset(f, src), src)
        fs, where = _resolve_fs(src, info["fs"], None, "HDF5 attribute 'fs'")
        rec_label = info["label"]
        meta = {"label": rec_label, "rpm": info["rpm"], "load_hp": info["load_hp"], "units": info["units"],
                "sensor": info["names"], "fs_source": where}
        meta.update(label_fields(rec_label))
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
              pattern: str | None = None, fs: float | None = None, allow_mixed_fs: bool = False) -> list[Recording]:
    """Load every recording under a directory (recursive) or in a list of paths, sorted like ``catalog``.

    Parameters
    ----------
    root_or_paths : a directory, a file, or an iterable of files and directories.
    channels : passed to ``load`` for every file.
    classes : keep only recordings with these labels; a class with no recording is an error.
    pattern : glob for file names when a directory is given.
    fs : resample every recording to this rate in Hz (``recordings.resample``: exact rational ratio, the
        original rate kept in ``meta['fs_original']``); None keeps each file's own rate.
    allow_mixed_fs : without ``fs``, recordings of different sampling rates raise a DataError unless this is True.
    """
    if isinstance(root_or_paths, (str, os.PathLike)):
        root = Path(root_or_paths)
        paths = [p for p in _recording_files(root, pattern)
                 if not (p.suffix.lower() in (".h5", ".hdf5") and _is_generated_file(p))]
        where = str(root)
    else:  # files, and folders (expanded like a root)
        paths = []
        for item in (Path(p) for p in root_or_paths):
            paths += ([p for p in _recording_files(item, pattern)
                       if not (p.suffix.lower() in (".h5", ".hdf5") and _is_generated_file(p))]
                      if item.is_dir() else [item])
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
    if fs:
        recs = [resample(r, fs) for r in recs]
    if not recs:
        raise DataError(f"{where}: expected at least one recording ({', '.join(SUPPORTED_EXTENSIONS)}), found none")
    rates = sorted({r.fs for r in recs})
    if len(rates) > 1 and not allow_mixed_fs:
        by_fs = {fs: [Path(r.source).name for r in recs if r.fs == fs][:3] for fs in rates}
        raise DataError(f"{where}: fs: recordings have different sampling rates {by_fs} (Hz: files); resample "
                        f"them to one rate (load_many(fs=...), data.fs in a config), load one rate at a time, or "
                        f"pass allow_mixed_fs=True")
    recs.sort(key=lambda r: _row_key(r.label, r.meta.get("load_hp"), r.source))
    return recs
