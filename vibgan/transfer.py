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
    grid = [(float(r) * float(f), float(load)) for r, load in seen for f in factors]
    return grid[:n]


Condition = tuple[float, float]


def _cond(meta: dict) -> Condition:
    return (float(meta.get("rpm") or 0.0), float(meta.get("load_hp") or 0.0))


class ConditionResponse:
    """How the spectrum changes from one operating condition to another, learned across classes.

    For every class recorded at two conditions a and b, the change of its Welch PSD (dB, per frequency, at
    fixed frequencies: structural resonances stay where they are) from a to b; the response a -> b is the
    median of that change over those classes. ``apply`` filters segments of a class recorded at a only, so that
    their band levels move as the other classes' did: what a plant's healthy and partly-recorded faults teach
    about a load step, carried to the faults never recorded there.

    A class is carried by the classes nearest it in kind (``response(a, b, label)``): those of its own fault
    type (``meta['fault']``: an inner-race fault strikes through the same path as the other inner-race faults)
    where one was recorded at both conditions, else every fault class, else every class (a healthy machine's
    change alone, which knows nothing of how the strikes change).

    The PSD uses ``nperseg`` (default 256: 47 Hz bins at 12 kHz), coarse enough that the fault's own lines,
    which move with speed, do not dominate; the response is then smoothed over ``smooth`` bins and clipped to
    +/- ``max_db``.
    """

    #: group of every class; faults of every type; a fault type is any other key
    ALL, FAULTS = "all", "faults"

    def __init__(self, fs: float, freqs: np.ndarray, table: dict[tuple[Condition, Condition], np.ndarray],
                 support: dict[tuple[Condition, Condition], list[str]],
                 groups: dict[tuple[str, Condition, Condition], tuple[np.ndarray, list[str]]] | None = None,
                 faults: dict[str, str] | None = None) -> None:
        self.fs = float(fs)
        self.freqs = np.asarray(freqs, dtype=np.float64)
        self.table = table
        self.support = support
        self.groups = groups or {}
        self.faults = faults or {}

    @classmethod
    def fit(cls, recordings, *, nperseg: int = 256, smooth: int = 5, max_db: float = 12.0) -> ConditionResponse:
        from vibgan.spectral import psd

        recs = list(recordings)
        if not recs:
            raise DataError("ConditionResponse.fit: expected at least one recording")
        fs = {r.fs for r in recs}
        if len(fs) != 1:
            raise DataError(f"ConditionResponse.fit: recordings at different rates {sorted(fs)}; resample them first")
        fs_ = fs.pop()
        spectra: dict[str, dict[Condition, list[np.ndarray]]] = {}
        faults: dict[str, str] = {}
        freqs = None
        for r in recs:
            if r.meta.get("fault"):
                faults[r.label] = str(r.meta["fault"])
            if r.samples < nperseg:
                continue
            freqs, p = psd(r.signal.astype(np.float64), fs_, nperseg=nperseg, noverlap=nperseg // 2)
            spectra.setdefault(r.label, {}).setdefault(_cond(r.meta), []).append(p.mean(axis=0))  # channels pooled
        diffs: dict[tuple[str, Condition, Condition], list[np.ndarray]] = {}
        support: dict[tuple[str, Condition, Condition], list[str]] = {}
        kernel = np.ones(smooth) / smooth
        for label, by_cond in spectra.items():
            db = {c: 10 * np.log10(np.maximum(np.mean(v, axis=0), 1e-30)) for c, v in by_cond.items()}
            fault = faults.get(label)
            keys = [cls.ALL] + ([cls.FAULTS, fault] if fault and fault != "normal" else [fault] if fault else [])
            for a in db:
                for b in db:
                    if a != b:
                        for g in keys:
                            diffs.setdefault((g, a, b), []).append(db[b] - db[a])
                            support.setdefault((g, a, b), []).append(label)

        def smoothed(v: list[np.ndarray]) -> np.ndarray:
            d = np.median(np.stack(v), axis=0)
            d = np.convolve(np.pad(d, smooth // 2, mode="edge"), kernel, mode="valid")
            return np.clip(d, -max_db, max_db)

        table = {(a, b): smoothed(v) for (g, a, b), v in diffs.items() if g == cls.ALL}
        sup = {(a, b): support[(g, a, b)] for (g, a, b) in diffs if g == cls.ALL}
        groups = {k: (smoothed(v), support[k]) for k, v in diffs.items() if k[0] != cls.ALL}
        return cls(fs_, freqs if freqs is not None else np.zeros(0), table, sup, groups, faults)

    def pairs(self) -> list[tuple[Condition, Condition]]:
        return sorted(self.table)

    def _resolve(self, a: Condition, b: Condition, label: str | None) -> tuple[str, list[str], np.ndarray] | None:
        a, b = (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))
        fault = self.faults.get(label) if label is not None else None
        kinds = ([fault] if fault else []) + ([self.FAULTS] if fault and fault != "normal" else [])
        for g in kinds:
            hit = self.groups.get((g, a, b))
            if hit is not None and [c for c in hit[1] if c != label]:
                return g, hit[1], hit[0]
        if (a, b) not in self.table:
            return None
        base = self.table[(a, b)]
        # no class of its kind was recorded at b: the healthy change a -> b, plus the part of its kind's change
        # a -> c (another load) that the healthy classes did not show, carried linearly in load from c to b
        for g in kinds if fault != "normal" else []:
            trends = []
            for (gg, aa, c), (d, by) in self.groups.items():
                ref = self.groups.get(("normal", a, c))
                if gg == g and aa == a and c != b and abs(c[1] - a[1]) > 1e-9 and ref is not None \
                        and [x for x in by if x != label]:
                    trends.append(((d - ref[0]) * (b[1] - a[1]) / (c[1] - a[1]), by))
            if trends:
                return (f"{self.ALL} + {g} load trend", sorted({x for _, by in trends for x in by}),
                        base + np.mean([t for t, _ in trends], axis=0))
        return self.ALL, self.support[(a, b)], base

    def carried_by(self, a: Condition, b: Condition, label: str | None = None) -> tuple[str, list[str]] | None:
        """Which response carries ``label`` from a to b, and the classes it was learned from; None when no class
        was recorded at both. In order: its own fault type recorded at a and b; every fault class so recorded;
        else every class's change a -> b (at a new condition, typically the healthy machine's) plus the
        difference between its kind's and the healthy classes' change to another recorded load, scaled
        linearly in load (``all + inner load trend``); else every class's change alone."""
        how = self._resolve(a, b, label)
        return None if how is None else (how[0], how[1])

    def response(self, a: Condition, b: Condition, label: str | None = None) -> np.ndarray | None:
        """dB per ``freqs`` from a to b, or None when no class was recorded at both; with ``label``, the
        response of the classes nearest it in kind (``carried_by``)."""
        how = self._resolve(a, b, label)
        return None if how is None else how[2]

    def apply(self, x: np.ndarray, a: Condition, b: Condition, label: str | None = None) -> np.ndarray:
        """Segments (..., T) at condition a filtered (zero phase, FFT) by the response a -> b (``label``: that
        class's, see ``response``); unchanged when a == b; a DataError when no class was recorded at both."""
        if (float(a[0]), float(a[1])) == (float(b[0]), float(b[1])):
            return x
        d = self.response(a, b, label)
        if d is None:
            raise DataError(f"ConditionResponse: no class was recorded at both {a} and {b}; recorded pairs: {self.pairs()}")
        x = np.asarray(x)
        T = x.shape[-1]
        gain = 10 ** (np.interp(np.fft.rfftfreq(T, 1.0 / self.fs), self.freqs, d) / 20.0)
        y = np.fft.irfft(np.fft.rfft(x.astype(np.float64), axis=-1) * gain, n=T, axis=-1)
        return y.astype(x.dtype if x.dtype.kind == "f" else np.float32)

    def to_dict(self) -> dict:
        return {"fs": self.fs, "freqs": self.freqs.tolist(), "faults": dict(self.faults),
                "pairs": [{"from": list(a), "to": list(b), "db": d.tolist(), "classes": self.support[(a, b)]}
                          for (a, b), d in sorted(self.table.items())],
                "groups": [{"group": g, "from": list(a), "to": list(b), "db": d.tolist(), "classes": c}
                           for (g, a, b), (d, c) in sorted(self.groups.items())]}

    @classmethod
    def from_dict(cls, d: dict) -> ConditionResponse:
        def cond(v) -> Condition:
            return (float(v[0]), float(v[1]))

        try:
            table = {(cond(p["from"]), cond(p["to"])): np.asarray(p["db"], dtype=np.float64) for p in d["pairs"]}
            support = {(cond(p["from"]), cond(p["to"])): list(p["classes"]) for p in d["pairs"]}
            groups = {(str(p["group"]), cond(p["from"]), cond(p["to"])): (np.asarray(p["db"], dtype=np.float64),
                                                                       list(p["classes"])) for p in d.get("groups", [])}
            return cls(float(d["fs"]), np.asarray(d["freqs"], dtype=np.float64), table, support, groups,
                       {str(k): str(v) for k, v in d.get("faults", {}).items()})
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise DataError(f"condition_response: expected fs, freqs and pairs of from/to/db/classes, got {e!r}") from None
