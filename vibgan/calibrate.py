"""Post-hoc calibration of a trained generator on the training part only: the per-class equaliser
(closed form) and the per-class variety knobs (``model.variety``), and the spectral distance used to monitor them."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vibgan import losses
from vibgan.datasets import TrainData
from vibgan.generator import GENERATE_CHUNK, generate
from vibgan.losses import PSD_NPERSEG, psd_band
from vibgan.progress import Callback, callback


@torch.no_grad()
def calibrate_equalizer(G: torch.nn.Module, data: TrainData, seed: int, iters: int = 3, n_per_group: int = 32,
                        outputs: Callable[[int], torch.Tensor] | None = None,
                        real_db: torch.Tensor | None = None) -> None:
    """Set the equalizer gains of ``G`` (in place) so each class's mean PSD meets the real one.

    The equalizer is linear, so the correction is closed-form: add (dB_real - dB_generated) / 20 in
    log-amplitude per frequency, a few times because the FIR window smooths the gains. Used on the EMA
    generator, whose body lags behind the live equalizer it was trained with. ``outputs(i)``: G's output for
    iteration i's latent set (``_eq_sets``), e.g. from a ``_Sources`` cache; default: generate it. ``real_db``:
    the target (``_eq_real_db``), when the caller already has it.
    """
    eq = getattr(G, "eq", None)
    if eq is None or data.length < eq.n_fft:
        return
    k = len(data.classes)
    real_db = _eq_real_db(data, seed, eq.n_fft) if real_db is None else real_db
    for i in range(iters):
        if outputs is None:
            latent, y, c = _eq_sets(G, data, seed, iters, n_per_group, only=i)[0]
            x = generate(G, latent, y, c)
        else:
            y, x = _eq_classes(data, n_per_group), outputs(i)
        fake_db, present = losses.class_log_psd(x, y, k, data.fs, nperseg=eq.n_fft)
        step = (real_db - fake_db) * (math.log(10) / 20)
        eq.log_gain[present] += step[present].to(eq.log_gain.dtype)


def _eq_real_db(data: TrainData, seed: int, n_fft: int) -> torch.Tensor:
    """Each class's mean log-PSD of real training windows, the equaliser's target: (K, n_fft // 2 + 1) dB."""
    k = len(data.classes)
    real, ry, _, _ = data.sample(64 * k, torch.Generator(device=data.signals.device).manual_seed(seed + 3))
    return losses.class_log_psd(real, ry, k, data.fs, nperseg=n_fft)[0]


def _eq_classes(data: TrainData, n_per_group: int) -> torch.Tensor:
    """The class of each segment of an equaliser set: ``n_per_group`` per group, group after group."""
    device = data.signals.device
    return data.group_class.to(device)[torch.arange(len(data.group_names), device=device).repeat_interleave(n_per_group)]


def _eq_sets(G: torch.nn.Module, data: TrainData, seed: int, iters: int, n_per_group: int,
             only: int | None = None) -> list[tuple]:
    """calibrate_equalizer's latent sets: ``n_per_group`` segments of every group for each iteration (or only
    iteration ``only``), as (latent, y, cond)."""
    device = data.signals.device
    g = torch.arange(len(data.group_names), device=device).repeat_interleave(n_per_group)
    y, c = data.group_class.to(device)[g], data.group_cond.to(device)[g]
    return [(G.sample_latent(len(g), data.length, torch.Generator(device=device).manual_seed(seed + 10 + i), device),
             y, c) for i in (range(iters) if only is None else [only])]


class _Sources:
    """G's outputs for fixed latent sets, computed from ``G.sources`` (the network's part) kept for the last
    ``keep`` (temperature, slip_scale) settings, and ``G.finish`` (impulse gain, segment gain, equaliser) with
    the current values: a knob trial that leaves temperature and slip alone costs no network pass. The result
    is the one ``generate`` gives, chunk for chunk."""

    def __init__(self, G: torch.nn.Module, sets: list[tuple], keep: int = 3, chunk: int = GENERATE_CHUNK) -> None:
        self.G, self.sets, self.keep, self.chunk = G, sets, keep, chunk
        self.cache: dict[tuple, dict[int, list]] = {}
        self.passes = 0  # network passes over a whole set, for the tests and the benchmark

    def _key(self) -> tuple:
        return (tuple(self.G.temperature.tolist()), tuple(self.G.slip_scale.tolist()))

    def __call__(self, i: int) -> torch.Tensor:
        key = self._key()
        entry = self.cache.pop(key, None) or {}
        self.cache[key] = entry  # most recent last
        while len(self.cache) > self.keep:
            self.cache.pop(next(iter(self.cache)))
        latent, y, c = self.sets[i]
        n = self.chunk
        if i not in entry:
            entry[i] = [self.G.sources(tuple(p[a: a + n] for p in latent), y[a: a + n], c[a: a + n])
                        for a in range(0, len(y), n)]
            self.passes += 1
        return torch.cat([self.G.finish(x, imp, tuple(p[a: a + n] for p in latent), y[a: a + n]).float()
                          for a, (x, imp) in zip(range(0, len(y), n), entry[i])])


#: calibrate_variety's grids: noise temperatures, speed-slip scales, segment-gain sizes in dB (RMS over
#: frequency, per unit of the segment's gain latent) and impulse-path gains (used only with model.impulse_taps)
VARIETY_GRIDS = {"temperature": (0.7, 1.0, 1.4, 2.0, 2.8), "slip_scale": (0.0, 0.25, 0.5, 1.0),
                 "segment_gain_db": (0.0, 0.75, 1.5, 2.25, 3.0), "impulse_gain": (0.7, 1.0, 1.4, 2.0, 2.8)}


def variety_modes(data: TrainData, seed: int, n_fft: int, n_per_class: int = 128) -> torch.Tensor:
    """Each class's main mode of segment-to-segment spectral variation in the real training windows: the first
    principal component of the windows' log-PSDs (``n_fft``-point Welch, in dB, minus their group's mean),
    scaled to an RMS of 1 dB over frequency: (K, n_fft // 2 + 1). A class whose windows differ mostly in the
    level of its fault band (an intermittent ball fault) gets that band."""
    gen = torch.Generator(device=data.signals.device).manual_seed(seed)
    n_groups, k = len(data.group_names), len(data.classes)
    rec, start, y = data.draw(n_per_class * k, gen)
    p = losses.segment_psd(data.gather(rec, start), data.fs, n_fft)  # (N, F)
    g = data.rec_group[rec]
    db = losses.power_db(p)
    mean_db, _ = losses.group_mean(db, g, n_groups)
    # deviations from the group mean (so speeds do not count as variety), in band only: like lsd_db, the mode
    # ignores the anti-alias roll-off, where tiny powers swing by many dB; out of band the mode is zero
    band = psd_band(data.fs, n_fft, p.device, nperseg=n_fft)
    dev = (db - mean_db[g]).double()[:, band]  # (N, F_band)
    modes = torch.zeros(k, p.shape[1], dtype=torch.float64, device=p.device)
    for c in range(k):
        d = dev[y == c]
        if len(d) >= 2:
            v = torch.linalg.svd(d - d.mean(dim=0), full_matrices=False).Vh[0]  # (F_band,), unit norm
            modes[c, band] = v * math.sqrt(len(v))
    return modes.float()


@torch.no_grad()
def local_spread(data: TrainData, seed: int, n_per_half: int = 64) -> torch.Tensor:
    """Per group: the spread (docs/METRICS.md, metric 7: mean lsd_db of a window's PSD from the set's mean PSD) of the
    windows of each half of each recording's training part, from that half's own mean, averaged: (G,) dB.

    The spread of a drifting recording grows with the stretch its windows come from (docs/FIDELITY.md has a
    CWRU example); a half is about as long as a held-out part, so this is the variety a generated set is judged
    against. For a stationary recording it equals the spread of the whole part.
    """
    gen = torch.Generator(device=data.signals.device).manual_seed(seed)
    n_rec, dev = len(data.lengths), data.signals.device
    band = psd_band(data.fs, data.length, dev)
    span = data.lengths - data.length + 1  # (R,) window starts in each training part
    totals = torch.zeros(len(data.group_names), device=dev)
    counts = torch.zeros(len(data.group_names), device=dev)
    for half in (0, 1):
        rec = torch.arange(n_rec, device=dev).repeat_interleave(n_per_half)
        lo, width = span[rec] * half // 2, (span[rec] // 2).clamp(min=1)
        start = lo + (torch.rand(len(rec), generator=gen, device=dev) * width.float()).long()
        p = losses.segment_psd(data.gather(rec, start), data.fs, PSD_NPERSEG)  # (R * n, F)
        mean_db, _ = losses.group_log_psd(p, rec, n_rec)  # (R, F): each recording half's own mean
        d = losses.segment_lsd(p, mean_db, rec, band).view(n_rec, n_per_half).mean(dim=1)  # (R,)
        totals.index_add_(0, data.rec_group, d / math.sqrt(1 - 1 / n_per_half))
        counts.index_add_(0, data.rec_group, torch.ones_like(d))
    return totals / counts.clamp(min=1)


@torch.no_grad()
def calibrate_variety(G: torch.nn.Module, data: TrainData, seed: int, n_per_group: int = 48, rounds: int = 2,
                      grids: dict[str, tuple[float, ...]] | None = None,
                      progress: Callback | None = None) -> dict[str, dict[str, float]]:
    """Fit each class's variety knobs (``model.variety``, in place) on the training part: the noise temperature,
    the speed-slip scale, the size of the segment gain along the class's main mode (``variety_modes``) and,
    with an impulse path, the gain of its deterministic impacts against the network's noise-driven output.

    Targets, per (class, speed) group of the real training windows: the spread at the time scale of a
    held-out part (``local_spread``) and the median kurtosis. Coordinate descent over the
    ``grids`` (default ``VARIETY_GRIDS``), ``rounds`` times: each value of one knob is tried for all classes at
    once (the others at each class's current choice), the equaliser is calibrated for it (``calibrate_equalizer``)
    and each class keeps its best value. The score of a class: squared log-ratios of spread and of median
    kurtosis, the squared lsd from the training PSD in units of 1.5 dB, and small costs for moving away from
    the trained network (so a knob moves only where the data asks for it). The same noise serves every
    candidate. The equaliser is left as it was: calibrate it afterwards. Returns label -> the chosen values and
    the predicted spread and kurtosis ratios and lsd_db. ``progress(done, total, what)`` hears of every trial.
    """
    if not getattr(G, "variety", False):
        return {}
    grids = {**VARIETY_GRIDS, **(grids or {})}
    report = callback(progress)
    device = data.signals.device
    k, n_groups = len(data.classes), len(data.group_names)
    real_db, real_logk, _, _ = data.group_statistics(seed=seed + 1)  # (G, F) dB, (G,)
    real_spread = local_spread(data, seed + 3)  # (G,) dB
    modes = variety_modes(data, seed + 2, G.eq.n_fft).to(device)  # (K, F), 1 dB RMS
    band = psd_band(data.fs, data.length, device)
    g = torch.arange(n_groups, device=device).repeat_interleave(n_per_group)
    y, c = data.group_class.to(device)[g], data.group_cond.to(device)[g]
    group_class = data.group_class.to(device)
    base_gain = G.eq.log_gain.detach().clone()
    db_to_log = math.log(10) / 20

    # the equaliser's three latent sets and the scoring set (the same noise for every candidate), with the
    # network's part of each kept across trials that change only the impulse gain, segment gain or equaliser
    # (the search's equaliser iterations all use one set of 32 per group, a third of calibrate_equalizer's own
    # noise: the candidates are compared on the same footing, and the final equaliser is fitted afterwards)
    eq_sets = _eq_sets(G, data, seed, 1, 32)
    score_set = (G.sample_latent(len(g), data.length, torch.Generator(device=device).manual_seed(seed + 5), device), y, c)
    outputs = _Sources(G, [*eq_sets, score_set])
    eq_target = _eq_real_db(data, seed, G.eq.n_fft)  # the same for every trial

    def evaluate(knobs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        G.eq.log_gain.copy_(base_gain)
        G.temperature.copy_(knobs["temperature"])
        G.slip_scale.copy_(knobs["slip_scale"])
        G.segment_mode.copy_(modes * (knobs["segment_gain_db"] * db_to_log).unsqueeze(-1))
        if "impulse_gain" in knobs:
            G.impulse_gain.copy_(knobs["impulse_gain"])
        calibrate_equalizer(G, data, seed, outputs=lambda i: outputs(0), real_db=eq_target)
        x = outputs(1)  # (G * n, C, T)
        p = losses.segment_psd(x, data.fs, PSD_NPERSEG)
        fake_db, _ = losses.group_log_psd(p, g, n_groups)
        # the distance to a mean of n segments understates the spread by about sqrt(1 - 1/n)
        spread = losses.group_mean(losses.segment_lsd(p, fake_db, g, band).unsqueeze(-1), g, n_groups)[0][:, 0]
        spread = spread / math.sqrt(1 - 1 / n_per_group)
        kurt = losses.kurtosis(x).mean(dim=1).view(n_groups, n_per_group).median(dim=1).values
        lsd = torch.sqrt(((fake_db - real_db)[:, band] ** 2).mean(dim=1))
        r_spread, r_kurt = torch.log(spread / real_spread), torch.log(kurt) - real_logk
        score = r_spread**2 + r_kurt**2 + (lsd / 1.5) ** 2  # (G,)
        score = losses.group_mean(score.unsqueeze(-1), group_class, k)[0][:, 0]  # (K,) mean over a class's groups
        cost = (0.05 * torch.log(knobs["temperature"]) ** 2 + 0.02 * (1 - knobs["slip_scale"]) ** 2
                + 0.01 * knobs["segment_gain_db"] ** 2)
        if "impulse_gain" in knobs:
            cost = cost + 0.05 * torch.log(knobs["impulse_gain"]) ** 2
        return score + cost, {"spread_ratio": r_spread.exp(), "kurtosis_ratio": r_kurt.exp(), "lsd_db": lsd}

    knobs = {"temperature": torch.ones(k, device=device), "slip_scale": torch.ones(k, device=device),
             "segment_gain_db": torch.zeros(k, device=device)}
    if hasattr(G, "impulse_gain"):
        knobs["impulse_gain"] = torch.ones(k, device=device)
    else:
        grids.pop("impulse_gain", None)
    # progress in units of network passes: a trial of temperature or slip runs the network, the others reuse it
    cost = {name: (1.0 if name in ("temperature", "slip_scale") else 0.1) for name in grids}
    total, done = rounds * sum(len(v) * cost[n] for n, v in grids.items()) + 0.1, 0.0
    for r in range(rounds):
        for name, grid in grids.items():
            tried = []
            for v in grid:
                report(done, total, f"variety knobs, round {r + 1}/{rounds}, {name} = {v:g}")
                trial = {**knobs, name: torch.full((k,), float(v), device=device)}
                tried.append(evaluate(trial)[0])
                done += cost[name]
            best = torch.stack(tried).argmin(dim=0)  # (K,)
            knobs[name] = torch.tensor(grid, device=device, dtype=torch.float32)[best]
    report(done, total, "variety knobs, the chosen values")
    _, stats = evaluate(knobs)
    report(total, total, "variety knobs chosen")
    G.eq.log_gain.copy_(base_gain)
    chosen: dict[str, dict[str, float]] = {}
    for ci, label in enumerate(data.classes):
        mine = (data.group_class == ci).nonzero().flatten().tolist()
        chosen[label] = {**{n: float(v[ci]) for n, v in knobs.items()},
                         "spread_ratio": float(stats["spread_ratio"][mine].mean()),
                         "kurtosis_ratio": float(stats["kurtosis_ratio"][mine].mean()),
                         "lsd_db": float(stats["lsd_db"][mine].max())}
    return chosen


@torch.no_grad()
def evaluate_lsd(G: torch.nn.Module, data: TrainData, real_db: torch.Tensor, band: torch.Tensor, seed: int,
                 n_per_group: int = 32) -> dict[str, float]:
    """In-band log-spectral distance (dB) per group between fixed-noise samples and the real training PSD."""
    device = data.signals.device
    gen = torch.Generator(device=device).manual_seed(seed)
    n_groups = len(data.group_names)
    g = torch.arange(n_groups, device=device).repeat_interleave(n_per_group)
    y, c = data.group_class.to(device)[g], data.group_cond.to(device)[g]
    x = generate(G, G.sample_latent(len(g), data.length, gen, device), y, c)
    fake_db, _ = losses.class_log_psd(x, g, n_groups, data.fs, nperseg=PSD_NPERSEG)
    d = torch.sqrt(((fake_db - real_db)[:, band] ** 2).mean(dim=1))
    return {data.group_names[i]: float(d[i]) for i in range(n_groups)}
