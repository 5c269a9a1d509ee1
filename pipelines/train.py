#!/usr/bin/env python
"""Train a vibgan generator: configured by a TOML file, resumable, logged to MLflow.

    python pipelines/train.py                                  # the embedded default (simulated bearings)
    python pipelines/train.py --config configs/cwru.toml       # the 10 CWRU classes
    python pipelines/train.py --set train.steps=2000 --resume  # override values, continue a run
    torchrun --nproc_per_node=4 pipelines/train.py --config configs/cwru.toml   # several processes (DDP)

Under torchrun every rank trains on its own shard of the windows with DistributedDataParallel
(NCCL on GPUs, gloo on the CPU); train.batch_size is per rank. Rank 0 alone logs, checkpoints,
reports and registers; --resume works the same.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "default.toml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="TOML config file (default: configs/default.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=2000 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUT/checkpoints")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (train.device)")
    p.add_argument("--precision", help="train.precision: fp32, or bf16 / fp16 with autocast on a GPU (checked with the config)")
    p.add_argument("--out", help="output directory (out)")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--steps", type=int, help="train.steps")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else mlflow.db in the project folder or VIBGAN_HOME)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    p.add_argument("--no-report", action="store_true", help="skip the final fidelity report")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vibgan.errors import run_cli

    out: dict = {}
    return run_cli(lambda: run(args, out), lambda: _interrupted(out.get("dir")))


def _interrupted(out: Path | None) -> str:
    """What Ctrl-C leaves: a checkpoint to resume from, or nothing yet."""
    from vibgan.checkpoints import latest_checkpoint

    found = latest_checkpoint(out / "checkpoints") if out is not None else None
    if found is None:
        return "interrupted before the first checkpoint: nothing to resume; rerun without --resume"
    return f"interrupted: the latest checkpoint ({found.name}) is intact; rerun with --resume to continue"


def run(args: argparse.Namespace, out: dict | None = None) -> int:
    from vibgan import distributed
    from vibgan.config import load_config
    from vibgan.device import keep_freed_memory

    keep_freed_memory()  # this process is the job: reuse freed memory instead of faulting in fresh pages

    overrides = list(args.overrides)
    for flag, key in (("device", "train.device"), ("precision", "train.precision"), ("seed", "train.seed"),
                      ("steps", "train.steps")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}")
    if args.out:
        overrides.append(f"out={args.out!r}")
    if args.tracking_uri:
        overrides.append(f"tracking.uri={args.tracking_uri!r}")
    if args.no_tracking:
        overrides.append("tracking.enabled=false")
    cfg = load_config(args.config, overrides)  # every config error surfaces here, before any work
    if out is not None:
        out["dir"] = Path(cfg.out)
    if args.resume:  # before any output, MLflow run or data loading: a resume needs a checkpoint
        from vibgan.checkpoints import require_checkpoint

        require_checkpoint(Path(cfg.out) / "checkpoints")
    ctx = distributed.setup(cfg.train.device)  # joins the process group under torchrun; else a no-op
    try:
        return _run(cfg, args, ctx)
    finally:
        distributed.teardown()


def _run(cfg, args, ctx) -> int:
    from vibgan.datasets import prepare_data
    from vibgan.train import train

    t0 = time.perf_counter()
    data = prepare_data(cfg)
    if not ctx.is_main:  # the other ranks train their shard and leave every output to rank 0
        train(cfg, data, None, resume=args.resume)
        return 0
    print(f"data: {len(data.classes)} classes {data.classes}, fs {data.fs:g} Hz, segments of {data.length} samples, "
          f"{len(data.train_parts)} recordings ({time.perf_counter() - t0:.1f} s)")
    tracker = _tracker(cfg, args, data)
    status = "FAILED"
    try:
        result = train(cfg, data, tracker, resume=args.resume)
        sps = (result.steps / result.wall_s) if result.wall_s > 0 else float("nan")
        print(f"trained {result.steps} steps in {result.wall_s:.0f} s on {result.device} ({sps:.2f} steps/s)")
        if result.ranks > 1:
            print(f"ranks: {result.ranks} processes (DDP), generator weights identical on all "
                  f"(sha256 {result.fingerprints[0]})")
        report = None
        if not args.no_report and cfg.data.source != "sinusoid":
            report = _report(cfg, data, result, tracker)
        elif cfg.data.source == "sinusoid":
            _sinusoid_summary(result)
        _register(cfg, result, report, tracker)
        status = "FINISHED"
    finally:
        tracker.finish(status)
    print(f"outputs: {result.out_dir.resolve()}")
    print(f"  generator:   {result.generator_dir.resolve()}")
    print(f"  checkpoints: {(result.out_dir / 'checkpoints').resolve()}")
    return 0


def _tracker(cfg, args, data):
    from vibgan import tracking

    if not cfg.tracking.enabled:
        return tracking.NullTracker()
    return tracking.start_run(cfg, resume=args.resume, data=data)


def _register(cfg, result, report, tracker) -> None:
    from vibgan.progress import Progress
    from vibgan.registry import log_generator

    if cfg.tracking.enabled:
        info = log_generator(tracker, result, cfg, report, progress=Progress("registration", 4, enabled=cfg.train.progress))
        if info:
            print(f"  registered:  {info}")


def real_side(cfg, data) -> str:
    """One sentence for the report: what the 'real' segments the generator is judged against are."""
    held = f"the last {100 * (1 - cfg.data.train_fraction):.0f} % of each recording, never seen in training"
    if cfg.data.source == "simulated":
        return (f"held-out output of vibgan's bearing simulator ({held}): the default configuration trains and "
                "judges on simulated recordings, not on measurements. Train on your own recordings "
                "(configs/template.toml) to judge against real vibration.")
    return f"recorded vibration from {cfg.data.manifest or cfg.data.path or cfg.data.source} ({held})"


def _report(cfg, data, result, tracker):
    from vibgan.distill import comparison, passing
    from vibgan.progress import Progress
    from vibgan.report import write_report
    from vibgan.validate import score_generator

    t0 = time.perf_counter()
    on = cfg.train.progress
    print(f"report: generating {cfg.validate.n_fake} segments per class and speed to judge against the real "
          "held-out part", file=sys.stderr, flush=True)
    prov = getattr(tracker, "dicts", {}).get("data/provenance.json") or {}
    meta = {"real": real_side(cfg, data), "generator": str(result.generator_dir.resolve()),
            "steps": result.steps, "device": result.device, "data source": cfg.data.source,
            "run id": getattr(tracker, "run_id", None) or "not tracked",
            "segment length": data.length_why or f"{data.length} samples",
            "data provenance": _provenance_line(result.out_dir, prov),
            "conditions": result.generator.coverage_lines()}
    full = None
    if result.full is not None and cfg.distill.compare:  # the teacher on the same real segments, the same checks
        full = score_generator(result.full, data, cfg.validate, cfg.train.seed,
                               progress=Progress("evaluation (full generator)", 1, enabled=on))[0]
        meta["distilled from"] = (f"{result.generator_dir.parent.resolve() / 'generator_full'}: "
                                  f"{passing(full)} (this generator: see below)")
    report, (real, _, fake, fcs) = score_generator(result.generator, data, cfg.validate, cfg.train.seed, meta=meta,
                                                   progress=Progress("evaluation", 1, enabled=on))
    if full is not None:
        print(comparison(full, report))
    out = write_report(report, result.out_dir / "report", real=real, fake=fake, fault_freqs=fcs,
                       progress=Progress("report", 1, enabled=on))
    for path in sorted(Path(out).glob("*")):
        if path.is_file():
            tracker.log_artifact(path, "report")
    tracker.log_metrics({f"fid/final/{k}/lsd_db": v.lsd_db for k, v in report.classes.items()}, step=result.steps)
    print()
    print(report.summary_markdown())
    print(f"fidelity report ({time.perf_counter() - t0:.0f} s): {Path(out).resolve() / 'report.html'}  "
          f"[{'PASS' if report.passed else 'some checks fail'}]")
    return report


def _provenance_line(out: Path, prov: dict) -> str:
    """Where the data provenance was written, and its gist (source, recordings, split)."""
    path = out / "logged" / "data" / "provenance.json"
    if not prov and not path.is_file():
        return "not recorded (run without tracking)"
    recs = prov.get("recordings") or []
    gist = (f"{prov.get('source', '?')} data, {len(recs)} recordings, {len(prov.get('classes') or [])} classes, "
            f"split {(prov.get('split') or {}).get('method', '?')} {(prov.get('split') or {}).get('fractions', '')}")
    return f"{gist}; the full record (files, hashes, conditions) is {path.resolve()} and the run's data/provenance.json"


def _sinusoid_summary(result) -> None:
    from vibgan.synthetic import fit_sinusoid

    y = result.generator.sample("sinusoid", 512, seed=0)[:, 0, :]
    resid = fit_sinusoid(y).residual_rms
    print(f"sinusoid check: {float((resid < 0.1).mean()) * 100:.1f} % of 512 generated curves are clean "
          f"sinusoids (least-squares residual RMS < 0.1)")


if __name__ == "__main__":
    sys.exit(main())
