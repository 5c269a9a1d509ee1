"""Fidelity of generated vibration segments against real ones, class by class (docs/METRICS.md).

In-band log-spectral distance of the mean Welch PSDs (``lsd_db``) and its real-vs-real floor (``floor_db``),
the nearest real class, the envelope-spectrum hit rate at the fault frequency, condition indicators (RMS,
kurtosis, crest factor, peak), the diversity ``spread_ratio``, a classifier two-sample test
(``c2st_accuracy``) and an RBF-kernel MMD on log-PSD features. Everything is vectorised over segments; sets
are dicts ``label -> (N, C, T)`` arrays in physical units sampled at ``fs`` Hz. Plots and the HTML report
are in ``vibgan.report``."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vibgan import spectral
from vibgan.bearing import FAULTS, GeometrySpec, characteristic_frequency
from vibgan.classify import c2st_accuracy
from vibgan.config import ValidateConfig
from vibgan.errors import DataError, VibganError
from vibgan.progress import Callback, callback
from vibgan.spectral import as_segments
from vibgan.windows import split_by_time, windows

if TYPE_CHECKING:  # type hints only: the metrics never import torch or training
    from vibgan.datasets import TrainData
    from vibgan.generator import TrainedGenerator



#: Indicators summarised per class (median and inter-quartile range over segments and channels).
INDICATORS = ("rms", "kurtosis", "crest", "peak")


#: Shortest segment on which the envelope check is defined (docs/METRICS.md, metric 5).
ENVELOPE_MIN_SAMPLES = 4096


Sets = Mapping[str, np.ndarray]


@dataclass
class ClassFidelity:
    """Every metric of one class, generated versus held-out real (units in the field comments)."""
    label: str
    n_real: int  # held-out real segments
    n_fake: int  # generated segments
    lsd_db: float  # dB, mean PSD generated vs mean PSD real, 0 < f <= 0.45 fs
    floor_db: float | None  # dB, mean PSD real training part vs real held-out part; None without real_train
    lsd_limit_db: float  # dB, max(lsd_db threshold, factor x floor_db)
    nearest_class: str  # the real class whose mean PSD is closest (lsd) to the generated mean PSD
    nearest_lsd_db: float  # dB, the distance to that class
    lsd_to_classes: dict[str, float]  # dB, generated mean PSD vs every real class's mean PSD
    nearest_accepted: list[str]  # the class and those the real data cannot tell from it (``_indistinguishable``)
    fault_freq_hz: float | None  # Hz, f_c used for the envelope check (BPFI / BPFO / 2 x BSF)
    envelope_hit_rate: float | None  # fraction of generated segments (x channels) that hit f_c
    envelope_hit_rate_real: float | None  # the same on held-out real segments
    indicators: dict[str, dict[str, float]]  # name -> {median, iqr, median_real, iqr_real}
    kurtosis_median: float  # non-excess kurtosis, median over generated segments (3 for Gaussian)
    kurtosis_median_real: float
    spread_db: float  # dB, mean over generated segments of lsd(segment PSD, generated mean PSD)
    spread_db_real: float  # dB, the same for real
    spread_ratio: float  # spread_db / spread_db_real: 1 ideal, << 1 mode collapse
    spread_ratio_floor: float | None  # spread of real_train / spread of real held-out (None without real_train)
    spread_limits: tuple[float, float]  # pass interval: [spread_min, spread_max] widened to include the floor
    c2st_accuracy: float | None  # held-out accuracy of a real-vs-generated 1D CNN; 0.5 ideal
    c2st_floor: float | None  # the same classifier telling the real training part from the held-out part
    envelope_nearest: str | None  # the real class whose envelope profile (spectral.envelope_profile) is nearest
    envelope_nearest_real: str | None  # the same for the real training part: judged only where it is the class
    envelope_distances: dict[str, float]  # dB, generated envelope profile vs every real class's
    mmd2: float  # unbiased MMD^2 of in-band log-PSD features (RBF kernel, median heuristic)
    mmd_pvalue: float  # permutation p-value of mmd2 (small: the sets differ detectably)
    checks: dict[str, bool | None] = field(default_factory=dict)  # per check in CHECKS: pass, fail, None not judged
    passes: bool = False  # every judged check passes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        return _jsonable(dataclasses.asdict(self))

    @property
    def nearest_is_twin(self) -> bool:
        """The nearest real class is another class that this class's real training part is as near (marked ≈)."""
        return self.nearest_class != self.label and self.nearest_class in self.nearest_accepted


#: name -> judge(class fidelity, thresholds): True pass, False fail, None not judged; c2st and MMD are reported,
#: not judged (docs/METRICS.md). In report order; registered with ``@check``.
CHECKS: dict[str, Callable[[ClassFidelity, ValidateConfig], bool | None]] = {}


def check(name: str):
    """Register a per-class check under ``name``."""
    def register(judge: Callable[[ClassFidelity, ValidateConfig], bool | None]):
        CHECKS[name] = judge
        return judge
    return register


@check("lsd")
def _lsd_check(c: ClassFidelity, cfg: ValidateConfig) -> bool:
    return bool(c.lsd_db <= c.lsd_limit_db)


@check("nearest_class")
def _nearest_class_check(c: ClassFidelity, cfg: ValidateConfig) -> bool:
    """The nearest real class is the class itself, or one that its own real training part cannot be told from
    (``nearest_accepted``: a machine's healthy spectrum at two speeds that differ only at the shaft lines)."""
    return c.nearest_class in c.nearest_accepted


def _indistinguishable(label: str, to_real: dict[str, float], floor: float | None, factor: float) -> list[str]:
    """``label`` and the real classes that the real training part of ``label`` is as near as to its own held-out
    part, within the lsd check's ``factor`` x ``floor`` (``to_real``: training part vs every held-out class, dB).
    Like the lsd limit and the spread interval, the nearest-class check widens only where real data would fail
    it (docs/METRICS.md, metric 4)."""
    if floor is None or not to_real:
        return [label]
    return [label] + sorted(k for k, d in to_real.items() if k != label and d <= factor * floor)


@check("envelope")
def _envelope_check(c: ClassFidelity, cfg: ValidateConfig) -> bool | None:
    """Judged only where the real held-out rate itself reaches the threshold."""
    hit, hit_real = c.envelope_hit_rate, c.envelope_hit_rate_real
    if hit is None or hit_real is None or hit_real < cfg.hit_rate:
        return None
    return bool(hit >= cfg.hit_rate)


@check("envelope_specificity")
def _envelope_specificity_check(c: ClassFidelity, cfg: ValidateConfig) -> bool | None:
    """The generated envelope profile is nearest its own real class among all of them; judged only where the
    real training part's is (a peak at the class's own rate passes the hit test even when every rate is there)."""
    if c.envelope_nearest is None or c.envelope_nearest_real != c.label:
        return None
    return c.envelope_nearest == c.label


@check("kurtosis")
def _kurtosis_check(c: ClassFidelity, cfg: ValidateConfig) -> bool:
    return bool(abs(c.kurtosis_median - c.kurtosis_median_real) <= cfg.kurtosis_rel * abs(c.kurtosis_median_real))


@check("spread")
def _spread_check(c: ClassFidelity, cfg: ValidateConfig) -> bool | None:
    lo, hi = c.spread_limits
    return bool(lo <= c.spread_ratio <= hi) if np.isfinite(c.spread_ratio) else None  # one real segment: no spread


@dataclass
class FidelityReport:
    """Per-class fidelity of a generated set; ``passed`` when every class passes every judged check."""
    fs: float
    segment_length: int
    channels: int
    classes: dict[str, ClassFidelity]
    thresholds: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    envelope_band: tuple[float, float] | None = None  # Hz: the band-pass of every envelope metric
    envelope_band_info: dict[str, Any] = field(default_factory=dict)  # how it was chosen (spectral.choose_envelope_band)

    @property
    def c2st_pooled(self) -> tuple[float, float] | None:
        """(mean generated-vs-real C2ST accuracy, mean real floor) over the classes that have both, or None."""
        pairs = [(c.c2st_accuracy, c.c2st_floor) for c in self.classes.values()
                 if c.c2st_accuracy is not None and c.c2st_floor is not None]
        return (float(np.mean([a for a, _ in pairs])), float(np.mean([f for _, f in pairs]))) if pairs else None

    @property
    def c2st_passes(self) -> bool | None:
        """Pooled over the classes, generated is told from real no more often than the real training part is told
        from the held-out part, plus ``c2st_margin``; None when C2ST was not run."""
        pooled = self.c2st_pooled
        return None if pooled is None else bool(pooled[0] <= pooled[1] + self.thresholds.get("c2st_margin", 0.1))

    @property
    def passed(self) -> bool:
        return bool(self.classes) and all(c.passes for c in self.classes.values()) and self.c2st_passes is not False

    def to_dict(self) -> dict[str, Any]:
        """``{"fs", "segment_length", "channels", "thresholds", "passed", "meta", "classes": {label: {...}}}``."""
        return _jsonable({
            "fs": self.fs,
            "segment_length": self.segment_length,
            "channels": self.channels,
            "thresholds": self.thresholds,
            "passed": self.passed,
            "meta": self.meta,
            "envelope_band": list(self.envelope_band) if self.envelope_band else None,
            "envelope_band_info": self.envelope_band_info,
            "classes": {k: v.to_dict() for k, v in self.classes.items()},
        })

    def to_json(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as indented JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def to_frame(self):
        """One row per class, the scalar metrics and one boolean column per check (pandas DataFrame)."""
        import pandas as pd

        rows = []
        for c in self.classes.values():
            row = {k: v for k, v in dataclasses.asdict(c).items()
                   if k not in ("indicators", "checks", "lsd_to_classes", "spread_limits", "nearest_accepted")}
            row["spread_min"], row["spread_max"] = c.spread_limits
            for name, stats in c.indicators.items():
                for k, v in stats.items():
                    row[f"{name}_{k}"] = v
            for k, v in c.checks.items():
                row[f"check_{k}"] = v
            rows.append(row)
        return pd.DataFrame(rows).set_index("label")

    def summary_markdown(self) -> str:
        """A markdown table: one row per class, failing values marked with a cross."""
        t = self.thresholds
        head = ("| class | n real/gen | lsd dB (limit) | floor dB | nearest | hit rate gen/real | "
                "kurtosis gen/real | spread ratio | C2ST acc | MMD p | result |")
        lines = [head, "|" + "|".join(["---"] * 11) + "|"]

        def mark(ok: bool | None) -> str:
            return " ✗" if ok is False else ""

        for label, c in self.classes.items():
            ck = c.checks
            hit = "-" if c.envelope_hit_rate is None else (
                f"{c.envelope_hit_rate:.2f} / {format_number(c.envelope_hit_rate_real)}{mark(ck['envelope'])}")
            failed = [k for k in CHECKS if ck.get(k) is False]
            lines.append(
                f"| {label} | {c.n_real}/{c.n_fake} | {c.lsd_db:.2f} ({c.lsd_limit_db:.2f}){mark(ck['lsd'])} | "
                f"{format_number(c.floor_db)} | {c.nearest_class}{' ≈' if c.nearest_is_twin else ''}{mark(ck['nearest_class'])} | {hit} | "
                f"{c.kurtosis_median:.2f} / {c.kurtosis_median_real:.2f}{mark(ck['kurtosis'])} | "
                f"{format_number(c.spread_ratio)}{mark(ck['spread'])} | {format_number(c.c2st_accuracy)} | {format_number(c.mmd_pvalue)} | "
                f"{'pass' if c.passes else 'FAIL: ' + ', '.join(failed)} |")
        verdict = "PASS" if self.passed else "FAIL"
        n_pass = sum(c.passes for c in self.classes.values())
        pooled = self.c2st_pooled
        if pooled is not None:
            lines.append("")
            lines.append(f"C2ST pooled over the classes: {pooled[0]:.2f} generated vs real, real floor {pooled[1]:.2f} "
                         f"(training vs held-out part): {'pass' if self.c2st_passes else 'FAIL'} (limit floor + "
                         f"{t.get('c2st_margin', 0.1):g}).")
        lines.append("")
        lines.append(
            f"**{verdict}**: {n_pass}/{len(self.classes)} classes pass (lsd <= max({t['lsd_db']}, "
            f"{t['lsd_floor_factor']} x floor), nearest class correct (≈: one the real training part is as near, within "
            f"{t['lsd_floor_factor']} x floor), hit rate >= {t['hit_rate']} where real >= "
            f"{t['hit_rate']}, envelope profile nearest its own class where the real one is, median kurtosis within "
            f"{t['kurtosis_rel']:.0%}, spread ratio in {t['spread_min']}-{t['spread_max']} or up to the real floor "
            f"ratio; and C2ST pooled within the real floor + {t.get('c2st_margin', 0.1):g}). fs = {self.fs:g} Hz, "
            f"T = {self.segment_length} samples.")
        if self.envelope_band:
            lines.append("")
            lines.append(f"Envelope band {self.envelope_band[0]:.0f}-{self.envelope_band[1]:.0f} Hz: {self.band_origin()}.")
        return "\n".join(lines) + "\n"

    def band_origin(self) -> str:
        """How the envelope band was chosen, in words."""
        info = self.envelope_band_info or {}
        text = f"from {info.get('source', 'given')}"
        rule, sk = info.get("rule"), info.get("sk")
        if not rule:
            return text
        if isinstance(sk, float) and math.isfinite(sk):
            rule += f"; spectral kurtosis {sk:.2f}"
        return f"{text} ({rule})"


def format_number(v: float | None, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if not math.isfinite(v) else v
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj




def _as_sets(sets: Sets | None, name: str) -> dict[str, np.ndarray]:
    if sets is None:
        return {}
    if not isinstance(sets, Mapping):
        raise DataError(f"{name}: expected a dict label -> array (N, C, T), got {type(sets).__name__}")
    return {str(k): as_segments(v, f"{name}[{k!r}]") for k, v in sets.items()}


def _thresholds(thresholds: ValidateConfig | Mapping[str, Any] | None) -> ValidateConfig:
    if thresholds is None:
        return ValidateConfig()
    if isinstance(thresholds, ValidateConfig):
        return thresholds
    names = {f.name for f in dataclasses.fields(ValidateConfig)}
    unknown = sorted(set(thresholds) - names)
    if unknown:
        raise VibganError(f"thresholds: unknown key(s) {unknown}; expected some of {sorted(names)}")
    return dataclasses.replace(ValidateConfig(), **dict(thresholds))


@dataclass
class _Features:
    n: int
    seg_psd: np.ndarray  # (N, F) per segment, averaged over channels, units^2/Hz
    mean_psd: np.ndarray  # (F,) averaged in linear power over segments and channels
    indicators: dict[str, np.ndarray] | None = None  # name -> (N * C,)
    hits: np.ndarray | None = None  # (N * C,) bool
    profile: np.ndarray | None = None  # (F_env,) dB: spectral.envelope_profile


def _features(x: np.ndarray, fs: float, *, fc: float | None = None, full: bool = True,
              profile: bool = False, band: tuple[float, float] = spectral.ENVELOPE_BAND) -> _Features:
    _, p = spectral.psd(x, fs)  # (N, C, F)
    seg = p.mean(axis=1)
    feats = _Features(n=x.shape[0], seg_psd=seg, mean_psd=seg.mean(axis=0))
    if full:
        ind = spectral.indicators(x)
        feats.indicators = {k: ind[k].reshape(-1) for k in INDICATORS}
    fc = fc if full else None
    if profile or fc is not None:  # one squared envelope per segment for both
        hits, _, prof = spectral.envelope_hits_and_profile(x, fs, fc, band=band, profile=profile)
        feats.profile = prof
        feats.hits = hits.reshape(-1) if hits is not None else None
    return feats


def _spread_db(f: _Features, freqs: np.ndarray, fs: float) -> float:
    """Mean over segments of lsd_db(segment PSD, the set's mean PSD) in dB (docs/METRICS.md, metric 7)."""
    return float(np.mean(spectral.lsd_db(f.seg_psd, f.mean_psd[None, :], freqs, fs)))


def _iqr(v: np.ndarray) -> float:
    q1, q3 = np.nanpercentile(v, [25, 75])
    return float(q3 - q1)


def log_psd_features(x: np.ndarray, fs: float) -> np.ndarray:
    """In-band log-PSD per segment, dB (N, F_in): the feature vector of the MMD (channels averaged)."""
    x = as_segments(x, "x")
    freqs, p = spectral.psd(x, fs)
    return 10.0 * np.log10(np.maximum(p.mean(axis=1)[:, spectral.in_band(freqs, fs)], 1e-30))


def mmd_rbf(a: np.ndarray, b: np.ndarray, *, permutations: int = 200, seed: int = 0,
            max_per_set: int = 256) -> tuple[float, float]:
    """Unbiased MMD^2 between feature sets a (n, D) and b (m, D), RBF kernel, median-heuristic bandwidth.

    The bandwidth sigma is the median pairwise Euclidean distance of the pooled sample, k = exp(-d^2 / 2 sigma^2).
    Sets larger than ``max_per_set`` are subsampled (seeded). Returns (mmd2, permutation p-value); the p-value
    is the fraction of label permutations (plus the observed one) with MMD^2 at least as large.
    """
    rng = np.random.default_rng(seed)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) > max_per_set:
        a = a[rng.choice(len(a), max_per_set, replace=False)]
    if len(b) > max_per_set:
        b = b[rng.choice(len(b), max_per_set, replace=False)]
    n, m = len(a), len(b)
    if n < 2 or m < 2:
        return float("nan"), float("nan")
    z = np.concatenate([a, b])
    sq = np.sum(z**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    off = d2[np.triu_indices(len(z), 1)]
    med = np.median(off[off > 0]) if np.any(off > 0) else 1.0
    k = np.exp(-d2 / med / 2.0)  # sigma^2 = median squared distance = (median distance)^2
    np.fill_diagonal(k, 0.0)
    # every split at once: row j of `a` marks set a of split j (split 0: the observed one, then the
    # permutations, drawn as before); with s = a K 1 and q = a K a (K's diagonal is zero),
    # sum K_aa = q, sum K_bb = total - 2 s + q, sum K_ab = s - q
    a = np.zeros((permutations + 1, n + m))
    a[0, :n] = 1.0
    for j in range(permutations):
        a[j + 1, rng.permutation(n + m)[:n]] = 1.0
    rows = k.sum(axis=1)
    s_ = a @ rows
    q = np.einsum("ij,ij->i", a @ k, a)
    stats = q / (n * (n - 1)) + (rows.sum() - 2 * s_ + q) / (m * (m - 1)) - 2.0 * (s_ - q) / (n * m)
    observed = float(stats[0])
    # a split whose statistic equals the observed one up to rounding counts, as an exact tie would
    count = 1 + int(np.sum(stats[1:] >= observed - 1e-12 * max(1.0, abs(observed))))
    return observed, count / (permutations + 1)


@dataclass
class _RealSide:
    """The real sets' features, computed once for every generated class: held-out (``test``) and training."""

    fs: float
    freqs: np.ndarray
    band: np.ndarray
    envelope_ok: bool  # segments long enough and the resonance band sampled: envelope profiles exist
    envelope_band: tuple[float, float]
    test: dict[str, _Features]
    train: dict[str, _Features]


def _score_class(lab: str, fk: np.ndarray, real: _RealSide, real_d: dict, train_d: dict, fc: float | None,
                 cfg: ValidateConfig, *, c2st: bool, seed: int) -> ClassFidelity:
    """Every metric of one generated class against the real sets (the checks are judged by the caller)."""
    fs = real.fs
    ff = _features(fk, fs, fc=fc, profile=real.envelope_ok, band=real.envelope_band)
    rf = real.test[lab]
    lsd = float(spectral.lsd_db(ff.mean_psd, rf.mean_psd, real.freqs, real.fs))
    tf = real.train.get(lab)
    # the real training part against every real held-out class: its own is the floor
    to_real = ({c: float(spectral.lsd_db(tf.mean_psd, f.mean_psd, real.freqs, real.fs)) for c, f in real.test.items()}
               if tf is not None else {})
    floor = to_real.get(lab)
    limit = max(cfg.lsd_db, cfg.lsd_floor_factor * floor) if floor is not None else cfg.lsd_db
    to_classes = {c: float(spectral.lsd_db(ff.mean_psd, f.mean_psd, real.freqs, real.fs)) for c, f in real.test.items()}
    nearest = min(to_classes, key=to_classes.get)
    accepted = _indistinguishable(lab, to_real, floor, cfg.lsd_floor_factor)
    hit = float(ff.hits.mean()) if ff.hits is not None else None
    hit_real = float(rf.hits.mean()) if rf.hits is not None else None
    ind = {k: {"median": float(np.nanmedian(ff.indicators[k])), "iqr": _iqr(ff.indicators[k]),
               "median_real": float(np.nanmedian(rf.indicators[k])), "iqr_real": _iqr(rf.indicators[k])}
           for k in INDICATORS}
    k_f, k_r = ind["kurtosis"]["median"], ind["kurtosis"]["median_real"]
    s_f, s_r = _spread_db(ff, real.freqs, real.fs), _spread_db(rf, real.freqs, real.fs)
    ratio = s_f / s_r if s_r > 0 else float("nan")
    # Like lsd's floor: where reality's own training part is more (or less) diverse than its held-out part
    # (a non-stationary recording), the interval widens to include that ratio; a check real data fails is wrong.
    spread_floor = _spread_db(tf, real.freqs, real.fs) / s_r if tf is not None and s_r > 0 else None
    lo, hi = cfg.spread_min, cfg.spread_max
    if spread_floor is not None and np.isfinite(spread_floor):
        lo, hi = min(lo, spread_floor), max(hi, spread_floor)
    # the classifier uses torch's threads as the caller set them (2 threads: 1.7x faster than 1 on 2 cores)
    acc = c2st_accuracy(real_d[lab], fk, seed=seed, threads=None) if c2st else None
    acc_floor = c2st_accuracy(real_d[lab], train_d[lab], seed=seed, threads=None) if c2st and lab in train_d else None
    env_d = ({k: spectral.profile_distance(ff.profile, f.profile) for k, f in real.test.items()}
             if ff.profile is not None else {})
    env_d_real = ({k: spectral.profile_distance(tf.profile, f.profile) for k, f in real.test.items()}
                  if tf is not None and tf.profile is not None else {})
    mmd2, mmd_p = mmd_rbf(10 * np.log10(np.maximum(rf.seg_psd[:, real.band], 1e-30)),
                          10 * np.log10(np.maximum(ff.seg_psd[:, real.band], 1e-30)), seed=seed)
    return ClassFidelity(
        label=lab, n_real=rf.n, n_fake=ff.n, lsd_db=lsd, floor_db=floor, lsd_limit_db=float(limit),
        nearest_class=nearest, nearest_lsd_db=to_classes[nearest], lsd_to_classes=to_classes, nearest_accepted=accepted,
        fault_freq_hz=fc, envelope_hit_rate=hit, envelope_hit_rate_real=hit_real, indicators=ind,
        kurtosis_median=k_f, kurtosis_median_real=k_r, spread_db=s_f, spread_db_real=s_r, spread_ratio=ratio,
        spread_ratio_floor=spread_floor, spread_limits=(float(lo), float(hi)),
        c2st_accuracy=acc, c2st_floor=acc_floor, envelope_distances=env_d,
        envelope_nearest=min(env_d, key=env_d.get) if env_d else None,
        envelope_nearest_real=min(env_d_real, key=env_d_real.get) if env_d_real else None,
        mmd2=mmd2, mmd_pvalue=mmd_p)


def _checked_sets(real: Sets, fake: Sets, real_train: Sets | None) -> tuple[dict, dict, dict, tuple[int, int]]:
    """The three sets as dicts of (N, C, T) arrays, checked against each other; and their (channels, length)."""
    real_d = _as_sets(real, "real")
    fake_d = _as_sets(fake, "fake")
    train_d = _as_sets(real_train, "real_train")
    if not real_d:
        raise DataError("real: expected at least one class of held-out real segments")
    if not fake_d:
        raise DataError("fake: expected at least one class of generated segments")
    ref = next(iter(real_d.values())).shape[1:]
    for name, d in (("real", real_d), ("fake", fake_d), ("real_train", train_d)):
        for lab, a in d.items():
            if a.shape[1:] != ref:
                raise DataError(f"{name}[{lab!r}]: segments of (channels, samples) = {a.shape[1:]}; expected {ref} "
                                "like the real held-out set (same channels and segment length everywhere)")
    missing = sorted(set(fake_d) - set(real_d))
    if missing:
        raise DataError(f"fake: label(s) {missing} have no real segments; real classes are {sorted(real_d)}")
    channels, length = ref
    if length < 256:
        raise DataError(f"segments of {length} samples are shorter than the 256-sample Welch window")
    return real_d, fake_d, train_d, (int(channels), int(length))


def fidelity_report(real: Sets, fake: Sets, fs: float, *, real_train: Sets | None = None,
                    fault_freqs: Mapping[str, float | None] | None = None,
                    thresholds: ValidateConfig | Mapping[str, Any] | None = None, c2st: bool = True,
                    seed: int = 0, meta: Mapping[str, Any] | None = None,
                    progress: Callback | None = None, envelope_band: Sequence[float] | None = None,
                    envelope_band_info: Mapping[str, Any] | None = None) -> FidelityReport:
    """Score generated segments against held-out real segments, class by class (docs/METRICS.md, metrics 1-8).

    Parameters
    ----------
    real : label -> held-out real segments (N, C, T) (or (N, T)), physical units.
    fake : label -> generated segments (M, C, T) of the same fs, T and C; every label must be in ``real``.
    fs : sampling rate in Hz.
    real_train : label -> real segments of the training part; gives ``floor_db`` (None: no floor).
    fault_freqs : label -> characteristic fault frequency f_c in Hz (BPFI / BPFO / 2 x BSF) or None.
    thresholds : ValidateConfig or a dict of its fields; None gives the defaults of docs/METRICS.md.
    c2st : run the classifier two-sample test (one to a few seconds per class on one CPU core).
    seed : seed for subsampling, the C2ST network and the MMD permutations.
    meta : free-form provenance recorded in the report (paths, model URI, mode).
    progress : ``progress(done, total, what)``, told before the real features and before each class.
    envelope_band : (low, high) Hz of every envelope metric (the band the generator was trained with); None
        chooses it from ``real_train`` (spectral.choose_envelope_band: the kurtogram's most impulsive band of
        the fault classes), else the 2-5 kHz of ``spectral.ENVELOPE_BAND``. ``envelope_band_info`` says how
        a given band was chosen (for the report).
    """
    fs = spectral._check_fs(fs)
    report = callback(progress)
    cfg = _thresholds(thresholds)
    real_d, fake_d, train_d, (channels, length) = _checked_sets(real, fake, real_train)
    fault_freqs = dict(fault_freqs or {})
    freqs = np.fft.rfftfreq(256, 1.0 / fs)
    band = spectral.in_band(freqs, fs)

    if envelope_band:
        env_band = (float(envelope_band[0]), float(envelope_band[1]))
        env_info = dict(envelope_band_info or {"source": "given"})
    elif train_d and length >= 32:
        env_info = spectral.choose_envelope_band(train_d, fs, fault_freqs, seed=seed)
        env_info["source"] = "the real training part"
        env_band = (env_info["low"], env_info["high"])
    else:
        env_band, env_info = spectral.ENVELOPE_BAND, {"source": "default (spectral.ENVELOPE_BAND)"}
    env_info = {**env_info, "low": env_band[0], "high": env_band[1]}

    def fc_of(label: str) -> float | None:
        fc = fault_freqs.get(label)
        if fc is None or length < ENVELOPE_MIN_SAMPLES or not np.isfinite(fc) or fc <= 0:
            return None
        if fs / 2 <= env_band[0]:  # the resonance band is not sampled
            return None
        return float(fc)

    envelope_ok = length >= ENVELOPE_MIN_SAMPLES and fs / 2 > env_band[0]
    total = len(fake_d) + 1
    report(0, total, f"features of the real segments ({len(real_d)} classes)")
    real = _RealSide(fs, freqs, band, envelope_ok, env_band,
                     {lab: _features(a, fs, fc=fc_of(lab), full=lab in fake_d, profile=envelope_ok, band=env_band)
                      for lab, a in real_d.items()},
                     {lab: _features(a, fs, full=False, profile=envelope_ok, band=env_band)
                      for lab, a in train_d.items()})
    classes: dict[str, ClassFidelity] = {}
    for i, (lab, fk) in enumerate(fake_d.items()):
        report(i + 1, total, f"class {lab} ({i + 1}/{len(fake_d)}: spectra, envelope" + (", C2ST)" if c2st else ")"))
        c = _score_class(lab, fk, real, real_d, train_d, fc_of(lab), cfg, c2st=c2st, seed=seed)
        c.checks = {name: judge(c, cfg) for name, judge in CHECKS.items()}
        c.passes = all(v for v in c.checks.values() if v is not None)
        classes[lab] = c
    report(total, total, f"{len(classes)} classes scored")
    return FidelityReport(fs=fs, segment_length=int(length), channels=int(channels), classes=classes,
                          thresholds=dataclasses.asdict(cfg), meta=dict(meta or {}), envelope_band=env_band,
                          envelope_band_info=env_info)


def real_segments(recordings: Sequence[Any], length: int, fractions: Sequence[float] = (0.7, 0.0, 0.3),
                  hop: int | None = None, *, test_hop: int | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cut each recording in time (vibgan.windows.split_by_time) and window both ends: (train, test) dicts by label.

    Parameters
    ----------
    recordings : Recording objects (meta['label'] names the class; several per label are pooled).
    length : segment length T in samples.
    fractions : train / validation / test shares of each recording; the first part gives the training
        segments (the floor), the last part the held-out segments; a middle part is left out.
    hop : window step in the training part (default ``length``: no overlap).
    test_hop : window step in the held-out part (default ``length``: no overlap, independent segments).

    Returns
    -------
    (train, test): label -> float32 (N, C, T) arrays; a part shorter than one window raises a DataError
    naming the recording.
    """
    if not recordings:
        raise DataError("real_segments: expected at least one recording")
    train: dict[str, list[np.ndarray]] = {}
    test: dict[str, list[np.ndarray]] = {}
    for rec in recordings:
        parts = split_by_time(rec, fractions)
        first, last = parts[0], parts[-1]
        for part, step, out, name in ((first, hop, train, "training"), (last, test_hop, test, "held-out")):
            if part is None:
                continue
            if part.samples < length:
                raise DataError(f"{rec.meta.get('source', rec.label)}: the {name} part has {part.samples} samples, "
                                f"shorter than one segment of {length}; use shorter segments or another split")
            out.setdefault(rec.label, []).append(np.asarray(windows(part, length, step), dtype=np.float32))
    return ({k: np.concatenate(v) for k, v in train.items()}, {k: np.concatenate(v) for k, v in test.items()})


def fault_frequencies(recordings: Sequence[Any], geometry: GeometrySpec = "6205") -> dict[str, float | None]:
    """label -> the envelope frequency f_c in Hz (BPFI / BPFO / 2 x BSF, bearing.characteristic_frequency).

    Read from each recording's meta ``fault``, ``rpm`` and ``bearing`` (a manifest's; else ``geometry``); None
    where the fault or speed is unknown or the class is normal.
    Recordings of one label at different speeds give None (one f_c per class is assumed).
    """
    out: dict[str, float | None] = {}
    for rec in recordings:
        fault, rpm = rec.meta.get("fault"), rec.meta.get("rpm")
        fc = None
        if fault in FAULTS and rpm is not None and np.isfinite(float(rpm)) and float(rpm) > 0:
            fc = characteristic_frequency(fault, float(rpm), rec.meta.get("bearing") or geometry)
        if rec.label in out:
            prev = out[rec.label]
            fc = fc if prev is not None and fc is not None and abs(prev - fc) < 1e-6 else None
        out[rec.label] = fc
    return out


def group_by_label(signals: np.ndarray, labels: Sequence[str], classes: Sequence[str] | None = None
                   ) -> dict[str, np.ndarray]:
    """Split generated segments (N, C, T) by their (N,) labels: label -> (n, C, T); ``classes`` keeps a subset."""
    x = as_segments(signals, "signals")
    lab = np.asarray([str(v) for v in labels])
    if lab.shape != (x.shape[0],):
        raise DataError(f"labels: expected {x.shape[0]} labels to match the signals, got shape {lab.shape}")
    names = list(dict.fromkeys(lab.tolist())) if classes is None else [str(c) for c in classes]
    missing = [c for c in names if not np.any(lab == c)]
    if missing:
        raise DataError(f"labels: no generated segment labelled {missing}; found {sorted(set(lab.tolist()))}")
    return {c: x[lab == c] for c in names}


def fidelity_sets(trained: TrainedGenerator, data: TrainData, n_fake: int, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float | None]]:
    """Real held-out, real training and generated segments grouped per class (per class and speed when a
    class was recorded at several speeds), plus each group's characteristic fault frequency in Hz.

    Returns (real_test, real_train, fake, fault_freqs), each dict keyed by group name.
    """
    T = data.length
    multi = {lab: len(c) > 1 for lab, c in data.conditions.items()}
    test, train_w, fake, fcs = {}, {}, {}, {}
    usable = lambda ps: any(p is not None and p.samples >= T for p in ps)  # noqa: E731
    parts = data.test_parts if usable(data.test_parts) else data.val_parts
    for i, (tr, te) in enumerate(zip(data.train_parts, parts)):
        rpm = float(tr.meta.get("rpm") or 0.0)
        load = float(tr.meta.get("load_hp") or 0.0)
        group = f"{tr.label}@{rpm:g}rpm" if multi.get(tr.label) else tr.label
        if te is None or te.samples < T:
            continue
        test.setdefault(group, []).append(windows(te, T, T))
        train_w.setdefault(group, []).append(windows(tr, T, T))
        fault = tr.meta.get("fault")
        fcs[group] = characteristic_frequency(fault, rpm, data.geometry) if fault in FAULTS and rpm > 0 else None
        if group not in fake:
            fake[group] = trained.sample(tr.label, n_fake, rpm=rpm, load_hp=load, seed=seed + i)
    cat = lambda d: {k: np.concatenate(v, axis=0) for k, v in d.items()}  # noqa: E731
    return cat(test), cat(train_w), fake, fcs


def score_generator(trained: TrainedGenerator, data: TrainData, cfg: ValidateConfig, seed: int = 0, *,
                    meta: Mapping[str, Any] | None = None, progress: Callback | None = None
                    ) -> tuple[FidelityReport, tuple[Sets, Sets, Sets, dict[str, float | None]]]:
    """``trained`` judged as ``pipelines/train.py`` judges it: ``cfg.n_fake`` segments per group
    (``fidelity_sets``) against the real held-out part, with the real training part's floors, the data's
    envelope band and ``cfg``'s thresholds and C2ST. Returns the report and the sets (real, real_train, fake,
    fault_freqs) for plotting."""
    sets = fidelity_sets(trained, data, cfg.n_fake, seed=seed)
    real, real_train, fake, fcs = sets
    report = fidelity_report(real, fake, data.fs, real_train=real_train, fault_freqs=fcs, thresholds=cfg,
                             c2st=cfg.c2st, seed=seed, meta=meta, progress=progress,
                             envelope_band=data.envelope_band, envelope_band_info=data.envelope_band_info)
    return report, sets
