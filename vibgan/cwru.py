"""The CWRU Bearing Data Center conventions: its file numbers, file names, class labels and rig speeds.

One way to label recordings (``parse_cwru_name``), never the only one: every loader also takes labels and
operating conditions from the file itself or from the caller."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vibgan.errors import DataError

#: Nominal motor speed (rpm) of the CWRU test rig at each motor load (hp), from the Bearing Data Center pages.
CWRU_LOAD_RPM = {0: 1797, 1: 1772, 2: 1750, 3: 1730}


#: Inverse map: nominal rpm -> motor load in hp.
RPM_TO_LOAD_HP = {rpm: hp for hp, rpm in CWRU_LOAD_RPM.items()}


#: Channel names of the CWRU accelerometers, in the fixed order loaders return them.
CWRU_CHANNELS = ("DE", "FE", "BA")


#: The file names of the CWRU pages ("105.mat") are served from this URL template by the fetch script.
CWRU_BASE_URL = "https://engineering.case.edu/sites/default/files/{number}.mat"


#: Sampling rate of CWRU's normal baseline recordings (97-100.mat), Hz; the drive-end fault files here are 12 kHz.
NORMAL_FS = 48000.0

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
# not a file (OR@12_7 runs 156, 158, 159, 160). The normal baseline is sampled at 48 kHz, like every file of
# the "Normal Baseline Data" page: read at 48 kHz its strongest lines are the test rig's machine lines of the
# 12 kHz fault files (119.75, 147.75, 161.75 Hz, ...); read at 12 kHz they sit at a quarter of that.
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
                load_hp=load_hp, rpm=float(CWRU_LOAD_RPM[load_hp]), fs=NORMAL_FS if normal else 12000.0,
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


def parse_cwru_name(filename: str | os.PathLike) -> dict[str, Any]:
    """Metadata from a CWRU ``.npz`` file name such as ``1797_IR_7_DE12.npz`` or ``1797_Normal.npz``.

    Returns
    -------
    dict with ``rpm`` (nominal, rpm), ``load_hp`` (hp, None for an rpm outside the CWRU table), ``label``,
    ``fault``, ``diameter_in`` (in), ``clock`` (outer-race o'clock or None), ``fault_end`` ("DE"/"FE"/None) and
    ``fs`` in Hz (12000 from "DE12"/"FE12", 48000 from "DE48"; 48000 for the normal baseline, which CWRU
    recorded at 48 kHz only; None for a fault file without the suffix).

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
        fs = NORMAL_FS
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
