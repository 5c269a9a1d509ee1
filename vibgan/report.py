"""Plots (matplotlib, Agg) of real against generated segments, training monitors, and the self-contained HTML report."""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vibgan import spectral
from vibgan.errors import VibganError
from vibgan.progress import Callback, callback
from vibgan.spectral import as_segments, mean_psd
from vibgan.validate import FidelityReport, Sets, format_number

if TYPE_CHECKING:  # type hints only: plotting never imports the training data module
    from vibgan.datasets import TrainData

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
            seg = as_segments(_pick(np.asarray(x), max_segments, seed), who)
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
                          max_segments: int = 64, seed: int = 0, names: tuple[str, str] = _NAMES,
                          band: tuple[float, float] = spectral.ENVELOPE_BAND) -> Path:
    """Mean squared-envelope spectrum (band-pass ``band`` Hz) of real vs generated per fault class, f_c harmonics
    marked."""
    plt = _plt()
    labels = [c for c in _plot_classes(real, fake, classes) if fault_freqs.get(c)]
    if not labels:
        return _empty(path, "no class with a known fault frequency")
    fig, axes = _grid(plt, len(labels), 2, 6.2, 2.9)
    for ax, lab in zip(axes, labels, strict=False):
        fc = float(fault_freqs[lab])
        fmax = (harmonics + 0.6) * fc
        for x, color, who in ((real[lab], _REAL, names[0]), (fake[lab], _FAKE, names[1])):
            seg = as_segments(_pick(np.asarray(x), max_segments, seed), who)
            f, e = spectral.envelope_spectrum(seg, fs, fmax=fmax, band=band)
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
    fig.suptitle(f"Squared-envelope spectra (band-pass {band[0]:.0f}-{band[1]:.0f} Hz), mean over segments, each normalised to its "
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
        xr = as_segments(real[lab], "real")[rng.integers(len(real[lab])), channel]
        xf = as_segments(fake[lab], "fake")[rng.integers(len(fake[lab])), channel]
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
        ax.set_xticklabels(labels, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center")
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
                      names: tuple[str, str] = ("real", "generated"), units: str = "g") -> Path:
    """Spectrogram (dB) of one real and one generated segment per class, same colour scale per row."""
    plt = _plt()
    labels = _plot_classes(real, fake, classes)
    if not labels:
        return _empty(path, "no class in both sets")
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(labels), 2, figsize=(11, 1.9 * len(labels) + 0.6), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for row, lab in enumerate(labels):
        segs = [as_segments(x, "x")[rng.integers(len(x)), channel] for x in (real[lab], fake[lab])]
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
        fig.colorbar(im, ax=list(axes[row]), pad=0.01, fraction=0.03, label=f"dB re 1 {units}²/Hz")
    for ax in axes[-1]:
        ax.set_xlabel("time (ms)")
    fig.suptitle(f"Spectrograms (256-sample Hann, 75 % overlap, dB re 1 {units}²/Hz): {names[0]} (left) vs "
                 f"{names[1]} (right)", fontsize=11)
    return _save(fig, path)


def make_plots(real: Sets, fake: Sets, fs: float, out_dir: str | Path, *,
               fault_freqs: Mapping[str, float | None] | None = None, classes: Sequence[str] | None = None,
               units: str = "g", seed: int = 0, names: tuple[str, str] = _NAMES,
               progress: Callback | None = None,
               envelope_band: tuple[float, float] = spectral.ENVELOPE_BAND) -> dict[str, Path]:
    """Every plot into ``out_dir``: name -> PNG path (psd, envelope, waveforms, indicators, spectrograms).

    ``names``: how the two sets are called in legends and titles (e.g. the real training part, real-vs-real).
    ``progress(done, total, what)`` is told before each plot.
    """
    out = Path(out_dir)
    short = (names[0].split(" (")[0], names[1].split(" (")[0])
    plots = {
        "psd": lambda: plot_mean_psd(real, fake, fs, out / "psd.png", classes=classes, seed=seed, names=names,
                                     units=units),
        "envelope": lambda: plot_envelope_spectra(real, fake, fs, fault_freqs or {}, out / "envelope.png",
                                                  classes=classes, seed=seed, names=names, band=envelope_band),
        "waveforms": lambda: plot_waveforms(real, fake, fs, out / "waveforms.png", classes=classes, seed=seed,
                                            units=units, names=short),
        "indicators": lambda: plot_indicators(real, fake, out / "indicators.png", classes=classes, units=units,
                                              names=names),
        "spectrograms": lambda: plot_spectrograms(real, fake, fs, out / "spectrograms.png", classes=classes,
                                                  seed=seed, units=units, names=short),
    }
    report, done = callback(progress), {}
    for i, (name, draw) in enumerate(plots.items()):
        report(i, len(plots), f"plot {name} ({i + 1}/{len(plots)})")
        done[name] = draw()
    report(len(plots), len(plots), f"{len(plots)} plots drawn")
    return done


_PLOT_CAPTIONS = {
    "psd": "Mean power spectral density per class. Lines: mean over segments; shaded: 10-90 % of individual "
           "segments. The curves should lie on top of each other and the bands should be about as wide.",
    "envelope": "Envelope spectra of the fault classes. A bearing defect makes a structural resonance (the envelope "
                "band) ring at the defect rate, so the envelope spectrum peaks at the fault frequency f_c and its multiples (dashed).",
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
     "class that was asked for: generated inner-race faults must look like inner-race faults, not like another class. "
     "Where the real training part of the class is itself as near another class (within the lsd check's factor x "
     "floor: a healthy machine at two speeds whose spectra differ only at the shaft lines), that class passes too "
     "and is marked with ≈."),
    ("envelope hit rate", "Fraction of segments whose envelope spectrum (band-pass over the envelope band, squared envelope, "
     "65,536-point FFT) has a peak at the fault frequency f_c (+/- 3 %) at least 3 x the median level over 5-500 Hz. "
     "f_c is BPFI (inner race), BPFO (outer race) or 2 x BSF (ball). Judged only where the real rate is >= "
     "{hit_rate}; then the generated rate must be >= {hit_rate}."),
    ("kurtosis", "Median kurtosis of the segments (impulsiveness; 3 for Gaussian noise, 10-20 for strong impacts). "
     "Passes when within {kurtosis_rel_pct} of the real median."),
    ("spread_ratio", "Diversity: mean distance (dB) of each generated segment's spectrum from the generated mean, "
     "divided by the same for real. 1 is ideal; well below 1 means mode collapse (all segments alike), above 1 "
     "means too varied. Passes within {spread_min}-{spread_max}, widened to include the real training/held-out "
     "ratio where the recording itself is non-stationary."),
    ("envelope profile", "The shape of the envelope spectrum over 5-500 Hz (each segment's, relative to its own "
     "median, averaged, in dB): which defect rates modulate the signal. Passes when the generated class's profile "
     "is nearest to its own real class among all real classes; judged only where the real training part's is. "
     "A peak at the class's own rate is not enough when the other classes' rates are as strong."),
    ("c2st_accuracy", "Classifier two-sample test: a small 1D convolutional network is trained to tell real from "
     "generated waveforms and scored on segments it never saw. 0.5 is chance (indistinguishable), 1.0 means "
     "every generated segment can be told from a real one. The real floor is the same test between the real "
     "training part and the held-out part: recordings drift, so reality itself scores above 0.5. Judged pooled "
     "over the classes: the mean accuracy may exceed the mean floor by at most {c2st_margin}. A class that passes "
     "every spectral check but scores near 1.0 still has something a classifier can learn to spot: do not use "
     "its segments where a model could pick up that difference (e.g. a test set for a detector)."),
    ("MMD", "Maximum mean discrepancy between the sets of per-segment log spectra (RBF kernel, median bandwidth) "
     "with a permutation p-value: a small p says the spectra differ detectably. Reported, not judged."),
]


def _c2st_sentence(report: FidelityReport) -> str:
    pooled = report.c2st_pooled
    if pooled is None:
        return "C2ST was not run, so the pooled classifier check is not judged."
    verdict = "passes" if report.c2st_passes else "FAILS"
    return (f"Pooled over the classes, a classifier tells generated from real segments {pooled[0]:.0%} of the time, "
            f"and the real training part from the held-out part {pooled[1]:.0%} of the time: the pooled C2ST check "
            f"{verdict} (limit: floor + {report.thresholds.get('c2st_margin', 0.1):g}).")


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
        hit = "-" if c.envelope_hit_rate is None else f"{c.envelope_hit_rate:.2f} / {format_number(c.envelope_hit_rate_real)}"
        rows.append(
            f"<tr><th>{e(lab)}</th><td>{c.n_real} / {c.n_fake}</td>"
            + cell(f"{c.lsd_db:.2f} (≤ {c.lsd_limit_db:.2f})", ck["lsd"])
            + f"<td>{e(format_number(c.floor_db))}</td>"
            + cell(f"{c.nearest_class} ({c.nearest_lsd_db:.2f} dB)"
                   + (" ≈" if c.nearest_is_twin else ""), ck["nearest_class"])
            + cell(hit, ck["envelope"])
            + cell(c.envelope_nearest or "-", ck.get("envelope_specificity"))
            + cell(f"{c.kurtosis_median:.2f} / {c.kurtosis_median_real:.2f}", ck["kurtosis"])
            + cell(f"{format_number(c.spread_ratio)} ({c.spread_limits[0]:.2f}-{c.spread_limits[1]:.2f})", ck["spread"])
            + f"<td>{e(format_number(c.c2st_accuracy))} / {e(format_number(c.c2st_floor))}</td>"
            + f"<td>{e(format_number(c.mmd_pvalue, 3))}</td>"
            + f'<td class="{"ok" if c.passes else "bad"}">{"pass" if c.passes else "FAIL"}</td></tr>')
    expl = "".join(f"<dt>{e(k)}</dt><dd>{e(v.format(**fmt_t))}</dd>" for k, v in _EXPLANATIONS)
    figs = "".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,{_b64_png(Path(p))}">'
        f"<figcaption>{e(_PLOT_CAPTIONS.get(name, name))}</figcaption></figure>"
        for name, p in plots.items() if Path(p).is_file())
    meta = "".join(f"<li><b>{e(str(k))}</b>: {e(json.dumps(v, default=str) if not isinstance(v, str) else v)}</li>"
                   for k, v in report.meta.items() if k != "conditions")
    cond = report.meta.get("conditions")
    cond = "".join(f"<li>{e(str(line))}</li>" for line in cond) if isinstance(cond, list) else ""
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
{f"<p><b>What “real” means here:</b> {e(str(report.meta['real']))}</p>" if report.meta.get("real") else ""}
{f"<p><b>Envelope band:</b> {report.envelope_band[0]:.0f}-{report.envelope_band[1]:.0f} Hz, {e(report.band_origin())}. Every envelope metric band-passes the signal there first.</p>" if report.envelope_band else ""}
<table><thead><tr><th>class</th><th>segments real / gen.</th><th>spectral distance dB (limit)</th>
<th>floor dB</th><th>nearest real class</th><th>envelope hit rate gen. / real</th>
<th>nearest envelope profile</th><th>kurtosis gen. / real</th>
<th>spread ratio (limits)</th><th>C2ST accuracy / real floor</th><th>MMD p</th><th>result</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p>{e(_c2st_sentence(report))}</p>
{f"<h2>Conditions: seen and extrapolated</h2><p>The operating conditions (rpm, load) behind this report: where each class was trained, and where it was generated and judged. Output at a condition a class was never trained at is extrapolated; it is judged here only where real recordings exist there.</p><ul>{cond}</ul>" if cond else ""}
<h2>What the numbers mean</h2><dl>{expl}</dl>
<h2>Plots</h2>{figs or "<p>No plots.</p>"}
<h2>Provenance</h2><ul>{meta or "<li>none recorded</li>"}</ul>
</body></html>
"""


def write_report(report: FidelityReport, out_dir: str | Path,
                 plots: Mapping[str, str | Path] | Sequence[str | Path] | bool | None = None, *,
                 real: Sets | None = None, fake: Sets | None = None,
                 fault_freqs: Mapping[str, float | None] | None = None, units: str = "g", seed: int = 0,
                 names: tuple[str, str] = _NAMES, title: str = "vibgan fidelity report",
                 progress: Callback | None = None) -> Path:
    """Write ``report.json``, ``summary.md`` and a self-contained ``report.html`` into ``out_dir``; returns out_dir.

    ``plots``: name -> PNG path (as make_plots returns) or a list of PNG paths to embed; None (or True) with
    ``real`` and ``fake`` given draws every plot into out_dir first (make_plots, told ``progress``); False
    embeds none.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if (plots is None or plots is True) and real is not None and fake is not None:
            plots = make_plots(real, fake, report.fs, out, fault_freqs=fault_freqs, classes=list(report.classes),
                               units=units, seed=seed, names=names, progress=progress,
                               envelope_band=report.envelope_band or spectral.ENVELOPE_BAND)
        elif plots is None or isinstance(plots, bool):
            plots = None
        report.to_json(out / "report.json")
        (out / "summary.md").write_text(f"# {title}\n\n" + report.summary_markdown(), encoding="utf-8")
        (out / "report.html").write_text(report_html(report, plots, title=title), encoding="utf-8")
    except OSError as err:
        raise VibganError(f"{out}: cannot write the report ({err.strerror or err})") from None
    return out


@torch.no_grad()
def plot_samples(G: torch.nn.Module, data: TrainData, path: Path, seed: int, step: int) -> Path:
    """Per class: one generated and one real waveform, and generated vs real mean PSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    device = data.signals.device
    k = len(data.classes)
    gen = torch.Generator(device=device).manual_seed(seed)
    n = 8
    y = torch.arange(k, device=device).repeat_interleave(n)
    conds = data.conditions
    c = torch.tensor([conds[data.classes[i]][0] for i in y.tolist()], dtype=torch.float32, device=device)
    fake = G(G.sample_latent(len(y), data.length, gen, device), y, c).float()
    real, yr, cr, _ = data.sample(n * k * 4, torch.Generator(device=device).manual_seed(seed + 1))
    if data.normalizer is not None:  # with their conditions: per recording, each group has its own units
        fake = data.normalizer.inverse(fake, y.tolist(), conds=c.cpu().numpy())
        real = data.normalizer.inverse(real, yr.tolist(), conds=cr.cpu().numpy())
    fake, real, y, yr = fake.cpu().numpy(), real.cpu().numpy(), y.cpu().numpy(), yr.cpu().numpy()
    t = np.arange(data.length) / data.fs
    fig, axes = plt.subplots(k, 2, figsize=(12, 2.0 * k + 0.8), squeeze=False)
    for i, label in enumerate(data.classes):
        fk, rl = fake[y == i], real[yr == i]
        ax = axes[i, 0]
        if len(rl):
            ax.plot(t, rl[0, 0], lw=0.5, color="0.55", label="real")
        ax.plot(t, fk[0, 0], lw=0.5, color="C3", alpha=0.85, label="generated")
        ax.set_ylabel(f"{label}\n{conds[label][0][0]:g} rpm [{data.units}]")
        ax.legend(loc="upper right", fontsize=7)
        ax = axes[i, 1]
        seglen = min(256, data.length)
        if data.length >= 256:
            f, pf = mean_psd(fk, data.fs)
            if len(rl):
                _, pr = mean_psd(rl, data.fs)
                ax.semilogy(f, pr, color="0.4", lw=1, label="real")
            ax.semilogy(f, pf, color="C3", lw=1, label="generated")
            ax.set_ylabel(f"PSD [{data.units}²/Hz]")
        else:
            ax.plot(np.arange(seglen), fk[:8, 0].T, lw=0.6, color="C3")
            ax.set_ylabel("generated curves")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time [s]")
    axes[-1, 1].set_xlabel("frequency [Hz]")
    fig.suptitle(f"step {step}: generated (EMA) vs real")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_losses(history: dict[str, list[float]], path: Path) -> Path:
    """Loss curves over steps, and the eval log-spectral distance when recorded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    steps = history.get("step", [])
    for name in ["loss/d", *sorted(k for k in history if k.startswith("loss/g/"))]:  # each term of the G loss
        vals = history.get(name, [])
        if vals and any(v != 0 for v in vals):
            axes[0].plot(steps[: len(vals)], vals, label=name, lw=1)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss (symmetric log scale)")
    axes[0].set_yscale("symlog", linthresh=0.1)  # an early spike of 100s must not flatten the rest
    axes[0].legend(fontsize=8)
    axes[0].set_title("training losses")
    if history.get("lsd_db_max"):
        axes[1].plot(history["eval_step"], history["lsd_db_max"], marker="o", lw=1)
        axes[1].axhline(1.5, color="0.5", ls="--", lw=0.8, label="1.5 dB")
        axes[1].set_ylabel("worst-class lsd_db vs training PSD [dB]")
        axes[1].set_yscale("log")
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("step")
    axes[1].set_title("spectral distance (EMA generator)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
