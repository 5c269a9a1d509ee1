"""A user's own data described in a manifest: a CSV or Parquet table, one row per recording.

Columns (the first four are required; names are case-insensitive):

- ``path``: the recording file, relative to the manifest's folder or absolute;
- ``label``: the class, any text (``IR2`` for a 2-degree inner-race defect is as good as ``IR_7``);
- ``fault``: normal, inner, outer, ball or other (other: no characteristic frequency, no envelope check);
- ``rpm``: shaft speed in rev/min (> 0);
- ``severity_<unit>``: the defect size, a number, its unit in the header (``severity_mm``, ``severity_in``);
- ``load``: motor load (hp, or the unit of the rig's own load scale);
- ``fs``: sampling rate in Hz, where the file has none (where it has one, the two must agree);
- ``channels``: the channel names to read, separated by ``;`` (default: every channel);
- ``units``: physical units of the samples (default: what the file says);
- ``bearing``: a bearing name vibgan knows (``6205``), or the numbers ``n_balls``, ``ball_diameter``,
  ``pitch_diameter``, ``diameter_unit`` and ``contact_angle_deg`` in columns of their own, per recording.

Every row is checked before any file is read: a bad manifest is one ``DataError`` naming the manifest, the row
(as a spreadsheet numbers it: the header is row 1) and the field. ``write_manifest`` writes one for a folder of
recordings, filled from what the files and their names say, for the user to edit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vibgan.bearing import GEOMETRIES, BearingGeometry, geometry, geometry_spec
from vibgan.catalog import catalog
from vibgan.errors import DataError, VibganError
from vibgan.files import write_text_atomic
from vibgan.recordings import Recording, load, resample

#: the fault types a row may name
FAULT_TYPES = ("normal", "inner", "outer", "ball", "other")
REQUIRED = ("path", "label", "fault", "rpm")
GEOMETRY_COLUMNS = ("n_balls", "ball_diameter", "pitch_diameter", "diameter_unit", "contact_angle_deg")
OPTIONAL = ("load", "fs", "channels", "units", "bearing", *GEOMETRY_COLUMNS)


@dataclass
class ManifestRow:
    """One checked row: what to load and the metadata the recording gets."""

    row: int  # spreadsheet row number (header = 1)
    path: Path
    label: str
    fault: str
    rpm: float
    load: float | None = None
    fs: float | None = None
    channels: list[str] | None = None
    units: str | None = None
    severity: float | None = None
    severity_unit: str | None = None
    bearing: BearingGeometry | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        """What the recording's meta gets from this row (it overrides what the file name implied)."""
        m = {"label": self.label, "fault": None if self.fault == "other" else self.fault, "fault_type": self.fault,
             "rpm": self.rpm, "load_hp": self.load, "severity": self.severity, "severity_unit": self.severity_unit,
             "manifest_row": self.row}
        if self.fault == "normal":
            m["severity"] = 0.0
        if self.units:
            m["units"] = self.units
        if self.bearing is not None:
            m["bearing"] = geometry_spec(self.bearing)
        return m


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"manifest {path}: not found")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        if path.suffix.lower() in (".csv", ".txt"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:  # pandas / pyarrow parser errors of any kind
        raise DataError(f"manifest {path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    raise DataError(f"manifest {path}: expected a .csv or .parquet file")


def _number(where: str, name: str, v: Any, *, positive: bool = False, minimum: float | None = None) -> float | None:
    if _blank(v):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {name}: expected a number, got {v!r}") from None
    if not math.isfinite(x) or (positive and x <= 0) or (minimum is not None and x < minimum):
        need = "a positive number" if positive else f"a number >= {minimum:g}" if minimum is not None else "a finite number"
        raise DataError(f"{where}: {name}: expected {need}, got {v!r}")
    return x


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read and check a manifest (every row, before any recording is loaded)."""
    path = Path(path)
    df = _read_table(path)
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"manifest {path}: missing column(s) {missing}; a manifest needs {list(REQUIRED)} "
                        f"(optional: severity_<unit>, {', '.join(OPTIONAL)})")
    severity = [c for c in df.columns if c.startswith("severity")]
    if len(severity) > 1 or (severity and severity[0] in ("severity", "severity_")):
        raise DataError(f"manifest {path}: {severity}: expected one severity column with its unit in the header, "
                        "e.g. severity_mm or severity_in")
    if len(df) == 0:
        raise DataError(f"manifest {path}: no rows; expected one row per recording")
    rows = []
    for i, rec in enumerate(df.to_dict(orient="records")):
        rows.append(_check_row(path, i + 2, rec, severity[0] if severity else None))
    seen: dict[Path, int] = {}
    for r in rows:
        if r.path in seen:
            raise DataError(f"manifest {path}: row {r.row}: path: {r.path} is already row {seen[r.path]}")
        seen[r.path] = r.row
    return rows


def _check_row(manifest: Path, row: int, rec: dict[str, Any], severity_col: str | None) -> ManifestRow:
    where = f"manifest {manifest}: row {row}"
    for c in REQUIRED:
        if _blank(rec.get(c)):
            raise DataError(f"{where}: {c}: empty; every row needs {list(REQUIRED)}")
    p = Path(str(rec["path"]).strip()).expanduser()
    p = p if p.is_absolute() else manifest.parent / p
    if not p.is_file():
        raise DataError(f"{where}: path: {p} does not exist")
    fault = str(rec["fault"]).strip().lower()
    if fault not in FAULT_TYPES:
        raise DataError(f"{where}: fault: {rec['fault']!r}; expected one of {', '.join(FAULT_TYPES)}")
    out = ManifestRow(row=row, path=p, label=str(rec["label"]).strip(), fault=fault,
                      rpm=_number(where, "rpm", rec["rpm"], positive=True),
                      load=_number(where, "load", rec.get("load"), minimum=0.0),
                      fs=_number(where, "fs", rec.get("fs"), positive=True))
    if not _blank(rec.get("channels")):
        out.channels = [c.strip() for c in str(rec["channels"]).replace(",", ";").split(";") if c.strip()]
    if not _blank(rec.get("units")):
        out.units = str(rec["units"]).strip()
    if severity_col:
        out.severity = _number(where, severity_col, rec.get(severity_col), minimum=0.0)
        out.severity_unit = severity_col.split("_", 1)[1]
    out.bearing = _row_bearing(where, rec)
    return out


def _row_bearing(where: str, rec: dict[str, Any]) -> BearingGeometry | None:
    numbers = {c: rec.get(c) for c in GEOMETRY_COLUMNS if not _blank(rec.get(c))}
    name = None if _blank(rec.get("bearing")) else str(rec["bearing"]).strip()
    if name and numbers:
        raise DataError(f"{where}: bearing: give a known name ({name!r}) or the numbers {sorted(numbers)}, not both")
    if name:
        if name.lower().replace("-", "").replace(" ", "") not in GEOMETRIES:
            raise DataError(f"{where}: bearing: unknown name {name!r}; known: {sorted(GEOMETRIES)}; otherwise give "
                            f"its numbers in the columns {list(GEOMETRY_COLUMNS)}")
        return geometry(name)
    if not numbers:
        return None
    spec: dict[str, Any] = {"name": "manifest"}
    for c in ("n_balls", "ball_diameter", "pitch_diameter"):
        if c not in numbers:
            raise DataError(f"{where}: {c}: empty; a bearing by its numbers needs n_balls, ball_diameter and "
                            "pitch_diameter (and diameter_unit, contact_angle_deg)")
        spec[c] = _number(where, c, numbers[c], positive=True)
    spec["contact_angle_deg"] = _number(where, "contact_angle_deg", numbers.get("contact_angle_deg"), minimum=0.0) or 0.0
    spec["unit"] = str(numbers.get("diameter_unit", "")).strip()
    try:
        return geometry(spec)
    except VibganError as e:  # a ball larger than the pitch circle, a fractional ball count, ...
        raise DataError(f"{where}: bearing: {e}") from None


def load_manifest(path: str | os.PathLike, *, fs: float | None = None, channels: Sequence[str] | None = None,
                  classes: Iterable[str] | None = None) -> list[Recording]:
    """The recordings a manifest lists, with its metadata; ``fs`` resamples every one to that rate (Hz);
    ``channels`` applies where a row names none; ``classes`` keeps those labels (each must have a row)."""
    rows = read_manifest(path)
    if classes:
        wanted = list(classes)
        missing = [c for c in wanted if c not in {r.label for r in rows}]
        if missing:
            raise DataError(f"manifest {path}: classes: no row labelled {missing}; labels are "
                            f"{sorted({r.label for r in rows})}")
        rows = [r for r in rows if r.label in wanted]
    recs = []
    for r in rows:
        try:
            rec = load(r.path, fs=r.fs, channels=r.channels or (list(channels) if channels else None))
        except DataError as e:
            raise DataError(f"manifest {path}: row {r.row}: {e}") from None
        rec = Recording(rec.signal, rec.fs, {**rec.meta, **r.meta()})
        recs.append(resample(rec, fs) if fs else rec)
    rates = sorted({r.fs for r in recs})
    if len(rates) > 1:
        a = recs[0]
        b = next(r for r in recs if r.fs != a.fs)
        raise DataError(f"manifest {path}: fs: {a.source} is at {a.fs:g} Hz, {b.source} at {b.fs:g} Hz; set "
                        "data.fs to resample them all to one rate")
    return recs


def write_manifest(root: str | os.PathLike, path: str | os.PathLike, *, pattern: str | None = None) -> Path:
    """Write a manifest (CSV) of the recordings under ``root`` for a user to edit: paths relative to the
    manifest, and label, fault, rpm, load, fs and channels as the files and their names say (empty where they
    say nothing: fill them in). Returns the path."""
    path = Path(path)
    df = catalog(root, pattern=pattern)
    base = path.parent.resolve()
    out = pd.DataFrame({
        "path": [os.path.relpath(Path(p).resolve(), base) for p in df["path"]],
        "label": df["label"], "fault": df["fault"], "severity_in": df["diameter_in"], "rpm": df["rpm"],
        "load": df["load_hp"], "fs": df["fs"], "channels": [s.replace(",", ";") for s in df["sensor"]],
        "units": df["units"], "bearing": "",
    })
    return write_text_atomic(path, out.to_csv(index=False))
