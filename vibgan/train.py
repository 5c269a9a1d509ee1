"""Adversarial training: the loop of Goodfellow et al.

For each iteration, k discriminator steps on m real and m generated segments, then l generator steps. The
generator's loss is a dict of named terms (``loss/g/adv``, ``loss/g/spectral``, ...; ``losses.G_TERMS``)
whose ``train.lambdas``-weighted sum is the total; that same dict is what gets logged. Everything that
changes during training lives in one ``TrainState`` (``vibgan.checkpoints``) that checkpoints as a whole.
The loop ends at ``train.steps`` or when something sets ``state.stop``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vibgan import distributed, losses
from vibgan.calibrate import calibrate_equalizer, calibrate_variety, evaluate_lsd
from vibgan.checkpoints import (
    TrainState,
    latest_checkpoint,
    load_checkpoint,
    require_checkpoint,
    save_checkpoint,
    set_aside_checkpoints,
)
from vibgan.config import Config, TrainConfig, to_dict
from vibgan.datasets import TrainData
from vibgan.device import PRECISIONS, pick_device
from vibgan.errors import TrainingError
from vibgan.generator import TrainedGenerator, generator_meta
from vibgan.losses import FakeBatch, RealTargets, psd_band
from vibgan.networks import build_models, count_parameters
from vibgan.progress import Progress
from vibgan.report import plot_losses, plot_samples
from vibgan.spectral import IN_BAND
from vibgan.tracking import NullTracker, Tracker


@dataclass
class TrainResult:
    """What a training run leaves behind (``stopped``: ended by ``state.stop``, before ``train.steps``; then
    the generator is the uncalibrated EMA one and nothing but the checkpoint is written)."""

    out_dir: Path
    generator_dir: Path
    generator: TrainedGenerator
    steps: int
    wall_s: float
    history: dict[str, list[float]]
    lsd_db: dict[str, float]
    device: str
    checkpoint: Path | None = None
    artifacts: list[Path] = field(default_factory=list)
    ranks: int = 1  # processes that trained it (torchrun)
    fingerprints: list[str] = field(default_factory=list)  # per rank, of the final generator weights
    stopped: bool = False
    full: TrainedGenerator | None = None  # with [distill]: the full generator that taught ``generator`` (saved beside it)


@dataclass
class Models:
    """The networks and optimisers of one run; ``G_fwd`` and ``D_fwd`` are what the steps call (DDP wrappers
    under torchrun, so gradients are averaged; the modules themselves otherwise)."""

    G: torch.nn.Module
    D: torch.nn.Module
    G_fwd: torch.nn.Module
    D_fwd: torch.nn.Module
    state: TrainState
    amp_dtype: torch.dtype | None

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)


def build(cfg: Config, data: TrainData, device: torch.device, ctx: distributed.Context, rank_seed: int) -> Models:
    """Networks, their EMA copy, optimisers (the generator's own parameter groups) and the training state."""
    t = cfg.train
    G, D = build_models(cfg.model, n_classes=len(data.classes), channels=len(data.channels), length=data.length,
                        fs=data.fs, geometry=data.geometry, faults=data.class_faults(), ref_rpm=data.mean_rpm())
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G_fwd, D_fwd = G, D
    if ctx.enabled:
        ids = [device.index] if device.type == "cuda" else None
        G_fwd, D_fwd = DistributedDataParallel(G, device_ids=ids), DistributedDataParallel(D, device_ids=ids)
    groups = G.parameter_groups(t.lr_g, lr_eq=t.lr_eq, lr_phase=t.lr_phase, lr_impulse=t.lr_impulse)
    opt_g = torch.optim.Adam(groups, lr=t.lr_g, betas=tuple(t.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=tuple(t.betas))
    amp_dtype = PRECISIONS[t.precision]
    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
    gen = torch.Generator(device=device).manual_seed(rank_seed)  # data sampling and latent noise
    return Models(G, D, G_fwd, D_fwd, TrainState(G, D, G_ema, opt_g, opt_d, gen, scaler), amp_dtype)


def resume_from(state: TrainState, ckpt_dir: Path, classes: list[str], ctx: distributed.Context, rank_seed: int) -> Path:
    """Load the newest checkpoint in ``ckpt_dir`` into ``state``; a clear TrainingError when it does not fit."""
    found = require_checkpoint(ckpt_dir)
    sd = load_checkpoint(found)
    saved = json.loads(sd.get("extra", "{}"))
    if saved.get("classes") != classes:
        raise TrainingError(f"--resume: checkpoint {found} was trained on classes {saved.get('classes')}, "
                            f"the data now has {classes}")
    try:
        state.load_state_dict(sd)
    except (RuntimeError, ValueError, KeyError) as e:  # another architecture or optimiser layout
        first = (str(e).splitlines() or [""])[0][:300]
        raise TrainingError(f"--resume: checkpoint {found} does not fit the model this config builds (was the "
                            f"[model] section changed since that run? {type(e).__name__}: {first}); start "
                            "without --resume, or with the config of that run") from None
    if ctx.enabled:
        gens = sd.get("gen_ranks") or []
        if len(gens) == ctx.world:
            state.gen.set_state(gens[ctx.rank])
        else:  # another number of processes: each rank starts a fresh stream from the step
            state.gen.manual_seed(rank_seed + state.step)
    return found


def real_targets(t: TrainConfig, data: TrainData) -> RealTargets:
    """The real training windows' statistics the generator's loss terms match (computed once, on all the data)."""
    if data.envelope_band is None:  # a TrainData built by hand: the band as the config gives it or from the data
        data.set_envelope_band(t.envelope_band, seed=t.seed)
    band = data.envelope_band
    env_band = (float(band[0]), min(float(band[1]), IN_BAND * data.fs))
    if t.lambdas.get("envelope") and env_band[0] >= env_band[1]:
        raise TrainingError(f"train.envelope_band {list(band)} Hz lies above the signal band "
                            f"(fs = {data.fs:g} Hz); lower it or set train.lambdas.envelope = 0")
    db, logk, env, spread = data.group_statistics(  # (G, F) dB, (G,), (G, F_env) dB, (G,) dB
        seed=t.seed + 7, envelope_band=env_band if t.lambdas.get("envelope") else None,
        pairwise_spread=t.spread_pairwise)
    return RealTargets(db, logk, env, spread, psd_band(data.fs, data.length, data.signals.device), env_band, data.fs,
                       t.spread_pairwise)


def d_loss(m: Models, t: TrainConfig, device: torch.device, x_real: torch.Tensor, x_fake: torch.Tensor,
           y: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss on m real and m generated segments (plus the gradient penalty for wgan-gp)."""
    def critic(x, y=y, c=c):
        with m.autocast(device):
            return m.D_fwd(x, y, c)

    d_fn, _ = losses.ADVERSARIAL[t.loss]
    loss = d_fn(critic(x_real), critic(x_fake))
    if t.loss == "wgan-gp":
        loss = loss + t.gp_weight * losses.gradient_penalty(critic, x_real, x_fake, m.state.gen)
    return loss


def g_loss_terms(m: Models, t: TrainConfig, device: torch.device, x_fake: torch.Tensor, y: torch.Tensor,
                 c: torch.Tensor, group: torch.Tensor, real: RealTargets) -> dict[str, torch.Tensor]:
    """The generator's loss terms by log name: ``loss/g/adv`` and each registered term whose weight is not 0."""
    _, g_fn = losses.ADVERSARIAL[t.loss]
    terms = {}
    if t.lambdas.get("adv"):
        with m.autocast(device):
            terms["loss/g/adv"] = g_fn(m.D_fwd(x_fake, y, c))
    fake = FakeBatch(x_fake, group, real.fs)
    for name, term in losses.G_TERMS.items():
        if t.lambdas.get(name):
            terms[f"loss/g/{name}"] = term(fake, real)
    return terms


def weighted_sum(terms: dict[str, torch.Tensor], lambdas: dict[str, float]) -> torch.Tensor:
    """The total loss: each ``loss/g/<name>`` term times ``lambdas[name]``."""
    return sum(lambdas[name.rsplit("/", 1)[-1]] * v for name, v in terms.items())


def apply(loss: torch.Tensor, opt: torch.optim.Optimizer, params, scaler, device: torch.device) -> bool:
    """Backward and step unless the loss or a gradient is not finite; returns whether it stepped."""
    opt.zero_grad(set_to_none=True)
    if not distributed.all_finite(bool(torch.isfinite(loss)), device):  # all ranks skip together
        return False
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(opt)  # the scaler skips steps with inf/nan gradients itself
        scaler.update()
        return True
    loss.backward()
    grads = [p.grad for p in params if p.grad is not None]
    if grads and not bool(torch.isfinite(torch.stack([g.float().abs().sum() for g in grads]).sum())):
        opt.zero_grad(set_to_none=True)
        return False
    opt.step()
    return True


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, decay: float) -> None:
    """EMA of the generator weights (used for sampling); buffers are copied."""
    for pe, p in zip(G_ema.parameters(), G.parameters()):
        pe.lerp_(p, 1 - decay)
    for be, b in zip(G_ema.buffers(), G.buffers()):
        be.copy_(b)


class Rollback:
    """The last good training state (at the latest checkpoint), and going back to it after a non-finite step."""

    def __init__(self, state: TrainState, max_rollbacks: int, ckpt_dir: Path) -> None:
        self.state, self.max_rollbacks, self.ckpt_dir = state, max_rollbacks, ckpt_dir
        self.mark()

    def mark(self) -> None:
        self.good, self.good_step = copy.deepcopy(self.state.state_dict()), self.state.step

    def __call__(self, reason: str, tracker: Tracker) -> None:
        s = self.state
        s.rollbacks += 1
        if s.rollbacks > self.max_rollbacks:
            raise TrainingError(f"training stopped at step {s.step}: {reason}, still after {self.max_rollbacks} "
                                "rollbacks; lower train.lr_g/lr_d or use precision fp32. "
                                f"Checkpoints in {self.ckpt_dir} are intact")
        rng, rollbacks = s.gen.get_state(), s.rollbacks  # fresh batches from here, or the same one would fail again
        s.load_state_dict(self.good)
        s.gen.set_state(rng)
        s.rollbacks = rollbacks
        tracker.log_metrics({"train/rollback": float(rollbacks)}, step=s.step)
        print(f"warning: {reason}; rolled back to step {self.good_step} (rollback {rollbacks}/{self.max_rollbacks})")


def train(cfg: Config, data: TrainData, tracker: Tracker | None = None, *, resume: bool = False,
          hooks: dict | None = None) -> TrainResult:
    """Train a GAN on ``data`` as ``cfg`` says; log through ``tracker``; return the trained generator.

    ``hooks`` (tests, benchmarks, fault injection): ``{"after_step": fn(state)}`` is called after each
    iteration; it may set ``state.stop = True`` to end the loop there (a checkpoint is written at that step).
    """
    ctx = distributed.context()
    tracker = tracker if (tracker is not None and ctx.is_main) else NullTracker()  # rank 0 alone logs
    hooks, t = hooks or {}, cfg.train
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    try:  # an unusable output directory is an error before any work, not a traceback at the first checkpoint
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"output directory {out}: cannot create {ckpt_dir} ({e.strerror or e}); "
                            "choose another --out") from None
    device = distributed.device_for(ctx, pick_device(t.device))
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    data = data.to(device)
    rank_seed = t.seed + 1_000_003 * ctx.rank  # each rank draws its own batches and noise
    m = build(cfg, data, device, ctx, rank_seed)
    G, D, state = m.G, m.D, m.state
    if resume:
        found = resume_from(state, ckpt_dir, data.classes, ctx, rank_seed)
        if ctx.is_main:
            print(f"resumed from {found} at step {state.step}")
    set_aside = not resume and ctx.is_main  # an earlier run's checkpoints move away at this run's first save
    extra = {"config": to_dict(cfg), "classes": data.classes,
             "normalizer": data.normalizer.to_dict() if data.normalizer is not None else None}
    real = real_targets(t, data)
    # the training batches come from this rank's shard; the targets above and evaluation use all the data
    shard = dataclasses.replace(data, shard=(ctx.rank, ctx.world)) if ctx.enabled else data
    eval_seed = t.seed + 12345
    rollback = Rollback(state, t.max_rollbacks, ckpt_dir)
    tracker.log_params({"model/params_g": count_parameters(G), "model/params_d": count_parameters(D),
                        "device": str(device)})
    t0, start_step, B, T = time.perf_counter(), state.step, t.batch_size, data.length
    bar = tqdm(total=t.steps, initial=state.step, disable=not (t.progress and ctx.is_main), desc="train",
               unit="step", dynamic_ncols=True)
    while state.step < t.steps and not state.stop:
        for _ in range(t.d_steps):  # k discriminator steps on m real and m generated segments
            x_real, y, c, _ = shard.sample(B, state.gen)  # (B, C, T), (B,), (B, 2)
            with torch.no_grad(), m.autocast(device):
                x_fake = m.G_fwd(G.sample_latent(B, T, state.gen, device), y, c)  # (B, C, T)
            loss_d = d_loss(m, t, device, x_real, x_fake.float(), y, c)
            ok_d = apply(loss_d, state.opt_d, D.parameters(), state.scaler, device)
        for _ in range(t.g_steps):  # l generator steps
            _, y, c, grp = shard.sample(B, state.gen)
            with m.autocast(device):
                x_fake = m.G_fwd(G.sample_latent(B, T, state.gen, device), y, c)
            terms = g_loss_terms(m, t, device, x_fake.float(), y, c, grp, real)  # spectral maths in float32
            loss_g = weighted_sum(terms, t.lambdas)
            ok_g = apply(loss_g, state.opt_g, G.parameters(), state.scaler, device)
        if not (ok_d and ok_g):
            rollback(f"non-finite loss or gradient (loss/d={loss_d.item():.4g}, loss/g={loss_g.item():.4g})", tracker)
            continue
        update_ema(state.G_ema, G, min(t.ema_decay, (1 + state.step) / (10 + state.step)))
        state.step += 1
        last = state.step == t.steps

        if state.step % t.log_every == 0 or last:
            scalars = {"loss/d": loss_d.item(), "loss/g": loss_g.item(), **{k: v.item() for k, v in terms.items()}}
            for name, v in scalars.items():
                state.history.setdefault(name, []).append(v)
            state.history.setdefault("step", []).append(state.step)
            tracker.log_metrics(scalars, step=state.step)
            bar.set_postfix({"d": f"{scalars['loss/d']:.3f}", "g": f"{scalars['loss/g']:.3f}"})
        g_eval = state.G_ema
        if ctx.is_main and (state.step % t.eval_every == 0 or last):
            g_eval = copy.deepcopy(state.G_ema)
            calibrate_equalizer(g_eval, data, eval_seed)  # what export would produce at this step
            lsd = evaluate_lsd(g_eval, data, real.db, real.band, eval_seed)
            tracker.log_metrics({f"fid/lsd_db/{k}": v for k, v in lsd.items()} | {"fid/lsd_db_max": max(lsd.values())},
                                step=state.step)
            for name, v in (("eval_step", state.step), ("lsd_db_max", max(lsd.values())),
                            ("wall_s", time.perf_counter() - t0)):
                state.history.setdefault(name, []).append(v)
        if ctx.is_main and (state.step % t.sample_every == 0 or last):
            png = plot_samples(g_eval, data, out / "samples" / f"step_{state.step:08d}.png", eval_seed, state.step)
            tracker.log_artifact(png, "samples")
        bar.update(1)
        if "after_step" in hooks:
            hooks["after_step"](state)
        if state.step % t.checkpoint_every == 0 or last or state.stop:
            rank_gens = distributed.gather_objects(state.gen.get_state()) if ctx.enabled else None
            if ctx.is_main:  # rank 0 alone writes
                if set_aside and (moved := set_aside_checkpoints(ckpt_dir)) is not None:
                    print(f"{ckpt_dir} held an earlier run's checkpoints: moved to {moved} (to continue that run "
                          f"instead, move them back into {ckpt_dir} and start with --resume)")
                set_aside = False
                save_checkpoint(state, ckpt_dir, extra, t.keep_checkpoints, rank_gens)
            rollback.mark()
    bar.close()
    wall = time.perf_counter() - t0
    return finish(cfg, data, m, tracker, ctx, real, wall=wall, steps_run=state.step - start_step, device=device)


def finish(cfg: Config, data: TrainData, m: Models, tracker: Tracker, ctx: distributed.Context, real: RealTargets,
           *, wall: float, steps_run: int, device: torch.device) -> TrainResult:
    """After the loop: check the ranks agree, calibrate the EMA generator on the training part, save it, plot."""
    state, out, eval_seed = m.state, Path(cfg.out), cfg.train.seed + 12345
    ckpt_dir = out / "checkpoints"
    if state.stop:
        trained = TrainedGenerator(copy.deepcopy(state.G_ema).cpu(), data.normalizer, generator_meta(cfg, data))
        return TrainResult(out, out / "generator", trained, state.step, wall, state.history, {}, str(device),
                           latest_checkpoint(ckpt_dir), [], ctx.world, [], stopped=True)
    fingerprints = distributed.gather_objects(distributed.fingerprint(state.G_ema))  # one per rank
    if len(set(fingerprints)) > 1:
        raise TrainingError(f"the {ctx.world} ranks ended with different generator weights ({fingerprints}); "
                            "this is a bug: please report it with the config")
    g_final = copy.deepcopy(state.G_ema)
    t_variety = time.perf_counter()
    lines = Progress("calibration", 1, enabled=cfg.train.progress and ctx.is_main)
    variety = calibrate_variety(g_final, data, eval_seed, rounds=cfg.train.calibration_rounds, progress=lines)  # model.variety: per-class knobs, before the EQ
    t_variety = time.perf_counter() - t_variety
    calibrate_equalizer(g_final, data, eval_seed)
    if variety and ctx.is_main:
        tracker.log_params({f"variety/{lab}/{k}": v[k] for lab, v in variety.items()
                            for k in ("temperature", "slip_scale", "segment_gain_db", "impulse_gain") if k in v})
        print(f"variety calibration on the training part ({t_variety:.0f} s): " + ", ".join(
            f"{lab} T={v['temperature']:g} slip x{v['slip_scale']:g} gain={v['segment_gain_db']:g} dB "
            + (f"impacts x{v['impulse_gain']:g} " if "impulse_gain" in v else "")
            + f"(spread x{v['spread_ratio']:.2f}, kurtosis x{v['kurtosis_ratio']:.2f})" for lab, v in variety.items()))
    if not ctx.is_main:  # the other ranks return the same generator, unsaved
        trained = TrainedGenerator(g_final.cpu(), data.normalizer, generator_meta(cfg, data))
        return TrainResult(out, out / "generator", trained, state.step, wall, state.history, {}, str(device),
                           None, [], ctx.world, fingerprints)
    meta, full = generator_meta(cfg, data), None
    stale = out / "generator_full"
    if not cfg.distill.enabled and stale.exists():  # an earlier run's teacher: not this generator's, set aside
        aside = out / f"generator_full.set-aside-{time.strftime('%Y%m%d-%H%M%S')}"
        stale.rename(aside)
        print(f"{stale}: from an earlier run that distilled; this one does not, so it was moved to {aside}")
    if cfg.distill.enabled:  # the calibrated generator teaches a cheaper body; the student is what ships
        full = TrainedGenerator(g_final, data.normalizer, meta)
        student = _distill(cfg, full, tracker, step=state.step)
        g_final, meta = student.model, student.meta
    lsd = evaluate_lsd(g_final, data, real.db, real.band, eval_seed)
    trained = TrainedGenerator(g_final.cpu(), data.normalizer, meta)
    target = out / "generator"
    try:
        gen_dir = trained.save(target)
        if full is not None:
            target = out / "generator_full"
            full = TrainedGenerator(full.model.cpu(), data.normalizer, full.meta)
            full.save(target)
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as SafetensorError
        raise TrainingError(f"generator {target}: could not be written ({e}); the checkpoints in "
                            f"{ckpt_dir} are intact: free space, then rerun with --resume") from None
    curves = plot_losses(state.history, out / "loss_curves.png")
    tracker.log_artifact(curves, "plots")
    tracker.log_metrics({"train/steps_per_s": steps_run / wall if wall > 0 else 0.0, "train/wall_s": wall},
                        step=state.step)
    return TrainResult(out, gen_dir, trained, state.step, wall, state.history, lsd, str(device),
                       latest_checkpoint(ckpt_dir), [curves], ctx.world, fingerprints, full=full)


def _distill(cfg: Config, full: TrainedGenerator, tracker: Tracker, *, step: int) -> TrainedGenerator:
    """``vibgan.distill`` with the [distill] settings; logs what it did (params distill/*, metrics distill/*)."""
    from vibgan.distill import describe, distill

    ds = cfg.distill
    student, info = distill(full, widths=ds.widths or None, kernel=ds.kernel or None, res_blocks=ds.res_blocks or None,
                            steps=ds.steps, batch_size=ds.batch_size, lr=ds.lr, seed=cfg.train.seed,
                            progress=Progress("distillation", ds.steps, enabled=cfg.train.progress))
    print(describe(student, info))
    m = student.meta["model"]
    tracker.log_params({"distill/widths": m["widths"], "distill/kernel": m["kernel"],
                        "distill/res_blocks": m["res_blocks"], "distill/params": info["params_student"]})
    tracker.log_metrics({"distill/waveform_l1_rel": info["final"]["waveform_l1_rel"],
                         "distill/log_stft_l1": info["final"]["log_stft_l1"], "distill/wall_s": info["seconds"]},
                        step=step)
    return student
