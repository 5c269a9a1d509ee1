"""Rolling-element bearing geometry and its characteristic defect frequencies."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vibgan.errors import VibganError


@dataclass(frozen=True)
class BearingGeometry:
    """Geometry of a rolling-element bearing.

    Parameters
    ----------
    n_balls : number of rolling elements.
    ball_diameter : rolling-element diameter d (any length unit, same as pitch_diameter).
    pitch_diameter : pitch diameter D.
    contact_angle_deg : contact angle in degrees (0 for deep-groove ball bearings).
    name : a label for reports.
    unit : the length unit of the diameters (reports only: the defect frequencies depend on d / D).
    """
    n_balls: int
    ball_diameter: float
    pitch_diameter: float
    contact_angle_deg: float = 0.0
    name: str = "custom"
    unit: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.n_balls, bool) or not float(self.n_balls).is_integer() or self.n_balls < 1:
            raise VibganError(f"bearing geometry {self.name!r}: n_balls: expected a whole number >= 1, got {self.n_balls}")
        if not (0 < self.ball_diameter < self.pitch_diameter):
            raise VibganError(
                f"bearing geometry {self.name!r}: expected 0 < ball_diameter < pitch_diameter (a ball smaller than "
                f"the pitch circle), got d={self.ball_diameter}, D={self.pitch_diameter}"
            )
        if not 0 <= self.contact_angle_deg < 90:
            raise VibganError(f"bearing geometry {self.name!r}: contact_angle_deg: expected 0 <= angle < 90 degrees, "
                              f"got {self.contact_angle_deg}")


#: SKF 6205-2RS JEM, the CWRU drive-end bearing (inches, from the CWRU Bearing Data Center pages).
SKF_6205 = BearingGeometry(9, 0.3126, 1.537, 0.0, "SKF 6205-2RS (CWRU drive end)", "in")
#: SKF 6203-2RS JEM, the CWRU fan-end bearing (inches, from the same pages).
SKF_6203 = BearingGeometry(8, 0.2656, 1.122, 0.0, "SKF 6203-2RS (CWRU fan end)", "in")

GEOMETRIES = {"6205": SKF_6205, "skf6205": SKF_6205, "drive_end": SKF_6205,
              "6203": SKF_6203, "skf6203": SKF_6203, "fan_end": SKF_6203}

FAULTS = ("normal", "inner", "outer", "ball")


#: A geometry as configs, manifests and saved generators hold it: a known name, or its numbers
GeometrySpec = str | Mapping[str, Any]
GEOMETRY_FIELDS = tuple(f.name for f in dataclasses.fields(BearingGeometry))


def geometry(name_or_geometry: GeometrySpec | BearingGeometry) -> BearingGeometry:
    """A BearingGeometry from a known name ('6205', '6203', 'drive_end', 'fan_end'), from its numbers (a mapping
    with n_balls, ball_diameter, pitch_diameter and optionally contact_angle_deg, name, unit), or passed through."""
    if isinstance(name_or_geometry, BearingGeometry):
        return name_or_geometry
    if isinstance(name_or_geometry, Mapping):
        spec = dict(name_or_geometry)
        unknown = sorted(set(spec) - set(GEOMETRY_FIELDS))
        missing = [k for k in ("n_balls", "ball_diameter", "pitch_diameter") if k not in spec]
        if unknown or missing:
            raise VibganError(f"bearing geometry {spec}: " + (f"unknown field(s) {unknown}" if unknown else
                              f"missing {missing}") + f"; expected {list(GEOMETRY_FIELDS)}")
        try:
            nums = {k: float(spec[k]) for k in ("n_balls", "ball_diameter", "pitch_diameter", "contact_angle_deg")
                    if k in spec}
        except (TypeError, ValueError):
            raise VibganError(f"bearing geometry {spec}: n_balls, ball_diameter, pitch_diameter and "
                              "contact_angle_deg must be numbers") from None
        if not nums["n_balls"].is_integer():
            raise VibganError(f"bearing geometry {spec}: n_balls: expected a whole number, got {spec['n_balls']}")
        return BearingGeometry(**{**spec, **nums, "n_balls": int(nums["n_balls"])})
    key = str(name_or_geometry).lower().replace("-", "").replace(" ", "")
    if key not in GEOMETRIES:
        raise VibganError(f"bearing geometry: unknown name {name_or_geometry!r}; expected one of {sorted(GEOMETRIES)}")
    return GEOMETRIES[key]


def fault_frequencies(rpm: float, geometry: str | BearingGeometry = SKF_6205) -> dict[str, float]:
    """Characteristic defect frequencies in Hz for a shaft speed in rpm (outer race fixed).

    Returns a dict with ``fr`` (shaft), ``bpfo``, ``bpfi``, ``ftf`` (cage) and ``bsf`` (ball spin), all in Hz.
    """
    if not math.isfinite(rpm) or rpm <= 0:
        raise VibganError(f"fault_frequencies: rpm must be a positive finite number, got {rpm!r}")
    g = globals()["geometry"](geometry)
    fr = rpm / 60.0
    ratio = g.ball_diameter / g.pitch_diameter * math.cos(math.radians(g.contact_angle_deg))
    return {
        "fr": fr,
        "bpfo": g.n_balls * fr / 2.0 * (1.0 - ratio),
        "bpfi": g.n_balls * fr / 2.0 * (1.0 + ratio),
        "ftf": fr / 2.0 * (1.0 - ratio),
        "bsf": g.pitch_diameter * fr / (2.0 * g.ball_diameter) * (1.0 - ratio**2),
    }


def characteristic_frequency(fault: str, rpm: float, geometry: str | BearingGeometry = SKF_6205) -> float | None:
    """The envelope-spectrum frequency (Hz) that reveals ``fault``: BPFI (inner), BPFO (outer), 2 x BSF (ball).

    Returns None for ``normal`` (no defect frequency).
    """
    if fault not in FAULTS:
        raise VibganError(f"characteristic_frequency: unknown fault {fault!r}; expected one of {FAULTS}")
    if fault == "normal":
        return None
    f = fault_frequencies(rpm, geometry)
    return {"inner": f["bpfi"], "outer": f["bpfo"], "ball": 2.0 * f["bsf"]}[fault]


def geometry_spec(g: GeometrySpec | BearingGeometry) -> GeometrySpec:
    """The JSON form of a geometry: its name when it is a known one, else its numbers (a dict)."""
    if isinstance(g, str):
        geometry(g)  # an unknown name fails here, not when a saved generator is loaded
        return g
    g = geometry(g)
    for name, known in GEOMETRIES.items():
        if known == g:
            return name
    return dataclasses.asdict(g)

