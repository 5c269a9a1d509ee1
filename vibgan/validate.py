"""Fidelity of generated vibration segments against real ones, class by class.

Implements the metric contract of DESIGN.md ("Metric definitions"): in-band log-spectral distance of the
mean Welch PSDs (``lsd_db``) and its real-vs-real floor (``floor_db``), the nearest real class, the
envelope-spectrum hit rate at the fault frequency, condition indicators (RMS, kurtosis, crest factor, peak),
the diversity ``spread_ratio``, a classifier two-sample test (``c2st_accuracy``) and an RBF-kernel MMD on
log-PSD features. Everything is vectorised over segments; sets are dicts ``label -> (N, C, T)`` arrays in
physical units sampled at ``fs`` Hz.

Plots (matplotlib, Agg) and a self-contained HTML / markdown report live here too.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vibgan import spectral
from vibgan.config import ValidateConfig
from vibgan.errors import DataError, VibganError

#: Checks judged per class, in report order; c2st and MMD are reported, not judged (see DESIGN.md).
CHECKS = ("lsd", "nearest_class", "envelope", "kurtosis", "spread")
#: Indicators summarised per class (median and inter-quartile range over segments and channels).
INDICATORS = ("rms", "kurtosis", "crest", "peak")
#: Shortest segment on which the envelope check is defined (DESIGN.md metric 5).
ENVELOPE_MIN_SAMPLES = 4096

Sets = Mapping[str, np.ndarray]


# --------------------------------------------------------------------------------------------------
# Report data structures
# --------------------------------------------------------------------------------------------------


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
    fault_freq_hz: float | None  # Hz, f_c used for the envelope check (BPFI / BPFO / 2 x BSF)
    envelope_hit_rate: float | None  # fraction of generated segments (x channels) that hit f_c
    envelope_hit_rate_real: float | None  # the same on held-out real segments
    indicators: dict[str, dict[str, float]]  # name -> {median, iqr, median_real, iqr_real}
    kurtosis_median: float  # non-excess kurtosis, median over generated segments (3 for Gaussian)
    kurtosis_median_real: float
    spread_db: float  # dB, mean over generated segments of lsd(segment PSD, generated mean PSD)
    spread_db_real: float  # dB, the same for real
    spread_ratio: float  # spread_db / spread_db_real: 1 ideal, << 1 mode collapse
    c2st_accuracy: float | None  # held-out accuracy of a real-vs-generated 1D CNN; 0.5 ideal
    mmd2: float  # unbiased MMD^2 of in-band log-PSD features (RBF kernel, median heuristic)
    mmd_pvalue: float  # permutation p-value of mmd2 (small: the sets differ detectably)
    checks: dict[str, bool | None]  # per check in CHECKS: True pass, False fail, None not judged
    passes: bool  # every judged check passes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        return _jsonable(dataclasses.asdict(self))


@dataclass
class FidelityReport:
    """Per-class fidelity of a generated set; ``passed`` when every class passes every judged check."""

    fs: float
    segment_length: int
    channels: int
    classes: dict[str, ClassFidelity]
    thresholds: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.classes) and all(c.passes for c in self.classes.values())

    def to_dict(self) -> dict[str, Any]:
        """``{"fs", "segment_length", "channels", "thresholds", "passed", "meta", "classes": {label: {...}}}``."""
        return _jsonable({
            "fs": self.fs,
            "segment_length": self.segment_length,
            "channels": self.channels,
            "thresholds": self.thresholds,
            "passed": self.passed,
            "meta": self.meta,
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
                   if k not in ("indicators", "checks", "lsd_to_classes")}
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
                f"{c.envelope_hit_rate:.2f} / {c.envelope_hit_rate_real:.2f}{mark(ck['envelope'])}")
            failed = [k for k in CHECKS if ck.get(k) is False]
            lines.append(
                f"| {label} | {c.n_real}/{c.n_fake} | {c.lsd_db:.2f} ({c.lsd_limit_db:.2f}){mark(ck['lsd'])} | "
                f"{_fmt(c.floor_db)} | {c.nearest_class}{mark(ck['nearest_class'])} | {hit} | "
                f"{c.kurtosis_median:.2f} / {c.kurtosis_median_real:.2f}{mark(ck['kurtosis'])} | "
                f"{c.spread_ratio:.2f}{mark(ck['spread'])} | {_fmt(c.c2st_accuracy)} | {c.mmd_pvalue:.2f} | "
                f"{'pass' if c.passes else 'FAIL: ' + ', '.join(failed)} |")
        verdict = "PASS" if self.passed else "FAIL"
        n_pass = sum(c.passes for c in self.classes.values())
        lines.append("")
        lines.append(
            f"**{verdict}**: {n_pass}/{len(self.classes)} classes pass (lsd <= max({t['lsd_db']}, "
            f"{t['lsd_floor_factor']} x floor), nearest class correct, hit rate >= {t['hit_rate']} where real >= "
            f"{t['hit_rate']}, median kurtosis within {t['kurtosis_rel']:.0%}, spread ratio in "
            f"{t['spread_min']}-{t['spread_max']}). fs = {self.fs:g} Hz, T = {self.segment_length} samples.")
        return "\n".join(lines) + "\n"


def _fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return None if not math.isfinite(v) else v
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def _as_segments(x: np.ndarray, where: str) -> np.ndarray:
    """(N, T) or (N, C, T) real array -> (N, C, T) without copying when possible."""
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3:
        raise DataError(f"{where}: expected segments of shape (N, C, T) or (N, T), got {a.shape}")
    if a.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numbers, got dtype {a.dtype}")
    if a.shape[0] < 1 or a.shape[2] < 1:
        raise DataError(f"{where}: expected at least one segment of at least one sample, got {a.shape}")
    return a


def _as_sets(sets: Sets | None, name: str) -> dict[str, np.ndarray]:
    if sets is None:
        return {}
    if not isinstance(sets, Mapping):
        raise DataError(f"{name}: expected a dict label -> array (N, C, T), got {type(sets).__name__}")
    return {str(k): _as_segments(v, f"{name}[{k!r}]") for k, v in sets.items()}


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


# --------------------------------------------------------------------------------------------------
# Per-set features (vectorised over segments)
# --------------------------------------------------------------------------------------------------


@dataclass
class _Features:
    n: int
    seg_psd: np.ndarray  # (N, F) per segment, averaged over channels, units^2/Hz
    mean_psd: np.ndarray  # (F,) averaged in linear power over segments and channels
    indicators: dict[str, np.ndarray] | None = None  # name -> (N * C,)
    hits: np.ndarray | None = None  # (N * C,) bool


def _features(x: np.ndarray, fs: float, *, fc: float | None = None, full: bool = True) -> _Features:
    _, p = spectral.psd(x, fs)  # (N, C, F)
    seg = p.mean(axis=1)
    feats = _Features(n=x.shape[0], seg_psd=seg, mean_psd=seg.mean(axis=0))
    if full:
        ind = spectral.indicators(x)
        feats.indicators = {k: ind[k].reshape(-1) for k in INDICATORS}
        if fc is not None:
            feats.hits = spectral.envelope_hits(x, fs, fc).reshape(-1)
    return feats


def _spread_db(f: _Features, freqs: np.ndarray, fs: float) -> float:
    """Mean over segments of lsd_db(segment PSD, the set's mean PSD) in dB (DESIGN.md metric 7)."""
    return float(np.mean(spectral.lsd_db(f.seg_psd, f.mean_psd[None, :], freqs, fs)))


def _iqr(v: np.ndarray) -> float:
    q1, q3 = np.nanpercentile(v, [25, 75])
    return float(q3 - q1)


# --------------------------------------------------------------------------------------------------
# Two-sample tests
# --------------------------------------------------------------------------------------------------


def log_psd_features(x: np.ndarray, fs: float) -> np.ndarray:
    """In-band log-PSD per segment, dB (N, F_in): the feature vector of the MMD (channels averaged)."""
    x = _as_segments(x, "x")
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

    def stat(idx_a: np.ndarray, idx_b: np.ndarray) -> float:
        kaa = k[np.ix_(idx_a, idx_a)].sum() / (n * (n - 1))
        kbb = k[np.ix_(idx_b, idx_b)].sum() / (m * (m - 1))
        kab = k[np.ix_(idx_a, idx_b)].mean()
        return float(kaa + kbb - 2.0 * kab)

    idx = np.arange(n + m)
    observed = stat(idx[:n], idx[n:])
    count = 1
    for _ in range(permutations):
        p = rng.permutation(n + m)
        count += stat(p[:n], p[n:]) >= observed
    return observed, count / (permutations + 1)


def c2st_accuracy(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, folds: int = 4, crop: int = 1024,
                  epochs: int = 30, crops_per_segment: int = 8, max_per_set: int = 64) -> float | None:
    """Classifier two-sample test: held-out accuracy of a small 1D CNN telling real from generated segments.

    Fair-test choices: both sets are subsampled to the same size (balanced, at most ``max_per_set``); the
    split is by segment (K folds, every segment scored once, never trained on and scored in the same fold);
    the CNN sees raw waveform crops of ``crop`` samples scaled by one per-channel factor fit on the training
    fold (so amplitude differences stay visible, unlike per-segment normalisation); training draws random
    crops, scoring tiles each held-out segment into non-overlapping crops and reports the accuracy over those
    crops. 0.5 means indistinguishable; 1.0 means every crop is told apart. Seeded: same seed, same result.
    Returns None when either set has fewer than 2 segments.
    """
    import torch
    from torch import nn

    real = _as_segments(real, "real")
    fake = _as_segments(fake, "fake")
    if real.shape[1:] != fake.shape[1:]:
        raise DataError(f"c2st: real segments {real.shape[1:]} and generated {fake.shape[1:]} differ in shape")
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake), max_per_set)
    if n < 2:
        return None
    r = real[rng.choice(len(real), n, replace=False)].astype(np.float32)
    f = fake[rng.choice(len(fake), n, replace=False)].astype(np.float32)
    channels, length = r.shape[1], r.shape[2]
    crop = min(crop, length)
    k = max(2, min(folds, n))
    fold_of = np.arange(n) % k  # same fold layout for both sets: balanced test folds
    rng.shuffle(fold_of)
    correct = 0
    total = 0
    gen = torch.Generator().manual_seed(seed)
    for fold in range(k):
        tr, te = fold_of != fold, fold_of == fold
        x_tr = np.concatenate([r[tr], f[tr]])
        y_tr = np.concatenate([np.ones(tr.sum()), np.zeros(tr.sum())]).astype(np.float32)
        scale = x_tr.std(axis=(0, 2), keepdims=True) + 1e-12  # (1, C, 1) from the training fold only
        torch.manual_seed(seed * 1000 + fold)
        net = _c2st_net(channels)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        loss_fn = nn.BCEWithLogitsLoss()
        xt = torch.from_numpy(x_tr / scale)
        yt = torch.from_numpy(y_tr)
        net.train()
        for _ in range(epochs):
            # random crops: crops_per_segment per training segment, (B, C, crop)
            seg = torch.arange(len(xt)).repeat_interleave(crops_per_segment)
            start = torch.randint(0, length - crop + 1, (len(seg),), generator=gen)
            idx = start[:, None] + torch.arange(crop)[None, :]
            xb = torch.gather(xt[seg], 2, idx[:, None, :].expand(-1, channels, -1))
            yb = yt[seg]
            perm = torch.randperm(len(seg), generator=gen)
            for i in range(0, len(seg), 128):
                j = perm[i:i + 128]
                opt.zero_grad()
                loss = loss_fn(net(xb[j]), yb[j])
                loss.backward()
                opt.step()
        net.eval()
        x_te = np.concatenate([r[te], f[te]]) / scale
        y_te = np.concatenate([np.ones(te.sum()), np.zeros(te.sum())])
        tiles = length // crop
        xc = x_te[:, :, : tiles * crop].reshape(len(x_te), channels, tiles, crop).transpose(0, 2, 1, 3)
        with torch.no_grad():
            logits = net(torch.from_numpy(np.ascontiguousarray(xc.reshape(-1, channels, crop), dtype=np.float32)))
        pred = (logits.numpy() > 0).reshape(len(x_te), tiles)
        correct += int((pred == (y_te[:, None] > 0.5)).sum())
        total += pred.size
    return correct / total


def _c2st_net(channels: int):
    """Three strided conv layers, then mean and max over time (band energy and impulsiveness), then a logit."""
    import torch
    from torch import nn

    class C2STNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv1d(channels, 16, 31, stride=2, padding=15), nn.ReLU(),
                nn.Conv1d(16, 32, 9, stride=4, padding=4), nn.ReLU(),
                nn.Conv1d(32, 32, 9, stride=4, padding=4), nn.ReLU(),
            )
            self.head = nn.Linear(64, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, L) -> (B,)
            h = self.body(x)  # (B, 32, L / 32)
            return self.head(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)).squeeze(1)

    return C2STNet()


# --------------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------------


def fidelity_report(real: Sets, fake: Sets, fs: float, *, real_train: Sets | None = None,
                    fault_freqs: Mapping[str, float | None] | None = None,
                    thresholds: ValidateConfig | Mapping[str, Any] | None = None, c2st: bool = True,
                    seed: int = 0, meta: Mapping[str, Any] | None = None) -> FidelityReport:
    """Score generated segments against held-out real segments, class by class (DESIGN.md metrics 1-8).

    Parameters
    ----------
    real : label -> held-out real segments (N, C, T) (or (N, T)), physical units.
    fake : label -> generated segments (M, C, T) of the same fs, T and C; every label must be in ``real``.
    fs : sampling rate in Hz.
    real_train : label -> real segments of the training part; gives ``floor_db`` (None: no floor).
    fault_freqs : label -> characteristic fault frequency f_c in Hz (BPFI / BPFO / 2 x BSF) or None.
    thresholds : ValidateConfig or a dict of its fields; None gives the DESIGN.md defaults.
    c2st : run the classifier two-sample test (about a second per class on CPU).
    seed : seed for subsampling, the C2ST network and the MMD permutations.
    meta : free-form provenance recorded in the report (paths, model URI, mode).
    """
    fs = spectral._check_fs(fs)
    cfg = _thresholds(thresholds)
    real_d = _as_sets(real, "real")
    fake_d = _as_sets(fake, "fake")
    train_d = _as_sets(real_train, "real_train")
    fault_freqs = dict(fault_freqs or {})
    if not real_d:
        raise DataError("real: expected at least one class of held-out real segments")
    if not fake_d:
        raise DataError("fake: expected at least one class of generated segments")
    shapes = {(name, lab): a.shape[1:] for name, d in (("real", real_d), ("fake", fake_d), ("real_train", train_d))
              for lab, a in d.items()}
    ref = next(iter(real_d.values())).shape[1:]
    for (name, lab), shp in shapes.items():
        if shp != ref:
            raise DataError(f"{name}[{lab!r}]: segments of (channels, samples) = {shp}; expected {ref} like the "
                            "real held-out set (same channels and segment length everywhere)")
    missing = sorted(set(fake_d) - set(real_d))
    if missing:
        raise DataError(f"fake: label(s) {missing} have no real segments; real classes are {sorted(real_d)}")
    channels, length = ref
    freqs = np.fft.rfftfreq(256, 1.0 / fs)
    if length < 256:
        raise DataError(f"segments of {length} samples are shorter than the 256-sample Welch window")

    def fc_of(label: str) -> float | None:
        fc = fault_freqs.get(label)
        if fc is None or length < ENVELOPE_MIN_SAMPLES or not np.isfinite(fc) or fc <= 0:
            return None
        if fs / 2 <= spectral.ENVELOPE_BAND[0]:  # the 2-5 kHz resonance band is not sampled
            return None
        return float(fc)

    real_f = {lab: _features(a, fs, fc=fc_of(lab), full=lab in fake_d) for lab, a in real_d.items()}
    classes: dict[str, ClassFidelity] = {}
    for lab, fk in fake_d.items():
        fc = fc_of(lab)
        ff = _features(fk, fs, fc=fc)
        rf = real_f[lab]
        lsd = float(spectral.lsd_db(ff.mean_psd, rf.mean_psd, freqs, fs))
        floor = None
        if lab in train_d:
            tf = _features(train_d[lab], fs, full=False)
            floor = float(spectral.lsd_db(tf.mean_psd, rf.mean_psd, freqs, fs))
        limit = max(cfg.lsd_db, cfg.lsd_floor_factor * floor) if floor is not None else cfg.lsd_db
        to_classes = {c: float(spectral.lsd_db(ff.mean_psd, f.mean_psd, freqs, fs)) for c, f in real_f.items()}
        nearest = min(to_classes, key=to_classes.get)
        hit = float(ff.hits.mean()) if ff.hits is not None else None
        hit_real = float(rf.hits.mean()) if rf.hits is not None else None
        ind = {k: {"median": float(np.nanmedian(ff.indicators[k])), "iqr": _iqr(ff.indicators[k]),
                   "median_real": float(np.nanmedian(rf.indicators[k])), "iqr_real": _iqr(rf.indicators[k])}
               for k in INDICATORS}
        k_f, k_r = ind["kurtosis"]["median"], ind["kurtosis"]["median_real"]
        s_f, s_r = _spread_db(ff, freqs, fs), _spread_db(rf, freqs, fs)
        ratio = s_f / s_r if s_r > 0 else float("nan")
        acc = c2st_accuracy(real_d[lab], fk, seed=seed) if c2st else None
        mmd2, mmd_p = mmd_rbf(10 * np.log10(np.maximum(rf.seg_psd[:, spectral.in_band(freqs, fs)], 1e-30)),
                              10 * np.log10(np.maximum(ff.seg_psd[:, spectral.in_band(freqs, fs)], 1e-30)),
                              seed=seed)
        checks: dict[str, bool | None] = {
            "lsd": bool(lsd <= limit),
            "nearest_class": nearest == lab,
            "envelope": (bool(hit >= cfg.hit_rate) if hit is not None and hit_real is not None
                         and hit_real >= cfg.hit_rate else None),
            "kurtosis": bool(abs(k_f - k_r) <= cfg.kurtosis_rel * abs(k_r)),
            "spread": bool(cfg.spread_min <= ratio <= cfg.spread_max),
        }
        classes[lab] = ClassFidelity(
            label=lab, n_real=rf.n, n_fake=ff.n, lsd_db=lsd, floor_db=floor, lsd_limit_db=float(limit),
            nearest_class=nearest, nearest_lsd_db=to_classes[nearest], lsd_to_classes=to_classes,
            fault_freq_hz=fc, envelope_hit_rate=hit, envelope_hit_rate_real=hit_real, indicators=ind,
            kurtosis_median=k_f, kurtosis_median_real=k_r, spread_db=s_f, spread_db_real=s_r, spread_ratio=ratio,
            c2st_accuracy=acc, mmd2=mmd2, mmd_pvalue=mmd_p, checks=checks,
            passes=all(v for v in checks.values() if v is not None))
    return FidelityReport(fs=fs, segment_length=int(length), channels=int(channels), classes=classes,
                          thresholds=dataclasses.asdict(cfg), meta=dict(meta or {}))
