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

import base64
import dataclasses
import html
import json
import math
from collections.abc import Mapping, Sequence
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
    spread_ratio_floor: float | None  # spread of real_train / spread of real held-out (None without real_train)
    spread_limits: tuple[float, float]  # pass interval: [spread_min, spread_max] widened to include the floor
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
                   if k not in ("indicators", "checks", "lsd_to_classes", "spread_limits")}
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
                f"{c.envelope_hit_rate:.2f} / {_fmt(c.envelope_hit_rate_real)}{mark(ck['envelope'])}")
            failed = [k for k in CHECKS if ck.get(k) is False]
            lines.append(
                f"| {label} | {c.n_real}/{c.n_fake} | {c.lsd_db:.2f} ({c.lsd_limit_db:.2f}){mark(ck['lsd'])} | "
                f"{_fmt(c.floor_db)} | {c.nearest_class}{mark(ck['nearest_class'])} | {hit} | "
                f"{c.kurtosis_median:.2f} / {c.kurtosis_median_real:.2f}{mark(ck['kurtosis'])} | "
                f"{_fmt(c.spread_ratio)}{mark(ck['spread'])} | {_fmt(c.c2st_accuracy)} | {_fmt(c.mmd_pvalue)} | "
                f"{'pass' if c.passes else 'FAIL: ' + ', '.join(failed)} |")
        verdict = "PASS" if self.passed else "FAIL"
        n_pass = sum(c.passes for c in self.classes.values())
        lines.append("")
        lines.append(
            f"**{verdict}**: {n_pass}/{len(self.classes)} classes pass (lsd <= max({t['lsd_db']}, "
            f"{t['lsd_floor_factor']} x floor), nearest class correct, hit rate >= {t['hit_rate']} where real >= "
            f"{t['hit_rate']}, median kurtosis within {t['kurtosis_rel']:.0%}, spread ratio in "
            f"{t['spread_min']}-{t['spread_max']} or up to the real floor ratio). fs = {self.fs:g} Hz, "
            f"T = {self.segment_length} samples.")
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
    if isinstance(obj, np.integer):
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


def c2st_accuracy(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, folds: int = 4, crop: int = 512,
                  epochs: int = 20, crops_per_segment: int = 16, max_per_set: int = 64,
                  threads: int | None = 1) -> float | None:
    """Classifier two-sample test: held-out accuracy of a small 1D CNN telling real from generated segments.

    Fair-test choices: both sets are subsampled to the same size (balanced, at most ``max_per_set``); the
    split is by segment (K folds, every segment scored once, never trained on and scored in the same fold);
    the CNN sees raw waveform crops of ``crop`` samples scaled by one per-channel factor fit on the training
    fold (so amplitude differences stay visible, unlike per-segment normalisation); training draws random
    crops, scoring tiles each held-out segment into non-overlapping crops and reports the accuracy over those
    crops. 0.5 means indistinguishable; 1.0 means every crop is told apart. Seeded: same seed, same result.
    The mean is removed per segment first (sensor DC drift is not vibration, and the PSD ignores it too).
    ``threads`` caps torch's CPU threads while it runs (the network is tiny; 1 avoids oversubscription).
    Returns None when either set has fewer than 2 segments.
    """
    import torch

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _c2st(real, fake, seed=seed, folds=folds, crop=crop, epochs=epochs,
                     crops_per_segment=crops_per_segment, max_per_set=max_per_set)
    finally:
        torch.set_num_threads(old_threads)


def _c2st(real: np.ndarray, fake: np.ndarray, *, seed: int, folds: int, crop: int, epochs: int,
          crops_per_segment: int, max_per_set: int) -> float | None:
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
    # DC is removed per segment and channel (as the Welch PSD's constant detrend does): an accelerometer's
    # offset drifts with temperature and is not vibration; a classifier would otherwise learn the drift.
    r = real[rng.choice(len(real), n, replace=False)].astype(np.float32)
    f = fake[rng.choice(len(fake), n, replace=False)].astype(np.float32)
    r -= r.mean(axis=-1, keepdims=True)
    f -= f.mean(axis=-1, keepdims=True)
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
    c2st : run the classifier two-sample test (one to a few seconds per class on one CPU core).
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
    freqs = np.fft.rfftfreq(256, 1.0 / fs)
    band = spectral.in_band(freqs, fs)

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
        tf = None
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
        # Like lsd's floor: where reality's own training part is more (or less) diverse than its held-out part
        # (a non-stationary recording), the interval widens to include that ratio; a check real data fails is wrong.
        spread_floor = _spread_db(tf, freqs, fs) / s_r if tf is not None and s_r > 0 else None
        lo, hi = cfg.spread_min, cfg.spread_max
        if spread_floor is not None and np.isfinite(spread_floor):
            lo, hi = min(lo, spread_floor), max(hi, spread_floor)
        acc = c2st_accuracy(real_d[lab], fk, seed=seed) if c2st else None
        mmd2, mmd_p = mmd_rbf(10 * np.log10(np.maximum(rf.seg_psd[:, band], 1e-30)),
                              10 * np.log10(np.maximum(ff.seg_psd[:, band], 1e-30)), seed=seed)
        checks: dict[str, bool | None] = {
            "lsd": bool(lsd <= limit),
            "nearest_class": nearest == lab,
            "envelope": (bool(hit >= cfg.hit_rate) if hit is not None and hit_real is not None
                         and hit_real >= cfg.hit_rate else None),
            "kurtosis": bool(abs(k_f - k_r) <= cfg.kurtosis_rel * abs(k_r)),
            "spread": bool(lo <= ratio <= hi) if np.isfinite(ratio) else None,  # one real segment: no spread
        }
        classes[lab] = ClassFidelity(
            label=lab, n_real=rf.n, n_fake=ff.n, lsd_db=lsd, floor_db=floor, lsd_limit_db=float(limit),
            nearest_class=nearest, nearest_lsd_db=to_classes[nearest], lsd_to_classes=to_classes,
            fault_freq_hz=fc, envelope_hit_rate=hit, envelope_hit_rate_real=hit_real, indicators=ind,
            kurtosis_median=k_f, kurtosis_median_real=k_r, spread_db=s_f, spread_db_real=s_r, spread_ratio=ratio,
            spread_ratio_floor=spread_floor, spread_limits=(float(lo), float(hi)),
            c2st_accuracy=acc, mmd2=mmd2, mmd_pvalue=mmd_p, checks=checks,
            passes=all(v for v in checks.values() if v is not None))
    return FidelityReport(fs=fs, segment_length=int(length), channels=int(channels), classes=classes,
                          thresholds=dataclasses.asdict(cfg), meta=dict(meta or {}))


# --------------------------------------------------------------------------------------------------
# Building the sets: real recordings and generated files -> dict label -> (N, C, T)
# --------------------------------------------------------------------------------------------------


def real_segments(recordings: Sequence[Any], length: int, fractions: Sequence[float] = (0.7, 0.0, 0.3),
                  hop: int | None = None, *, test_hop: int | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cut each recording in time (data.split_by_time) and window both ends: (train, test) dicts by label.

    Parameters
    ----------
    recordings : data.Recording objects (meta['label'] names the class; several per label are pooled).
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
    from vibgan import data

    if not recordings:
        raise DataError("real_segments: expected at least one recording")
    train: dict[str, list[np.ndarray]] = {}
    test: dict[str, list[np.ndarray]] = {}
    for rec in recordings:
        parts = data.split_by_time(rec, fractions)
        first, last = parts[0], parts[-1]
        for part, step, out, name in ((first, hop, train, "training"), (last, test_hop, test, "held-out")):
            if part is None:
                continue
            if part.samples < length:
                raise DataError(f"{rec.meta.get('source', rec.label)}: the {name} part has {part.samples} samples, "
                                f"shorter than one segment of {length}; use shorter segments or another split")
            out.setdefault(rec.label, []).append(np.asarray(data.windows(part, length, step), dtype=np.float32))
    return ({k: np.concatenate(v) for k, v in train.items()}, {k: np.concatenate(v) for k, v in test.items()})


def fault_frequencies(recordings: Sequence[Any], geometry: str = "6205") -> dict[str, float | None]:
    """label -> the envelope frequency f_c in Hz (BPFI / BPFO / 2 x BSF, bearing.characteristic_frequency).

    Read from each recording's meta ``fault`` and ``rpm``; None where either is unknown or the class is normal.
    Recordings of one label at different speeds give None (one f_c per class is assumed).
    """
    from vibgan.bearing import FAULTS, characteristic_frequency

    out: dict[str, float | None] = {}
    for rec in recordings:
        fault, rpm = rec.meta.get("fault"), rec.meta.get("rpm")
        fc = None
        if fault in FAULTS and rpm is not None and np.isfinite(float(rpm)) and float(rpm) > 0:
            fc = characteristic_frequency(fault, float(rpm), geometry)
        if rec.label in out:
            prev = out[rec.label]
            fc = fc if prev is not None and fc is not None and abs(prev - fc) < 1e-6 else None
        out[rec.label] = fc
    return out


def group_by_label(signals: np.ndarray, labels: Sequence[str], classes: Sequence[str] | None = None
                   ) -> dict[str, np.ndarray]:
    """Split generated segments (N, C, T) by their (N,) labels: label -> (n, C, T); ``classes`` keeps a subset."""
    x = _as_segments(signals, "signals")
    lab = np.asarray([str(v) for v in labels])
    if lab.shape != (x.shape[0],):
        raise DataError(f"labels: expected {x.shape[0]} labels to match the signals, got shape {lab.shape}")
    names = list(dict.fromkeys(lab.tolist())) if classes is None else [str(c) for c in classes]
    missing = [c for c in names if not np.any(lab == c)]
    if missing:
        raise DataError(f"labels: no generated segment labelled {missing}; found {sorted(set(lab.tolist()))}")
    return {c: x[lab == c] for c in names}


# --------------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg): one function each, each returns the saved path
# --------------------------------------------------------------------------------------------------

_REAL = "#1f77b4"
_FAKE = "#d95f02"
_NAMES = ("real (held-out)", "generated")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _pick(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(x) <= n:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]


def _plot_classes(real: Sets, fake: Sets, classes: Sequence[str] | None) -> list[str]:
    names = list(fake) if classes is None else [str(c) for c in classes]
    return [c for c in names if c in real and c in fake]


def _grid(plt, n: int, ncols: int, w: float, h: float):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _figure_legend(fig, axes) -> None:
    """One legend for the whole figure (per-panel legends hide data), from the first panel's lines."""
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, len(handles)), fontsize=9, frameon=False)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def _empty(path: str | Path, text: str) -> Path:
    fig, ax = _plt().subplots(figsize=(6, 1.5))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return _save(fig, path)


def plot_mean_psd(real: Sets, fake: Sets, fs: float, path: str | Path, *, classes: Sequence[str] | None = None,
                  max_segments: int = 256, seed: int = 0, log_freq: bool = False,
                  names: tuple[str, str] = _NAMES, units: str = "g") -> Path:
    """Mean Welch PSD (dB re 1 unit^2/Hz) of real vs generated per class, 10-90 % band of the segment PSDs."""
    plt = _plt()
    labels = _plot_classes(real, fake, classes)
    if not labels:
        return _empty(path, "no class in both sets")
    fig, axes = _grid(plt, len(labels), 2, 6.2, 2.9)
    for ax, lab in zip(axes, labels, strict=False):
        for x, color, who in ((real[lab], _REAL, names[0]), (fake[lab], _FAKE, names[1])):
            seg = _as_segments(_pick(np.asarray(x), max_segments, seed), who)
            f, p = spectral.psd(seg, fs)
            p = p.mean(axis=1)  # (N, F) channel average
            keep = f > 0
            db = 10 * np.log10(np.maximum(p[:, keep], 1e-30))
            lo, hi = np.percentile(db, [10, 90], axis=0)
            mean_db = 10 * np.log10(np.maximum(p[:, keep].mean(axis=0), 1e-30))
            fk = f[keep] / 1000.0
            ax.fill_between(fk, lo, hi, color=color, alpha=0.2, lw=0)
            ax.plot(fk, mean_db, color=color, lw=1.3, label=who)
        ax.axvspan(spectral.IN_BAND * fs / 1000.0, fs / 2000.0, color="0.88", zorder=0)
        ax.set_title(f"{lab}  (n = {len(real[lab])} / {len(fake[lab])})", fontsize=10)
        ax.set_xlim((fk[0] if log_freq else 0.0), fs / 2000.0)
        if log_freq:
            ax.set_xscale("log")
        ax.set_xlabel("frequency (kHz)")
        ax.set_ylabel(f"PSD (dB re 1 {units}²/Hz)")
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    fig.suptitle(f"Mean power spectral density: {names[0]} vs {names[1]}\n(shaded: 10-90 % of segments; "
                 "grey: above 0.45 fs, not scored)", fontsize=11)
    return _save(fig, path)


def plot_envelope_spectra(real: Sets, fake: Sets, fs: float, fault_freqs: Mapping[str, float | None],
                          path: str | Path, *, classes: Sequence[str] | None = None, harmonics: int = 4,
                          max_segments: int = 64, seed: int = 0, names: tuple[str, str] = _NAMES) -> Path:
    """Mean squared-envelope spectrum (2-5 kHz band) of real vs generated per fault class, f_c harmonics marked."""
    plt = _plt()
    labels = [c for c in _plot_classes(real, fake, classes) if fault_freqs.get(c)]
    if not labels:
        return _empty(path, "no class with a known fault frequency")
    fig, axes = _grid(plt, len(labels), 2, 6.2, 2.9)
    for ax, lab in zip(axes, labels, strict=False):
        fc = float(fault_freqs[lab])
        fmax = (harmonics + 0.6) * fc
        for x, color, who in ((real[lab], _REAL, names[0]), (fake[lab], _FAKE, names[1])):
            seg = _as_segments(_pick(np.asarray(x), max_segments, seed), who)
            f, e = spectral.envelope_spectrum(seg, fs, fmax=fmax)
            m = e.reshape(-1, e.shape[-1]).mean(axis=0)
            ax.plot(f, m / max(m[f >= 5].max(), 1e-30), color=color, lw=1.0, label=who, alpha=0.9)
        for h in range(1, harmonics + 1):
            ax.axvline(h * fc, color="0.3", ls="--", lw=0.8, zorder=0)
            ax.text(h * fc, 1.01, f"{h}×", ha="center", va="bottom", fontsize=8, color="0.3",
                    transform=ax.get_xaxis_transform())
        ax.set_xlim(0, fmax)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{lab}: f_c = {fc:.1f} Hz", pad=14, fontsize=10)
        ax.set_xlabel("envelope frequency (Hz)")
        ax.set_ylabel("magnitude (norm. to max)")
        ax.grid(alpha=0.3)
    _figure_legend(fig, axes)
    fig.suptitle("Squared-envelope spectra (band-pass 2-5 kHz), mean over segments, each normalised to its "
                 "maximum;\ndashed: the fault frequency f_c (BPFI inner, BPFO outer, 2 x BSF ball) and harmonics",
                 fontsize=11)
    return _save(fig, path)


def plot_waveforms(real: Sets, fake: Sets, fs: float, path: str | Path, *, classes: Sequence[str] | None = None,
                   seed: int = 0, units: str = "g", channel: int = 0,
                   names: tuple[str, str] = ("real", "generated")) -> Path:
    """One real and one generated segment per class (channel ``channel``), same vertical scale per row."""
    plt = _plt()
    labels = _plot_classes(real, fake, classes)
    if not labels:
        return _empty(path, "no class in both sets")
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(labels), 2, figsize=(12, 1.7 * len(labels) + 0.6), squeeze=False, sharex=True,
                             layout="constrained")
    for row, lab in enumerate(labels):
        xr = _as_segments(real[lab], "real")[rng.integers(len(real[lab])), channel]
        xf = _as_segments(fake[lab], "fake")[rng.integers(len(fake[lab])), channel]
        lim = 1.05 * max(np.abs(xr).max(), np.abs(xf).max(), 1e-12)
        t = np.arange(xr.shape[-1]) / fs * 1000.0
        for col, (x, color, who) in enumerate(((xr, _REAL, names[0]), (xf, _FAKE, names[1]))):
            ax = axes[row, col]
            ax.plot(t, x, color=color, lw=0.5)
            ax.set_ylim(-lim, lim)
            ax.set_xlim(0, t[-1])
            ax.grid(alpha=0.3)
            ax.set_title(f"{lab}: {who}", fontsize=9, loc="left", pad=2)
            if col == 0:
                ax.set_ylabel(f"accel. ({units})")
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    fig.suptitle(f"Example segments: {names[0]} (left) vs {names[1]} (right)", fontsize=11)
    return _save(fig, path)


def plot_indicators(real: Sets, fake: Sets, path: str | Path, *, classes: Sequence[str] | None = None,
                    units: str = "g", names: tuple[str, str] = _NAMES) -> Path:
    """Distributions of kurtosis and RMS per class, real vs generated (box: quartiles, whiskers 5-95 %)."""
    plt = _plt()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    labels = _plot_classes(real, fake, classes)
    if not labels:
        return _empty(path, "no class in both sets")
    fig, axes = plt.subplots(2, 1, figsize=(max(7.0, 1.05 * len(labels) + 2), 7.0), layout="constrained")
    for ax, key, ylabel, logy in ((axes[0], "kurtosis", "kurtosis (3 = Gaussian)", True),
                                  (axes[1], "rms", f"RMS ({units})", False)):
        data_r = [spectral.indicators(np.asarray(real[c]))[key].ravel() for c in labels]
        data_f = [spectral.indicators(np.asarray(fake[c]))[key].ravel() for c in labels]
        pos = np.arange(len(labels))
        for d, off, color, who in ((data_r, -0.2, _REAL, names[0]), (data_f, 0.2, _FAKE, names[1])):
            bp = ax.boxplot(d, positions=pos + off, widths=0.35, whis=(5, 95), showfliers=False, patch_artist=True)
            for b in bp["boxes"]:
                b.set(facecolor=color, alpha=0.45, edgecolor=color)
            for k in ("whiskers", "caps", "medians"):
                for line in bp[k]:
                    line.set(color=color if k != "medians" else "k")
            ax.plot([], [], color=color, lw=6, alpha=0.45, label=who)
        if key == "kurtosis":
            ax.axhline(3.0, color="0.4", ls=":", lw=1)
        ax.set_xticks(pos)
        ax.set_xticklabels(labels)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
            lo_v = min(np.nanmin(v) for v in data_r + data_f)
            hi_v = max(np.nanmax(v) for v in data_r + data_f)
            ticks = [t for t in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500) if 0.8 * lo_v <= t <= 1.25 * hi_v]
            if ticks:
                ax.set_yticks(ticks)
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_title("Condition indicators per segment: kurtosis (impulsiveness) and RMS (energy); "
                      "box: quartiles, whiskers: 5-95 %", fontsize=11)
    axes[1].set_xlabel("class")
    return _save(fig, path)


def plot_spectrograms(real: Sets, fake: Sets, fs: float, path: str | Path, *, classes: Sequence[str] | None = None,
                      seed: int = 0, channel: int = 0, dynamic_db: float = 60.0,
                      names: tuple[str, str] = ("real", "generated")) -> Path:
    """Spectrogram (dB) of one real and one generated segment per class, same colour scale per row."""
    plt = _plt()
    labels = _plot_classes(real, fake, classes)
    if not labels:
        return _empty(path, "no class in both sets")
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(labels), 2, figsize=(11, 1.9 * len(labels) + 0.6), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for row, lab in enumerate(labels):
        segs = [_as_segments(x, "x")[rng.integers(len(x)), channel] for x in (real[lab], fake[lab])]
        specs = [spectral.spectrogram(s, fs) for s in segs]
        vmax = max(10 * np.log10(np.maximum(sx, 1e-30)).max() for _, _, sx in specs)
        im = None
        for col, ((f, t, sx), who) in enumerate(zip(specs, names, strict=True)):
            ax = axes[row, col]
            im = ax.pcolormesh(t * 1000.0, f / 1000.0, 10 * np.log10(np.maximum(sx, 1e-30)), shading="auto",
                               vmin=vmax - dynamic_db, vmax=vmax, cmap="magma", rasterized=True)
            ax.set_title(f"{lab}: {who}", fontsize=9, loc="left", pad=2)
            if col == 0:
                ax.set_ylabel("freq. (kHz)")
        fig.colorbar(im, ax=list(axes[row]), pad=0.01, fraction=0.03, label="dB")
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    fig.suptitle(f"Spectrograms (256-sample Hann, 75 % overlap, dB re 1 unit²/Hz): {names[0]} (left) vs "
                 f"{names[1]} (right)", fontsize=11)
    return _save(fig, path)


def make_plots(real: Sets, fake: Sets, fs: float, out_dir: str | Path, *,
               fault_freqs: Mapping[str, float | None] | None = None, classes: Sequence[str] | None = None,
               units: str = "g", seed: int = 0, names: tuple[str, str] = _NAMES) -> dict[str, Path]:
    """Every plot into ``out_dir``: name -> PNG path (psd, envelope, waveforms, indicators, spectrograms).

    ``names``: how the two sets are called in legends and titles (e.g. the real training part, real-vs-real).
    """
    out = Path(out_dir)
    short = (names[0].split(" (")[0], names[1].split(" (")[0])
    return {
        "psd": plot_mean_psd(real, fake, fs, out / "psd.png", classes=classes, seed=seed, names=names, units=units),
        "envelope": plot_envelope_spectra(real, fake, fs, fault_freqs or {}, out / "envelope.png", classes=classes,
                                          seed=seed, names=names),
        "waveforms": plot_waveforms(real, fake, fs, out / "waveforms.png", classes=classes, seed=seed, units=units,
                                    names=short),
        "indicators": plot_indicators(real, fake, out / "indicators.png", classes=classes, units=units, names=names),
        "spectrograms": plot_spectrograms(real, fake, fs, out / "spectrograms.png", classes=classes, seed=seed,
                                          names=short),
    }


# --------------------------------------------------------------------------------------------------
# Report files
# --------------------------------------------------------------------------------------------------

_PLOT_CAPTIONS = {
    "psd": "Mean power spectral density per class. Lines: mean over segments; shaded: 10-90 % of individual "
           "segments. The curves should lie on top of each other and the bands should be about as wide.",
    "envelope": "Envelope spectra of the fault classes. A bearing defect makes the 2-5 kHz resonance ring at the "
                "defect rate, so the envelope spectrum peaks at the fault frequency f_c and its multiples (dashed).",
    "waveforms": "One real and one generated segment per class, same vertical scale.",
    "indicators": "Per-segment kurtosis (how impulsive: 3 for Gaussian noise, higher with impacts) and RMS "
                  "(vibration energy). Boxes: quartiles; whiskers: 5-95 %.",
    "spectrograms": "Time-frequency energy of one real and one generated segment per class.",
}

_EXPLANATIONS = [
    ("lsd_db", "Log-spectral distance between the mean power spectra of generated and real segments, in dB, over "
     "0 < f <= 0.45 fs (Welch: Hann, 256 samples, 50 % overlap). 0 dB is identical; 1 dB is a 26 % power error on "
     "average. Passes when <= max({lsd_db}, {lsd_floor_factor} x floor)."),
    ("floor_db", "The same distance between the first part (training) and the last part (held out) of the real "
     "recordings: how much two honest samples of reality differ. It sets the tolerance of lsd_db."),
    ("nearest_class", "The real class whose mean spectrum is closest to the generated one. Passes when it is the "
     "class that was asked for: generated inner-race faults must look like inner-race faults, not like another class."),
    ("envelope hit rate", "Fraction of segments whose envelope spectrum (band-pass 2-5 kHz, squared envelope, "
     "65,536-point FFT) has a peak at the fault frequency f_c (+/- 3 %) at least 3 x the median level over 5-500 Hz. "
     "f_c is BPFI (inner race), BPFO (outer race) or 2 x BSF (ball). Judged only where the real rate is >= "
     "{hit_rate}; then the generated rate must be >= {hit_rate}."),
    ("kurtosis", "Median kurtosis of the segments (impulsiveness; 3 for Gaussian noise, 10-20 for strong impacts). "
     "Passes when within {kurtosis_rel_pct} of the real median."),
    ("spread_ratio", "Diversity: mean distance (dB) of each generated segment's spectrum from the generated mean, "
     "divided by the same for real. 1 is ideal; well below 1 means mode collapse (all segments alike), above 1 "
     "means too varied. Passes within {spread_min}-{spread_max}, widened to include the real training/held-out "
     "ratio where the recording itself is non-stationary."),
    ("c2st_accuracy", "Classifier two-sample test: a small 1D convolutional network is trained to tell real from "
     "generated waveforms and scored on segments it never saw. 0.5 is chance (indistinguishable), 1.0 is "
     "trivially different. Reported, not judged: real recordings drift over time, so even real-vs-real can sit "
     "somewhat above 0.5."),
    ("MMD", "Maximum mean discrepancy between the sets of per-segment log spectra (RBF kernel, median bandwidth) "
     "with a permutation p-value: a small p says the spectra differ detectably. Reported, not judged."),
]


def _b64_png(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def report_html(report: FidelityReport, plots: Mapping[str, str | Path] | Sequence[str | Path] | None = None,
                *, title: str = "vibgan fidelity report") -> str:
    """A self-contained HTML page (images embedded as base64): verdict, table, metric explanations, plots."""
    t = report.thresholds
    fmt_t = dict(t, kurtosis_rel_pct=f"{t['kurtosis_rel']:.0%}")
    if plots is None:
        plots = {}
    if not isinstance(plots, Mapping):
        plots = {Path(p).stem: p for p in plots}
    e = html.escape
    n_pass = sum(c.passes for c in report.classes.values())

    def cell(text: str, ok: bool | None) -> str:
        return f'<td class="{ {True: "ok", False: "bad", None: "na"}[ok] }">{e(text)}</td>'

    rows = []
    for lab, c in report.classes.items():
        ck = c.checks
        hit = "-" if c.envelope_hit_rate is None else f"{c.envelope_hit_rate:.2f} / {_fmt(c.envelope_hit_rate_real)}"
        rows.append(
            f"<tr><th>{e(lab)}</th><td>{c.n_real} / {c.n_fake}</td>"
            + cell(f"{c.lsd_db:.2f} (≤ {c.lsd_limit_db:.2f})", ck["lsd"])
            + f"<td>{e(_fmt(c.floor_db))}</td>"
            + cell(f"{c.nearest_class} ({c.nearest_lsd_db:.2f} dB)", ck["nearest_class"])
            + cell(hit, ck["envelope"])
            + cell(f"{c.kurtosis_median:.2f} / {c.kurtosis_median_real:.2f}", ck["kurtosis"])
            + cell(f"{_fmt(c.spread_ratio)} ({c.spread_limits[0]:.2f}-{c.spread_limits[1]:.2f})", ck["spread"])
            + f"<td>{e(_fmt(c.c2st_accuracy))}</td><td>{e(_fmt(c.mmd_pvalue, 3))}</td>"
            + f'<td class="{"ok" if c.passes else "bad"}">{"pass" if c.passes else "FAIL"}</td></tr>')
    expl = "".join(f"<dt>{e(k)}</dt><dd>{e(v.format(**fmt_t))}</dd>" for k, v in _EXPLANATIONS)
    figs = "".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,{_b64_png(Path(p))}">'
        f"<figcaption>{e(_PLOT_CAPTIONS.get(name, name))}</figcaption></figure>"
        for name, p in plots.items() if Path(p).is_file())
    meta = "".join(f"<li><b>{e(str(k))}</b>: {e(json.dumps(v, default=str) if not isinstance(v, str) else v)}</li>"
                   for k, v in report.meta.items())
    color = "#2a7a2a" if report.passed else "#b22"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1250px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
thead th {{ background: #f0f0f0; text-align: center; }}
tbody th {{ text-align: left; }}
td.ok {{ background: #e5f5e0; }} td.bad {{ background: #fcdcdc; font-weight: bold; }} td.na {{ color: #888; }}
.verdict {{ font-size: 1.4em; font-weight: bold; color: {color}; }}
dt {{ font-weight: bold; margin-top: 0.6em; }} figure {{ margin: 2em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>{e(title)}</h1>
<p class="verdict">{"PASS" if report.passed else "FAIL"}: {n_pass} of {len(report.classes)} classes pass every check.</p>
<p>Generated vibration segments are compared, class by class, with real segments held out from training
(sampling rate {report.fs:g} Hz, {report.segment_length} samples = {1000 * report.segment_length / report.fs:.0f} ms
per segment, {report.channels} channel(s)). A class passes when every judged check passes; green cells pass,
red cells fail, grey cells are not judged.</p>
<table><thead><tr><th>class</th><th>segments real / gen.</th><th>spectral distance dB (limit)</th>
<th>floor dB</th><th>nearest real class</th><th>envelope hit rate gen. / real</th><th>kurtosis gen. / real</th>
<th>spread ratio (limits)</th><th>C2ST accuracy</th><th>MMD p</th><th>result</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>What the numbers mean</h2><dl>{expl}</dl>
<h2>Plots</h2>{figs or "<p>No plots.</p>"}
<h2>Provenance</h2><ul>{meta or "<li>none recorded</li>"}</ul>
</body></html>
"""


def write_report(report: FidelityReport, out_dir: str | Path,
                 plots: Mapping[str, str | Path] | Sequence[str | Path] | bool | None = None, *,
                 real: Sets | None = None, fake: Sets | None = None,
                 fault_freqs: Mapping[str, float | None] | None = None, units: str = "g", seed: int = 0,
                 names: tuple[str, str] = _NAMES, title: str = "vibgan fidelity report") -> Path:
    """Write ``report.json``, ``summary.md`` and a self-contained ``report.html`` into ``out_dir``; returns out_dir.

    ``plots``: name -> PNG path (as make_plots returns) or a list of PNG paths to embed; None (or True) with
    ``real`` and ``fake`` given draws every plot into out_dir first (make_plots); False embeds none.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if (plots is None or plots is True) and real is not None and fake is not None:
            plots = make_plots(real, fake, report.fs, out, fault_freqs=fault_freqs, classes=list(report.classes),
                               units=units, seed=seed, names=names)
        elif plots is None or isinstance(plots, bool):
            plots = None
        report.to_json(out / "report.json")
        (out / "summary.md").write_text(f"# {title}\n\n" + report.summary_markdown(), encoding="utf-8")
        (out / "report.html").write_text(report_html(report, plots, title=title), encoding="utf-8")
    except OSError as err:
        raise VibganError(f"{out}: cannot write the report ({err.strerror or err})") from None
    return out
