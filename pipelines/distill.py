#!/usr/bin/env python
"""Distil a trained generator into a cheaper one: a narrower body learns the full one's output.

    python pipelines/distill.py --model runs/cwru_fast/generator --widths 32 24 16 --kernel 5 --out runs/cwru_fast/student
    python pipelines/distill.py --model models:/vibgan-sim@champion --widths 32 24 16 --kernel 5 --out student \\
        --config configs/default.toml     # also score both against the real held-out part of the config's data

The student takes the teacher's latent inputs and copies everything outside the body (impulse path, equaliser,
variety knobs), so only the body is learned; no real data is needed for that. `pipelines/train.py` does the same
at the end of training where the config has [distill] enabled = true. Writes a generator directory (the same
format; `generate.py --model OUT` samples from it). Exit status 0 done, 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the teacher: a generator directory or a registered-model URI")
    p.add_argument("--out", required=True, help="directory for the student (created; an existing generator there is "
                   "replaced only once the student is complete)")
    p.add_argument("--widths", type=int, nargs="+", help="the student's channels per rate (default: the teacher's)")
    p.add_argument("--kernel", type=int, help="the student's kernel size, odd (default: the teacher's)")
    p.add_argument("--res-blocks", type=int, nargs="+", help="residual blocks per rate (default: the teacher's)")
    from vibgan.config import DistillConfig

    d = DistillConfig()  # the defaults of a config's [distill]
    p.add_argument("--steps", type=int, default=d.steps, help=f"default {d.steps}")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"default {d.lr:g}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="score the teacher and the student against this config's real data (held-out part)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with --config: override a config value")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ URIs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vibgan.errors import VibganError

    try:
        return _run(args)
    except VibganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from vibgan.config import load_config
    from vibgan.device import keep_freed_memory
    from vibgan.distill import comparison, describe, distill
    from vibgan.errors import ConfigError
    from vibgan.progress import Progress
    from vibgan.registry import load_generator

    keep_freed_memory()
    if args.kernel is not None and (args.kernel < 1 or args.kernel % 2 == 0):
        raise ConfigError(f"--kernel: expected an odd kernel size, got {args.kernel}")
    for flag in ("steps", "batch_size", "lr"):
        if getattr(args, flag) <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')}: expected a positive value, got {getattr(args, flag)}")
    cfg = load_config(args.config, args.overrides) if args.config else None  # config errors before any work
    teacher = load_generator(args.model, tracking_uri=args.tracking_uri)
    student, info = distill(teacher, widths=args.widths, kernel=args.kernel, res_blocks=args.res_blocks,
                            steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                            progress=Progress("distillation", args.steps))
    print(describe(student, info))
    out = student.save(Path(args.out))
    print(f"student: {out.resolve()}")
    if cfg is not None:
        from vibgan.datasets import prepare_data
        from vibgan.validate import score_generator

        data = prepare_data(cfg)
        band = teacher.meta.get("envelope_band")
        if band:  # the band the teacher was trained and judged with
            data.set_envelope_band(band, source="the teacher's metadata (the band it was trained with)", rule=None)
        reports = [score_generator(g, data, cfg.validate, cfg.train.seed)[0] for g in (teacher, student)]
        print(comparison(*reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
