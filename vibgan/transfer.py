"""Condition transfer: faults at operating conditions where they were never recorded.

The baselines that ``pipelines/benchmark.py transfer`` sets beside vibgan sampled at a target condition
(``TrainedGenerator.sample(label, n, rpm=..., load_hp=...)``):

- ``speed_resample``: a recording played at another shaft speed. Resampling by the speed ratio and keeping
  the sampling rate scales *every* frequency by rpm_target / rpm_source: the fault's characteristic
  frequencies land where they belong, and the structural resonances, which do not move with speed, move
  with them (the naive physics answer);
- ``condition_grid``: a spread of conditions around the ones a class was recorded at (does variety in speed
  alone help a classifier?).
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from vibgan.errors import DataError
from vibgan.recordings import Recording, resample_ratio


def speed_resample(rec: Recording, rpm: float, load_hp: float | None = None) -> Recording:
    """``rec`` as it would sound at ``rpm`` if everything in it scaled with the shaft speed.

    The signal is resampled by rpm_source / rpm (``scipy.signal.resample_poly``, exact rational ratio of the two
    speeds, anti-aliased) and read at the same ``fs``: a line at f Hz moves to f * rpm / rpm_source, the duration
    stretches by the inverse. ``meta['rpm']`` becomes ``rpm`` (``load_hp`` too when given: resampling knows
    nothing of load, so the level and the resonances stay as recorded); ``meta['speed_resampled_from']`` keeps
    the recorded (rpm, load_hp)."""
    src_rpm = rec.meta.get("rpm")
    if src_rpm is None or not np.isfinite(float(src_rpm)) or float(src_rpm) <= 0:
        raise DataError(f"{rec.source}: rpm: speed_resample needs the recording's shaft speed > 0, got {src_rpm!r}")
    if not np.isfinite(rpm) or rpm <= 0:
        raise DataError(f"speed_resample: rpm: expected a shaft speed > 0, got {rpm!r}")
    # rpm_source / rpm more samples per second of signal: the same ratio resample() uses for rates
    up, down = resample_ratio(float(rpm), float(src_rpm), f"{rec.source}: speed_resample")
    x = rec.signal if up == down else sps.resample_poly(rec.signal.astype(np.float64), up, down, axis=-1)
    meta = {**rec.meta, "rpm": float(rpm), "speed_resampled_from": [float(src_rpm), rec.meta.get("load_hp")]}
    if load_hp is not None:
        meta["load_hp"] = float(load_hp)
    return Recording(np.asarray(x, dtype=np.float32), rec.fs, meta)


def condition_grid(seen: list[tuple[float, float]] | list[list[float]], n: int, width: float = 0.04
                   ) -> list[tuple[float, float]]:
    """n (rpm, load_hp) points spread around the conditions ``seen``: for each seen condition in turn, the speed
    times a factor evenly spaced over [1 - width, 1 + width], the load as recorded."""
    if not seen:
        raise DataError("condition_grid: expected at least one seen (rpm, load_hp) condition")
    if n < 1 or not 0 <= width < 1:
        raise DataError(f"condition_grid: expected n >= 1 and 0 <= width < 1, got n={n}, width={width}")
    per = -(-n // len(seen))
    factors = np.linspace(1 - width, 1 + width, per) if per > 1 else np.ones(1)
    grid = [(float(r) * float(f), float(l)) for r, l in seen for f in factors]
    return grid[:n]
