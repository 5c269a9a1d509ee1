"""Distillation of a trained conv generator into a cheaper student (issue 22).

The student is a ``ConvGenerator`` of the same design with a lighter body (narrower levels, a shorter
kernel). Everything outside the body is the teacher's, copied exactly: the class embedding, the impulse
path (its kernels, speed gain and mask), the equaliser and the variety knobs fitted to the real training
part. The student sees the teacher's latent inputs (the same noise shapes: ``noise_dim`` and the hop are
kept) and learns to give the teacher's output for them, sample by sample: an L1 waveform term and a
multi-resolution log-STFT term, on random classes at the conditions the teacher was trained at and at
speeds between them. No real data is needed; the result is judged like any generator, against the real
held-out part (``pipelines/distill.py`` does both).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, replace

import torch

from .config import ModelConfig, dataclass_from_dict
from .errors import ConfigError
from .generator import TrainedGenerator
from .networks import ConvGenerator, build_models

#: STFT sizes of the spectral term (at 12 kHz: 21 ms and 85 ms windows); scaled with fs / 12 kHz
STFT_SIZES = (256, 1024)


def student_config(teacher_cfg: ModelConfig, **changes) -> ModelConfig:
    """The teacher's model config with body changes (widths, kernel, res_blocks). The latent's shape (noise_dim,
    upsample, out_upsample) and everything outside the body must stay, so that the student takes the teacher's
    inputs and its copied parts."""
    fixed = ("noise_dim", "upsample", "out_upsample", "noise", "embed_dim", "phase_inputs", "equalizer", "eq_fft",
             "impulse_taps", "impulse_ms", "jitter_cell_ms", "impulse_trains", "impulse_decay_ms",
             "impulse_speed_exp", "variety", "kind")
    bad = sorted(set(changes) & set(fixed))
    if bad:
        raise ConfigError(f"distill: {', '.join(bad)} cannot differ from the teacher's (the student takes its latent "
                          "inputs and its impulse path, equaliser and knobs); change widths, kernel or res_blocks")
    unknown = sorted(set(changes) - set(ModelConfig.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"distill: unknown model field(s) {', '.join(unknown)}")
    for name in ("widths", "res_blocks"):
        v = changes.get(name)
        if v is not None and (not isinstance(v, (list, tuple)) or any(isinstance(x, bool) or not isinstance(x, int)
                                                                      or x < (1 if name == "widths" else 0) for x in v)):
            raise ConfigError(f"distill: {name} = {v!r}; expected a list of "
                              f"{'positive' if name == 'widths' else 'non-negative'} whole numbers, one per rate")
    k = changes.get("kernel")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
        raise ConfigError(f"distill: kernel = {k!r}; expected an odd kernel size >= 1")
    cfg = replace(teacher_cfg, **changes)
    if len(cfg.widths) != len(teacher_cfg.widths) or len(cfg.res_blocks) != len(cfg.widths):
        raise ConfigError(f"distill: the student needs {len(teacher_cfg.widths)} levels like the teacher "
                          f"(widths and res_blocks of that length), got widths={cfg.widths}, res_blocks={cfg.res_blocks}")
    return cfg


def init_student(teacher: ConvGenerator, student: ConvGenerator) -> list[str]:
    """Copy every teacher tensor whose name and shape the student shares (the parts outside the body, and body
    layers of unchanged shape as a start). Returns the names copied."""
    own = student.state_dict()
    copied = []
    for name, value in teacher.state_dict().items():
        if name in own and own[name].shape == value.shape:
            own[name] = value.clone()
            copied.append(name)
    student.load_state_dict(own)
    return copied


def _frozen(name: str) -> bool:
    """Parts outside the body: kept exactly as the teacher's."""
    return name.startswith(("eq.", "impulse.", "class_embed.")) or name in (
        "temperature", "slip_scale", "segment_mode", "impulse_gain", "ratios")


def _conditions(meta: dict, classes: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, 2) rpm, load_hp: half at a training condition of the segment's class, half at a speed drawn uniformly
    between the data set's lowest and highest (the teacher is asked for those too), at the class's load."""
    table = meta.get("conditions") or {}
    per = [torch.tensor(table.get(c) or [[1797.0, 0.0]], dtype=torch.float32).view(-1, 2) for c in meta["classes"]]
    rows = torch.cat(per)  # every class's conditions, class after class
    count = torch.tensor([len(p) for p in per])
    first = torch.cumsum(count, 0) - count
    k = classes.cpu().long()
    pick = first[k] + (torch.rand(len(k), generator=gen) * count[k]).long().clamp(max=count[k] - 1)
    out = rows[pick].clone()
    lo, hi = float(rows[:, 0].min()), float(rows[:, 0].max())
    if hi > lo:
        spread = torch.rand(len(k), generator=gen) < 0.5
        speed = lo + (hi - lo) * torch.rand(len(k), generator=gen)
        out[:, 0] = torch.where(spread, speed, out[:, 0])
    return out


def _stft_loss(a: torch.Tensor, b: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Mean L1 distance of the log magnitudes (B * C signals) over the STFT sizes."""
    a, b = a.flatten(0, 1), b.flatten(0, 1)
    total = a.new_zeros(())
    for n in sizes:
        win = torch.hann_window(n, device=a.device)
        sa = torch.stft(a, n, n // 4, window=win, return_complex=True).abs()
        sb = torch.stft(b, n, n // 4, window=win, return_complex=True).abs()
        total = total + (torch.log(sa + 1e-5) - torch.log(sb + 1e-5)).abs().mean()
    return total / len(sizes)


def distill(teacher: TrainedGenerator, *, widths: list[int] | None = None, kernel: int | None = None,
            res_blocks: list[int] | None = None, steps: int = 3000, batch_size: int = 32, lr: float = 2e-3,
            seed: int = 0, progress: Callable[[float, float, str], None] | None = None
            ) -> tuple[TrainedGenerator, dict]:
    """Train a student with the given body (None: the teacher's widths, kernel or res_blocks) to give
    ``teacher``'s body output for the same latent inputs. ``progress(done, total, what)`` hears of every step.
    Returns (the student as a TrainedGenerator with the teacher's normaliser and meta, its model config
    replaced and ``meta["distilled_from"]`` added; a summary: parameter counts, final losses, seconds)."""
    model_t = teacher.model
    if not isinstance(model_t, ConvGenerator):
        raise ConfigError(f"distill: the teacher must be a conv1d generator, got {type(model_t).__name__}")
    meta = copy.deepcopy(teacher.meta)
    t_cfg = dataclass_from_dict(ModelConfig, meta["model"], "model")
    changes = {k: v for k, v in (("widths", widths), ("kernel", kernel), ("res_blocks", res_blocks)) if v}
    s_cfg = student_config(t_cfg, **changes)
    device = teacher.device
    student, _ = build_models(s_cfg, n_classes=len(teacher.classes), channels=len(teacher.channels),
                              length=teacher.length, fs=teacher.fs, geometry=meta.get("geometry", "6205"))
    student = student.to(device)
    copied = init_student(model_t, student)
    was_training = model_t.training
    model_t.eval()
    student.train()
    params = [p for n, p in student.named_parameters() if not _frozen(n)]
    for n, p in student.named_parameters():
        p.requires_grad_(not _frozen(n))
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    warm = max(1, steps // 20)  # linear warm-up, then a cosine down to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    gen = torch.Generator().manual_seed(seed)
    scale = max(1, round(teacher.fs / 12000.0))
    sizes = tuple(sorted({min(n * scale, teacher.length) for n in STFT_SIZES}))  # short segments: the segment
    n_classes, length = len(teacher.classes), teacher.length
    t0, wave, spec = time.perf_counter(), torch.zeros(()), torch.zeros(())
    for step in range(1, steps + 1):
        y = torch.randint(n_classes, (batch_size,), generator=gen)
        cond = _conditions(meta, y, gen)
        latent = tuple(t.to(device) for t in model_t.sample_latent(batch_size, length, gen))
        y, cond = y.to(device), cond.to(device)
        with torch.no_grad():
            target = model_t.body_output(latent, y, cond)[0]
        x = student.body_output(latent, y, cond)[0]
        wave = (x - target).abs().mean() / target.abs().mean().clamp_min(1e-8)
        spec = _stft_loss(x, target, sizes)
        opt.zero_grad(set_to_none=True)
        (wave + spec).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if progress is not None and (step % 10 == 0 or step == steps):  # reading the losses syncs a GPU
            progress(step, steps, f"step {step}/{steps}, waveform L1 {float(wave.detach()):.3f} of the signal, "
                     f"log-STFT {float(spec.detach()):.3f}")
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    model_t.train(was_training)
    final = {"waveform_l1_rel": float(wave.detach()), "log_stft_l1": float(spec.detach())}
    meta["model"] = asdict(s_cfg)
    meta["distilled_from"] = {"model": asdict(t_cfg), "steps": steps, "batch_size": batch_size, "lr": lr,
                              "seed": seed, "final": final, "source_uri": meta.pop("source_uri", None),
                              "registry": meta.pop("registry", None)}
    summary = {"copied": len(copied), "params_student": sum(p.numel() for p in student.parameters()),
               "params_teacher": sum(p.numel() for p in model_t.parameters()), "final": final,
               "seconds": time.perf_counter() - t0}
    return TrainedGenerator(student, teacher.normalizer, meta), summary


def describe(student: TrainedGenerator, summary: dict) -> str:
    """The one line that says what ``distill`` made: the student's body, its size against the teacher's, the time
    and the residual (train.py and pipelines/distill.py print it)."""
    m, final = student.meta["model"], summary["final"]
    return (f"distilled into widths {m['widths']}, kernel {m['kernel']}, res_blocks {m['res_blocks']} "
            f"({summary['params_student']:,} parameters against {summary['params_teacher']:,}) in "
            f"{student.meta['distilled_from']['steps']} steps ({summary['seconds']:.0f} s): the student's output "
            f"differs from the full body's by {final['waveform_l1_rel']:.3f} of its mean magnitude (L1), "
            f"{final['log_stft_l1']:.3f} in log-STFT magnitude")


def passing(report) -> str:
    """'6/8 classes pass every check, pooled C2ST 0.75 (floor 0.49)'."""
    n, ok = len(report.classes), sum(c.passes for c in report.classes.values())
    pooled = report.c2st_pooled
    c2st = f", pooled C2ST {pooled[0]:.2f} (floor {pooled[1]:.2f})" if pooled else ""
    return f"{ok}/{n} classes pass every check{c2st}"


def comparison(full, student) -> str:
    """Per class: lsd and the result of the full generator beside the distilled one's (markdown)."""
    def result(c):
        return "pass" if c.passes else "FAIL: " + ", ".join(k for k, v in c.checks.items() if v is False)
    rows = ["| class | lsd dB, full | lsd dB, distilled | full | distilled |", "|---|---|---|---|---|"]
    for label, c in student.classes.items():
        f = full.classes.get(label)
        rows.append(f"| {label} | {f.lsd_db:.2f} | {c.lsd_db:.2f} | {result(f)} | {result(c)} |" if f else
                    f"| {label} | - | {c.lsd_db:.2f} | - | {result(c)} |")
    return (f"distillation: the full generator {passing(full)}; the distilled one {passing(student)}\n"
            + "\n".join(rows))


__all__ = ["comparison", "describe", "distill", "init_student", "passing", "student_config"]
