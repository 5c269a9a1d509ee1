#!/usr/bin/env python
"""Benchmarks of vibgan (the protocols in docs/BENCHMARKS.md): each prints a table, writes JSON and, with --tracking, logs
to MLflow.

    python pipelines/benchmark.py speed                 # steps/s, FLOP/s vs a matmul peak, generation,
                                                        # validation, peak memory; CPU (and CUDA when present)
    python pipelines/benchmark.py augment               # CWRU augmentation: macro-F1 of one 1D CNN, 5 seeds
    python pipelines/benchmark.py fidelity              # train configs/cwru.toml, per-class fidelity, time to target
    python pipelines/benchmark.py transfer              # CWRU 1797 -> 1750 rpm: faults at a condition never recorded
    python pipelines/benchmark.py speed --quick         # tiny settings (the smoke test)
    python pipelines/benchmark.py first-run             # `make train` as a new user runs it: wall time per phase

Common options: --out DIR (default runs/benchmarks; JSON goes to DIR/<benchmark>.json), --tracking [URI]
(log to MLflow: the URI, else MLFLOW_TRACKING_URI, else the project's mlflow.db), --threads N (torch threads; default all
cores), --cwru DIR (default ../shared/data/cwru/1797rpm or $VIBGAN_CWRU_DIR).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: vibgan is importable even without installing
CONFIGS = ROOT / "configs"
DEFAULT_OUT = Path("runs") / "benchmarks"
DEFAULT_CWRU = Path(os.environ.get("VIBGAN_CWRU_DIR", ROOT.parent / "shared" / "data" / "cwru" / "1797rpm"))
REAL_TIME_FS = 12_000.0  # "x real time" is relative to a 12 kHz accelerometer

#: Training cases of `speed`: name -> (config file, overrides). "dense-seed" is the seed GAN exactly as
#: configs/sinusoid.toml has it (64-sample curves, batch 128); "dense-4096" is the same dense networks and
#: loop on vibgan's default data (4,096-sample segments): the seed baseline at vibgan's problem size.
SPEED_CASES: dict[str, tuple[str, list[str]]] = {
    "default": ("default.toml", []),
    "cwru": ("cwru.toml", []),
    "dense-seed": ("sinusoid.toml", []),
    "dense-4096": ("sinusoid.toml", ["data.source='simulated'", "data.segment_length=4096",
                                     "model.out_activation='none'"]),
}

#: generator designs timed by ``generation``: config file and overrides; "sample-wise" runs the impulse path's
#: definition (``ImpulsePath._forward_dense``, every train sample), which is how it ran before 2026-12-03
GEN_DESIGNS: dict[str, tuple[str, list[str]]] = {
    "dense-4096": SPEED_CASES["dense-4096"],
    "cwru-sample-wise": ("cwru.toml", []),
    "cwru": ("cwru.toml", []),
    "cwru-fast": ("cwru_fast.toml", []),
}


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", default=str(DEFAULT_OUT), help="output folder for the JSON (default runs/benchmarks)")
        sp.add_argument("--tracking", nargs="?", const="", default=None, metavar="URI",
                        help="log to MLflow (URI, else MLFLOW_TRACKING_URI, else the project's mlflow.db); default: no tracking")
        sp.add_argument("--experiment", default="vibgan-benchmarks", help="MLflow experiment (default vibgan-benchmarks)")
        sp.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
        sp.add_argument("--cwru", default=str(DEFAULT_CWRU), help="CWRU 0 hp folder (default ../shared/data/cwru/1797rpm)")

    s = sub.add_parser("speed", help="training/generation/validation throughput and peak memory")
    common(s)
    s.add_argument("--cases", nargs="+", default=list(SPEED_CASES), choices=list(SPEED_CASES),
                   help="training cases (default: all; cwru is skipped without the CWRU data)")
    s.add_argument("--steps", type=int, default=20, help="timed training steps per case (default 20)")
    s.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps before them (default 5)")
    s.add_argument("--matmul-n", type=int, default=2048, help="matmul peak: n x n float32 matrices (default 2048)")
    s.add_argument("--gen-n", type=int, default=512, help="segments per generation timing (default 512)")
    s.add_argument("--gen-batch", type=int, nargs="+", default=[64, 256], help="generation batch sizes (default 64 256)")
    s.add_argument("--val-n", type=int, default=10_000, help="generated segments scored by fidelity_report (default 10000)")
    s.add_argument("--mem-n", type=int, nargs="+", default=[2_000, 10_000],
                   help="segments written to HDF5 by pipelines/generate.py, one child process each (default 2000 10000)")
    s.add_argument("--mem-cases", nargs="+", choices=list(SPEED_CASES),
                   help="training cases measured in child processes (default: --cases)")
    s.add_argument("--mem-steps", type=int, default=25, help="training steps in the memory child runs (default 25)")
    s.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    s.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")

    g = sub.add_parser("generation", help="segments/s of each generator design through iter_samples and through "
                       "pipelines/generate.py to HDF5, FLOPs per segment and the matmul peak, in one run")
    common(g)
    g.add_argument("--designs", nargs="+", default=list(GEN_DESIGNS), choices=list(GEN_DESIGNS),
                   help="generator designs (default: all)")
    g.add_argument("--n", type=int, default=1024, help="segments per in-process timing (default 1024)")
    g.add_argument("--batch", type=int, nargs="+", default=[64, 256], help="batch sizes (default 64 256)")
    g.add_argument("--hdf5", type=int, nargs="*", default=[1000, 5000],
                   help="segments written by pipelines/generate.py, one child process each; two sizes give the rate "
                        "without start-up (default 1000 5000; none: skip)")
    g.add_argument("--compile", action="store_true",
                   help="also time each conv design through torch.compile (TrainedGenerator.compile, after its eager "
                        "timings, in the same process) and generate.py --compile to HDF5")
    g.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                   help="eager timings with each number of worker threads (iter_samples(workers=...); default 1 2)")
    g.add_argument("--default-malloc", action="store_true",
                   help="leave glibc's malloc as it is (the in-process timings; generate.py always calls "
                        "vibgan.device.keep_freed_memory)")
    g.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")

    v = sub.add_parser("validation", help="fidelity_report's seconds per 10,000 segments, its parts beside the "
                       "defined formulations (welch, sosfiltfilt, float64 chirp-z) in the same run")
    common(v)
    v.add_argument("--val-n", type=int, default=10_000, help="generated segments scored (default 10000)")
    v.add_argument("--repeats", type=int, default=3, help="repetitions; the table gives each and the best (default 3)")

    a = sub.add_parser("augment", help="CWRU augmentation benchmark (docs/BENCHMARKS.md protocol)")
    common(a)
    a.add_argument("--seeds", type=int, default=5, help="classifier seeds (default 5)")
    a.add_argument("--seconds", type=float, nargs="+", default=[0.5, 1.0], help="seconds S of each fault recording")
    a.add_argument("--gan-steps", type=int, default=1500, help="steps of vibgan's conv GAN per S (default 1500)")
    a.add_argument("--mlp-steps", type=int, default=3000, help="steps of the seed dense GAN per S (default 3000)")
    a.add_argument("--epochs", type=int, default=30, help="classifier epochs (default 30)")
    a.add_argument("--per-class", type=int, default=300,
                   help="training windows per class after augmentation (default 300)")
    a.add_argument("--hop", type=int, default=64, help="hop between real training windows (default 64)")
    a.add_argument("--window", type=int, default=2048, help="window length in samples (default 2048)")
    a.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="what to compare")
    a.add_argument("--gan-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override for vibgan's GAN config (configs/cwru.toml), repeatable")
    a.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")

    tr = sub.add_parser("transfer", help="condition transfer on CWRU: faults at a speed and load where they were never "
                        "recorded, vibgan against real only, classic, speed-resampled real (docs/BENCHMARKS.md)")
    common(tr)
    tr.add_argument("--target-dir", default=str(DEFAULT_CWRU.parent / "1750rpm"),
                    help="recordings at the target condition (default ../shared/data/cwru/1750rpm)")
    tr.add_argument("--data", choices=["cwru", "simulated"], default="cwru",
                    help="cwru: --cwru -> --target-dir; simulated: the physics simulator (vibgan.synthetic, with its "
                         "load effect) at --sim-source and --sim-target, whose own faults there are the ground truth")
    tr.add_argument("--sim-source", nargs=2, type=float, action="append", metavar=("RPM", "HP"),
                    help="simulated source condition, repeatable (default 1797 rpm / 0 hp; protocol 2 adds "
                         "1750 rpm / 2 hp when only one is given)")
    tr.add_argument("--sim-target", nargs=2, type=float, default=[1730.0, 3.0], metavar=("RPM", "HP"),
                    help="simulated target condition (default 1730 rpm, 3 hp: a load CWRU's folders here do not have)")
    tr.add_argument("--protocols", nargs="+", default=None, choices=list(TRANSFER_PROTOCOLS),
                    help="1: partial coverage (some classes recorded at the target); 2: a new condition from several "
                         "(simulated data only); 3: one condition only (default 1 3, simulated 1 2 3)")
    tr.add_argument("--at-target", nargs="+", default=None, metavar="SIZE",
                    help="protocol 1: fault sizes whose classes are recorded at the target too: diameters in mils "
                         "for CWRU (default 7 21), severities for simulated data (default 0.6 1.6)")
    tr.add_argument("--seeds", type=int, default=5, help="classifier seeds (default 5)")
    tr.add_argument("--seconds", type=float, nargs="+", default=[0.5], help="seconds S of each fault recording per condition")
    tr.add_argument("--gan-steps", type=int, default=1500, help="steps of vibgan's conv GAN (default 1500)")
    tr.add_argument("--cycle-steps", type=int, default=1000, help="steps of the CycleGAN baseline (default 1000)")
    tr.add_argument("--epochs", type=int, default=15, help="classifier epochs (default 15)")
    tr.add_argument("--per-class", type=int, default=300, help="training windows per class after augmentation (default 300)")
    tr.add_argument("--hop", type=int, default=64, help="hop between real training windows (default 64)")
    tr.add_argument("--window", type=int, default=2048, help="window length in samples (default 2048)")
    tr.add_argument("--variants", nargs="+", default=list(TRANSFER_VARIANTS), choices=list(TRANSFER_VARIANTS))
    tr.add_argument("--gan-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for vibgan's GAN config (configs/cwru.toml), repeatable")
    tr.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")

    lz = sub.add_parser("lazy", help="peak memory of training from HDF5 files of growing size (data.lazy)")
    common(lz)
    lz.add_argument("--sizes-mb", type=float, nargs="+", default=[256, 1024, 4096],
                    help="HDF5 recordings file sizes in MB (default 256 1024 4096)")
    lz.add_argument("--steps", type=int, default=30, help="training steps per size (default 30)")
    lz.add_argument("--tmp", default=None, help="folder for the HDF5 files (default: a temp folder under --out)")

    ts = sub.add_parser("tracking", help="several training processes logging and registering to one MLflow server at once")
    common(ts)
    ts.add_argument("--uri", required=True, help="tracking server, e.g. http://127.0.0.1:5000 (pipelines/mlflow_server.sh)")
    ts.add_argument("--procs", type=int, default=4, help="concurrent training processes (default 4)")
    ts.add_argument("--steps", type=int, default=40, help="training steps each (default 40)")

    fr = sub.add_parser("first-run", help="pipelines/train.py as `make train` runs it, in a fresh folder and store: "
                        "seconds per phase (setup, training, calibration, evaluation, report, registration)")
    common(fr)
    fr.add_argument("--config", default=str(CONFIGS / "default.toml"), help="TOML config (default configs/default.toml)")
    fr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (repeatable)")

    f = sub.add_parser("fidelity", help="train a config, per-class fidelity report and time to lsd target")
    common(f)
    f.add_argument("--config", default=str(CONFIGS / "cwru.toml"), help="TOML config (default configs/cwru.toml)")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable)")
    f.add_argument("--steps", type=int, help="train.steps")
    f.add_argument("--target-db", type=float, default=1.5, help="monitored lsd target on all classes (default 1.5)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vibgan.errors import run_cli

    command = {"speed": run_speed, "generation": run_generation, "validation": run_validation, "augment": run_augment, "fidelity": run_fidelity,
               "transfer": run_transfer,
               "lazy": run_lazy, "tracking": run_tracking, "first-run": run_first_run}[args.command]
    return run_cli(lambda: command(args))


# --------------------------------------------------------------------------------------------------
# Shared helpers: machine description, JSON, MLflow
# --------------------------------------------------------------------------------------------------
def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": threads,
                            "torch": torch.__version__, "python": platform.python_version(),
                            "platform": platform.platform(), "loadavg_start": _loadavg(), "git_commit": _git_commit()}
    if torch.cuda.is_available():
        info["cuda"] = torch.cuda.get_device_name(0)
    return info


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _numeric_leaves(d: Any, prefix: str = "") -> dict[str, float]:
    """Flatten nested dicts/lists to {'a/b/0': value} for the finite numbers among the leaves."""
    out: dict[str, float] = {}
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for k, v in items:
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)) and math.isfinite(v):
            out[key] = float(v)
        elif isinstance(v, (dict, list)):
            out.update(_numeric_leaves(v, key + "/"))
    return out


def write_json(result: dict, out_dir: str | Path, name: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    from vibgan.files import write_text_atomic

    write_text_atomic(path, json.dumps(result, indent=2, default=_json_default) + "\n")
    print(f"wrote {path.resolve()}")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def open_tracker(args: argparse.Namespace, name: str, cfg=None):
    """An MLflow run named benchmark-<name> when --tracking was given, else a NullTracker."""
    from vibgan import tracking
    from vibgan.config import load_config

    if args.tracking is None:
        return tracking.NullTracker()
    cfg = cfg or load_config(CONFIGS / "default.toml")
    import dataclasses

    cfg = dataclasses.replace(cfg, tracking=dataclasses.replace(
        cfg.tracking, enabled=True, uri=args.tracking, experiment=args.experiment, run_name=f"benchmark-{name}"))
    tracker = tracking.start_run(cfg, out_dir=Path(args.out) / f"mlflow-{name}")
    tracker.set_tags({"vibgan.benchmark": name})
    return tracker


def log_result(tracker, result: dict, name: str, json_path: Path) -> None:
    metrics = {f"bench/{k}": v for k, v in _numeric_leaves(result.get("summary", {})).items()}
    tracker.log_metrics(metrics, step=0)
    tracker.log_params({f"bench.{k}": v for k, v in result.get("settings", {}).items()})
    tracker.log_artifact(json_path, "benchmark")


def _print_table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"  # noqa: E731
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _cwru_dir(args: argparse.Namespace) -> Path | None:
    p = Path(args.cwru)
    return p if p.is_dir() and (any(p.glob("*.npz")) or any(p.glob("*.mat"))) else None


# --------------------------------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------------------------------
def matmul_peak(device: str, n: int = 2048, dtype: str = "fp32", min_time_s: float = 1.0) -> dict[str, float]:
    """FLOP/s of n x n matmuls (2 n^3 FLOPs each) on ``device``: best and median of timed repetitions."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dt)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    rates: list[float] = []
    t_end = time.perf_counter() + min_time_s
    while len(rates) < 5 or time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        sync()
        rates.append(2.0 * n**3 / (time.perf_counter() - t))
        if len(rates) >= 200:
            break
    return {"n": n, "dtype": dtype, "best_flops": max(rates), "median_flops": float(np.median(rates)), "reps": len(rates)}


def time_training(cfg, data, *, warmup: int, steps: int) -> dict[str, Any]:
    """Steps/s of vibgan.train.train on ``data``, timed over ``steps`` steps after ``warmup`` + 1 steps, and the
    model FLOPs of one step counted by FlopCounterMode (the step after the warm-up, excluded from the timing)."""
    import dataclasses

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vibgan.device import pick_device
    from vibgan.networks import build_models, count_parameters
    from vibgan.train import train

    warmup = max(1, warmup)
    steps = max(1, steps)
    total = warmup + 1 + steps + 1
    big = total + 10  # no eval, samples or checkpoints inside the timed window
    t_cfg = dataclasses.replace(cfg.train, steps=total, eval_every=big, sample_every=big, checkpoint_every=big,
                                progress=False)
    device = pick_device(t_cfg.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    counter = FlopCounterMode(display=False)
    marks: dict[str, float] = {}
    inside = [False]

    def hook(state) -> None:
        s = state.step
        if s == warmup:
            sync()
            counter.__enter__()
            inside[0] = True
        elif s == warmup + 1:
            sync()
            counter.__exit__(None, None, None)
            inside[0] = False
            marks["t0"], marks["c0"] = time.perf_counter(), time.process_time()
        elif s == warmup + 1 + steps:
            sync()
            marks["t1"], marks["c1"] = time.perf_counter(), time.process_time()
            state.stop = True  # the loop ends here: no final eval, calibration or saving

    with tempfile.TemporaryDirectory(prefix="vibgan-bench-") as tmp:
        run_cfg = dataclasses.replace(cfg, train=t_cfg, out=tmp)
        t_start = time.perf_counter()
        try:
            train(run_cfg, data, None, hooks={"after_step": hook})
        finally:
            if inside[0]:
                counter.__exit__(None, None, None)
        wall = time.perf_counter() - t_start
    if "t1" not in marks:
        raise RuntimeError("training ended before the timed steps were done")
    sps = steps / (marks["t1"] - marks["t0"])
    # CPU seconds this process got per wall second and thread: well below 1 means the cores were shared
    cpu_share = (marks["c1"] - marks["c0"]) / ((marks["t1"] - marks["t0"]) * torch.get_num_threads())
    flops = int(counter.get_total_flops())
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    G, D = build_models(cfg.model, n_classes=len(data.classes), channels=len(data.channels), length=data.length,
                        fs=data.fs, geometry=data.geometry)
    return {"device": str(device), "precision": t_cfg.precision, "model": cfg.model.kind,
            "batch_size": t_cfg.batch_size, "segment_length": data.length, "classes": len(data.classes),
            "loss": t_cfg.loss, "lambdas": dict(t_cfg.lambdas), "params_g": count_parameters(G),
            "params_d": count_parameters(D), "warmup_steps": warmup, "timed_steps": steps, "steps_per_s": sps,
            "flops_per_step": flops, "flops_by_op": by_op, "achieved_flops": flops * sps, "cpu_share": cpu_share, "wall_s_incl_setup": wall}


def speed_configs(args: argparse.Namespace, cwru: Path | None) -> dict[str, Any]:
    """name -> Config for the requested cases (cwru absent: a skip reason string instead)."""
    from vibgan.config import load_config

    out: dict[str, Any] = {}
    for name in args.cases:
        fname, overrides = SPEED_CASES[name]
        overrides = [*overrides, f"train.threads={args.threads}", "tracking.enabled=false"]
        if name == "cwru":
            if cwru is None:
                out[name] = f"skipped: CWRU data not found at {args.cwru}"
                continue
            overrides.append(f"data.path={str(cwru)!r}")
        out[name] = load_config(CONFIGS / fname, overrides)
    return out


def untrained_generator(cfg, data, seed: int = 0):
    """A TrainedGenerator with freshly initialised weights: generation cost does not depend on training."""
    import torch

    from vibgan.generator import TrainedGenerator, generator_meta
    from vibgan.networks import build_models

    torch.manual_seed(seed)
    G, _ = build_models(cfg.model, n_classes=len(data.classes), channels=len(data.channels), length=data.length,
                        fs=data.fs, geometry=data.geometry)
    return TrainedGenerator(G, data.normalizer, generator_meta(cfg, data))


def time_generation(gen, n: int, batch_size: int, flops_per_segment: float | None = None,
                    workers: int = 1) -> dict[str, float]:
    """Segments/s and x real time of TrainedGenerator.iter_samples for n segments of the last class, and the
    generator's model FLOPs per segment (FlopCounterMode on one warm-up batch, unless given: a compiled
    generator is counted through its eager model, as FlopCounterMode's hooks would make dynamo recompile)."""
    from torch.utils.flop_counter import FlopCounterMode

    label = gen.classes[-1]
    b = min(n, batch_size)
    if flops_per_segment is None:
        counter = FlopCounterMode(display=False)
        with counter:
            for _ in gen.iter_samples(label, b, batch_size=batch_size, seed=1):  # warm-up, counted
                pass
        flops_per_segment = counter.get_total_flops() / b
    else:
        for _ in gen.iter_samples(label, b, batch_size=batch_size, seed=1):  # warm-up
            pass
    t = time.perf_counter()
    done = 0
    for x in gen.iter_samples(label, n, batch_size=batch_size, seed=0, workers=workers):
        done += len(x)
    dt = time.perf_counter() - t
    seg_s = done / dt
    samples_s = seg_s * gen.length * len(gen.channels)
    return {"batch_size": batch_size, "segments": done, "seconds": dt, "segments_per_s": seg_s,
            "samples_per_s": samples_s, "realtime_factor": samples_s / REAL_TIME_FS, "segment_length": gen.length,
            "flops_per_segment": flops_per_segment, "achieved_flops": flops_per_segment * seg_s}


def time_validation(n_fake: int, cwru: Path | None, seed: int = 0) -> dict[str, Any]:
    """Seconds of fidelity_report (C2ST off) for n_fake segments of 4,096 against a few hundred real ones.

    The "generated" segments are real training windows at random shifts with 5 % added noise (the cost of
    the metrics does not depend on where segments come from); classes: the 10 CWRU classes, or 4 simulated
    bearing conditions at 1797 rpm where the CWRU data is absent.
    """
    from vibgan import spectral, validate
    from vibgan.catalog import load_many
    from vibgan.synthetic import simulate_bearing

    T, fs = 4096, 12000.0
    if cwru is not None:
        recs = load_many(cwru, channels=["DE"], fs=12000.0)  # the normal baseline is 48 kHz: resampled
        source = "CWRU 0 hp, 10 classes"
    else:
        recs = [simulate_bearing(f, 1797.0, fs, 12.0, seed=i) for i, f in enumerate(("normal", "inner", "outer", "ball"))]
        source = "simulated bearings at 1797 rpm, 4 classes"
    fs = recs[0].fs
    train, _ = validate.real_segments(recs, T, hop=T // 4)
    _, test = validate.real_segments(recs, T, test_hop=T // 4)  # overlapping held-out windows: a few hundred
    fcs = validate.fault_frequencies(recs)
    rng = np.random.default_rng(seed)
    labels = list(train)
    per = [n_fake // len(labels) + (1 if i < n_fake % len(labels) else 0) for i in range(len(labels))]
    fake = {}
    for lab, n in zip(labels, per):
        base = train[lab]
        idx, shift = rng.integers(len(base), size=n), rng.integers(T, size=n)
        x = np.stack([np.roll(base[i], s, axis=-1) for i, s in zip(idx, shift)])
        x += 0.05 * base.std() * rng.standard_normal(x.shape, dtype=np.float32)
        fake[lab] = x
    n_real = sum(len(v) for v in test.values())
    t = time.perf_counter()
    rep = validate.fidelity_report(test, fake, fs, real_train=train, fault_freqs=fcs, c2st=False, seed=seed)
    dt = time.perf_counter() - t
    band = rep.envelope_band
    t = time.perf_counter()  # the same with the band given: without the kurtogram of the real training part
    validate.fidelity_report(test, fake, fs, real_train=train, fault_freqs=fcs, c2st=False, seed=seed,
                             envelope_band=band)
    dt_band = time.perf_counter() - t
    # the split over the metrics' main costs on every generated segment, each beside the defined formulation
    # (scipy.signal.welch; sosfiltfilt band-pass and float64 chirp-z, hits and profile each from its own envelope)
    # measured in the same run
    allfake = np.concatenate(list(fake.values()))
    fc = next((f for f in fcs.values() if f), 100.0)
    parts = {}
    from scipy import signal as sps

    for name, fn in (
            ("psd", lambda: spectral.psd(allfake, fs)),
            ("psd_scipy_welch", lambda: sps.welch(allfake.astype(np.float64), fs, window="hann", nperseg=256,
                                                  noverlap=128, detrend="constant", scaling="density", axis=-1)),
            ("indicators", lambda: spectral.indicators(allfake)),
            ("envelope_hits_and_profile", lambda: spectral.envelope_hits_and_profile(allfake, fs, fc, band=band)),
            ("envelope_defined", lambda: (spectral.envelope_hits(allfake, fs, fc, band=band),
                                          spectral.envelope_profile(allfake, fs, band=band)))):
        t = time.perf_counter()
        fn()
        parts[name] = time.perf_counter() - t
    n = max(1, sum(per))
    return {"n_fake": int(sum(per)), "n_real": n_real, "classes": len(labels), "segment_length": T, "source": source,
            "seconds": dt, "seconds_per_10000": dt * 10_000 / n, "seconds_band_given": dt_band,
            "seconds_per_10000_band_given": dt_band * 10_000 / n, "envelope_band": list(band), "c2st": False,
            "scaled": sum(per) != 10_000, "parts_s": parts, "spectral_workers": spectral.WORKERS}


#: Runs a Python script and, at exit, writes the peak resident memory of its own address space (VmHWM, KiB).
#: getrusage's ru_maxrss cannot be used for this: on Linux a child inherits the parent's high-water mark
#: through fork/exec, so every child of a 1 GB benchmark process would report >= 1 GB.
_HWM_WRAPPER = """
import atexit, runpy, sys
out = sys.argv[1]
sys.argv = sys.argv[2:]
def _hwm():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    with open(out, "w") as o:
                        o.write(line.split()[1])
    except OSError:
        pass
atexit.register(_hwm)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def peak_rss(script: str | Path, script_args: list[str], env: dict[str, str] | None = None,
             poll_s: float = 0.25) -> dict[str, Any]:
    """Run a Python script in a child process: its peak resident memory in MB (VmHWM of the child's own address
    space, Linux), an RSS trace [[s, MB], ...] sampled every ``poll_s``, wall time, exit code and log tail."""
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as tmp:
        hwm_file = Path(tmp) / "hwm"
        cmd = [sys.executable, "-c", _HWM_WRAPPER, str(hwm_file), str(script), *script_args]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        trace: list[tuple[float, float]] = []
        status_file = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status_file.read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        trace.append((round(time.perf_counter() - t0, 2), int(line.split()[1]) / 1024))
                        break
            except OSError:
                pass
            time.sleep(poll_s)
        wall = time.perf_counter() - t0
        log.seek(0)
        tail = log.read().decode("utf-8", "replace")[-2000:]
        peak = int(hwm_file.read_text()) / 1024 if hwm_file.is_file() else (max(r for _, r in trace) if trace else None)
    return {"cmd": " ".join([Path(script).name, *script_args]), "rc": proc.returncode, "wall_s": wall,
            "peak_rss_mb": peak, "rss_trace_mb": _thin(trace), "log_tail": tail}


def _thin(trace: list[tuple[float, float]], k: int = 12) -> list[list[float]]:
    if len(trace) <= k:
        return [list(p) for p in trace]
    idx = np.linspace(0, len(trace) - 1, k).round().astype(int)
    return [list(trace[i]) for i in idx]


def memory_runs(args: argparse.Namespace, gen, cfgs: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Peak RSS of pipelines/train.py (each config) and of pipelines/generate.py writing n segments to HDF5."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    out: dict[str, Any] = {"training": {}, "generation": []}
    for name, cfg in cfgs.items():
        if isinstance(cfg, str) or name not in (args.mem_cases or args.cases):
            continue
        cfg_file = CONFIGS / SPEED_CASES[name][0]
        cmd = ["--config", str(cfg_file), "--steps", str(args.mem_steps), "--no-tracking", "--no-report", "--out", str(tmp / f"train-{name}"),
               "--set", f"train.threads={args.threads}", "--set", "train.progress=false"]
        for o in SPEED_CASES[name][1]:
            cmd += ["--set", o]
        if name == "cwru":
            cmd += ["--set", f"data.path={str(cfg.data.path)!r}"]
        r = peak_rss(ROOT / "pipelines" / "train.py", cmd, env)
        r["steps"] = args.mem_steps
        print(f"  memory: train {name}: peak RSS {r['peak_rss_mb']:.0f} MB ({r['wall_s']:.0f} s, rc {r['rc']})")
        out["training"][name] = r
    gdir = gen.save(tmp / "generator")
    n_labels = len(gen.classes)
    for n in args.mem_n:
        per = max(1, math.ceil(n / n_labels))
        h5 = tmp / f"gen-{n}.h5"
        cmd = ["--model", str(gdir), "--n", str(per), "--out", str(h5), "--seed", "0", "--no-progress"]
        r = peak_rss(ROOT / "pipelines" / "generate.py", cmd, env)
        r["segments"] = per * n_labels
        r["file_mb"] = h5.stat().st_size / 1024**2 if h5.exists() else None
        h5.unlink(missing_ok=True)
        print(f"  memory: generate {r['segments']} segments to HDF5: peak RSS {r['peak_rss_mb']:.0f} MB "
              f"({r['wall_s']:.0f} s, rc {r['rc']})")
        out["generation"].append(r)
    ok = sorted((g for g in out["generation"] if g["rc"] == 0), key=lambda g: g["segments"])
    if len(ok) >= 2 and ok[-1]["segments"] > ok[0]["segments"] and ok[-1]["wall_s"] > ok[0]["wall_s"]:
        rate = (ok[-1]["segments"] - ok[0]["segments"]) / (ok[-1]["wall_s"] - ok[0]["wall_s"])
        startup = max(0.0, ok[0]["wall_s"] - ok[0]["segments"] / rate)
        out["estimate_1e6"] = {"segments_per_s": rate, "startup_s": startup, "seconds": startup + 1e6 / rate,
                               "hours": (startup + 1e6 / rate) / 3600,
                               "file_gb": 1e6 * gen.length * len(gen.channels) * 4 / 1e9,
                               "peak_rss_mb_max_measured": max(g["peak_rss_mb"] for g in ok),
                               "how": "rate from the difference of the two largest runs (start-up excluded); "
                                      "peak RSS from the runs measured (flat in n: batches stream to the file)"}
    else:
        out["estimate_1e6"] = None  # needs two sizes n
    return out


def run_speed(args: argparse.Namespace) -> int:
    import torch

    from vibgan.datasets import prepare_data

    if args.quick:
        args.steps, args.warmup, args.matmul_n = min(args.steps, 2), 1, min(args.matmul_n, 512)
        args.gen_n, args.gen_batch, args.val_n = min(args.gen_n, 16), [16], min(args.val_n, 100)
        args.mem_n, args.mem_steps = [8], 1
    torch.set_num_threads(max(1, args.threads))
    t_run, c_run = time.perf_counter(), _cpu_s()
    cwru = _cwru_dir(args)
    info = machine(torch.get_num_threads())
    print(f"speed benchmark: {info['cpu']}, {info['cpu_count']} CPU(s), torch {info['torch']} with "
          f"{info['torch_threads']} threads, load average {info['loadavg_start']}"
          + (f", GPU {info['cuda']}" if "cuda" in info else ""))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    min_t = 0.3 if args.quick else 2.0

    peak: dict[str, dict] = {}
    for dev in devices:
        for dt in (["fp32"] if dev == "cpu" else ["fp32", "bf16"]):
            peak[f"{dev}/{dt}"] = matmul_peak(dev, args.matmul_n, dt, min_time_s=min_t)
            print(f"  matmul peak {dev} {dt} ({args.matmul_n}^2): {peak[f'{dev}/{dt}']['best_flops'] / 1e9:.1f} GFLOP/s")

    cfgs = speed_configs(args, cwru)
    training: list[dict] = []
    skipped: dict[str, str] = {}
    data_cache: dict[str, Any] = {}
    import dataclasses

    for name, cfg in cfgs.items():
        if isinstance(cfg, str):
            skipped[name] = cfg
            print(f"  training {name}: {cfg}")
            continue
        data = data_cache[name] = prepare_data(cfg)
        for dev in devices:
            for prec in (["fp32"] if dev == "cpu" else ["fp32", "bf16"]):
                c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=dev, precision=prec))
                r = time_training(c, data, warmup=args.warmup, steps=args.steps)
                pk = peak[f"{dev}/{prec}"]["best_flops"]
                r.update(case=name, config=f"configs/{SPEED_CASES[name][0]}", overrides=SPEED_CASES[name][1],
                         peak_flops=pk, peak_fraction=r["achieved_flops"] / pk)
                training.append(r)
                print(f"  training {name} [{dev} {prec}]: {r['steps_per_s']:.3g} steps/s, "
                      f"{r['flops_per_step'] / 1e9:.3g} GFLOP/step, {r['achieved_flops'] / 1e9:.3g} GFLOP/s = "
                      f"{100 * r['peak_fraction']:.1f} % of the matmul peak")

    # generation and memory use the default config's generator (the CWRU config has the same networks)
    gcfg = load_default(args)
    gdata = data_cache.get("default") or prepare_data(gcfg)
    gen = untrained_generator(gcfg, gdata)
    generation: list[dict] = []
    for dev in devices:
        gen.model.to(dev)
        for bs in args.gen_batch:
            r = time_generation(gen, args.gen_n, bs)
            r["device"] = dev
            r["peak_fraction"] = r["achieved_flops"] / peak[f"{dev}/fp32"]["best_flops"]
            generation.append(r)
            print(f"  generation [{dev}, batch {bs}]: {r['segments_per_s']:.0f} segments/s of {r['segment_length']}, "
                  f"{r['realtime_factor']:.0f}x real time")
    gen.model.to("cpu")

    validation = time_validation(args.val_n, cwru)
    print(f"  validation: {validation['seconds']:.2f} s for {validation['n_fake']} segments "
          f"({validation['seconds_per_10000']:.2f} s per 10,000; {validation['n_real']} real held-out)")

    memory: dict[str, Any] = {}
    if not args.no_memory:
        with tempfile.TemporaryDirectory(prefix="vibgan-bench-mem-", dir=_tmp_parent(args.out)) as tmp:
            memory = memory_runs(args, gen, cfgs, Path(tmp).resolve())

    info["loadavg_end"] = _loadavg()
    info["wall_s"] = time.perf_counter() - t_run
    info["cpu_share"] = (_cpu_s() - c_run) / (info["wall_s"] * torch.get_num_threads())
    result = {"benchmark": "speed", "machine": info, "settings": _settings(args), "matmul_peak": peak,
              "training": training, "skipped": skipped, "generation": generation, "validation": validation,
              "memory": memory}
    result["summary"] = speed_summary(result)
    print_speed(result)
    path = write_json(result, args.out, "speed")
    tracker = open_tracker(args, "speed", gcfg)
    try:
        log_result(tracker, result, "speed", path)
    finally:
        tracker.finish("FINISHED")
    return 0


def design_config(name: str, args: argparse.Namespace, cwru: Path | None):
    """The config of a generation design; without the CWRU data a CWRU design takes the simulated default's
    classes (its cost is the network's: the classes only index weights)."""
    from vibgan.config import load_config

    fname, overrides = GEN_DESIGNS[name]
    overrides = [*overrides, f"train.threads={args.threads}", "tracking.enabled=false"]
    cfg = load_config(CONFIGS / fname, overrides)
    if cfg.data.source == "files":
        if cwru is not None:
            return load_config(CONFIGS / fname, [*overrides, f"data.path={str(cwru)!r}"]), "CWRU 1797 rpm classes"
        return load_config(CONFIGS / fname, [*overrides, "data.source='simulated'"]), "simulated classes (no CWRU)"
    return cfg, cfg.data.source


def run_generation(args: argparse.Namespace) -> int:
    """Generation throughput per design, in one run: iter_samples at each batch size, then generate.py to HDF5."""
    import torch

    from vibgan.datasets import prepare_data
    from vibgan.device import keep_freed_memory

    torch.set_num_threads(args.threads)
    kept = False if args.default_malloc else keep_freed_memory()  # as generate.py does
    if args.quick:
        args.n, args.batch, args.hdf5 = 64, [32], [64, 128]
    cwru = _cwru_dir(args)
    load_before = _loadavg()
    peak = matmul_peak("cpu", 512 if args.quick else 2048, min_time_s=0.3 if args.quick else 2.0)
    print(f"matmul peak (cpu fp32, {args.threads} threads): {peak['best_flops'] / 1e9:.0f} GFLOP/s")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vibgan-bench-gen-", dir=_tmp_parent(args.out)) as tmp:
        for name in args.designs:
            cfg, classes = design_config(name, args, cwru)
            gen = untrained_generator(cfg, prepare_data(cfg))
            impulse = getattr(gen.model, "impulse", None)
            if name.endswith("sample-wise") and impulse is not None:
                impulse._forward = impulse._forward_dense  # the definition, as before the impact-wise path
            row: dict[str, Any] = {"design": name, "config": f"configs/{GEN_DESIGNS[name][0]}", "classes": classes,
                                   "model": {k: getattr(cfg.model, k) for k in ("kind", "widths", "upsample",
                                             "out_upsample", "res_blocks", "noise_dim", "impulse_taps", "impulse_ms",
                                             "jitter_cell_ms", "hidden")},
                                   "parameters": sum(p.numel() for p in gen.model.parameters()), "batches": []}
            modes = [(f"eager, {w} workers" if w > 1 else "eager", w) for w in args.workers]  # (name, workers)
            if args.compile and cfg.model.kind == "conv1d":
                modes.append(("compiled", 1))
            for mode, workers in modes:
                if mode == "compiled":  # after the eager timings: eager kernels slow down once inductor has run
                    torch._dynamo.reset()  # each design compiled afresh, never past dynamo's recompile limit
                    t = time.perf_counter()
                    gen.compile()
                    for bs in args.batch:  # one compilation per batch size, not timed below
                        for _ in gen.iter_samples(gen.classes[-1], bs, batch_size=bs, seed=2):
                            pass
                    row["compile_s"] = time.perf_counter() - t
                    print(f"  {name}: torch.compile of {len(args.batch)} batch sizes: {row['compile_s']:.0f} s")
                for bs in args.batch:
                    eager = [r for r in row["batches"] if r["batch_size"] == bs]
                    r = time_generation(gen, args.n, bs, eager[0]["flops_per_segment"] if eager else None, workers)
                    r["peak_fraction"] = r["achieved_flops"] / peak["best_flops"]
                    r["mode"] = mode
                    row["batches"].append(r)
                    print(f"  {name} [{mode}, batch {bs}]: {r['segments_per_s']:.0f} segments/s of "
                          f"{r['segment_length']}, {r['realtime_factor']:.0f}x real time, "
                          f"{r['flops_per_segment'] / 1e9:.4f} GFLOP/segment, "
                          f"{100 * r['peak_fraction']:.1f} % of the matmul peak")
            if args.hdf5 and not name.endswith("sample-wise"):
                for mode in ["eager", *(["compiled"] if ("compiled", 1) in modes else [])]:  # generate.py's default workers
                    key = "hdf5" if mode == "eager" else "hdf5_compiled"
                    row[key] = hdf5_rate(gen, args.hdf5, Path(tmp) / name, env, compile=mode == "compiled")
                    h = row[key]
                    print(f"  {name}: generate.py{' --compile' if mode == 'compiled' else ''} to HDF5: " + ", ".join(
                        f"{r['segments']} in {r['wall_s']:.1f} s" for r in h["runs"]) +
                        (f"; {h['segments_per_s']:.0f} segments/s without start-up" if h.get("segments_per_s") else "")
                        + (f"; {h['after_first_per_s']:.0f} after the first batch" if h.get("after_first_per_s") else ""))
            rows.append(row)
    result = {"machine": machine(args.threads), "load_average_before": load_before, "load_average_after": _loadavg(),
              "matmul_peak": peak, "keep_freed_memory": kept, "designs": rows}
    table = []
    for row in rows:
        for r in row["batches"]:
            h = row.get("hdf5_compiled" if r.get("mode") == "compiled" else "hdf5") or {}
            table.append([row["design"], r.get("mode", "eager"), r["batch_size"], r["flops_per_segment"] / 1e9,
                          r["segments_per_s"], r["realtime_factor"], 100 * r["peak_fraction"], h.get("segments_per_s"),
                          h.get("after_first_per_s"), h.get("peak_rss_mb")])
    _print_table(["design", "mode", "batch", "GFLOP/segment", "segments/s", "x real time (12 kHz)", "% matmul peak",
                  "HDF5 segments/s", "HDF5 after 1st batch", "HDF5 peak RSS MB"], table)
    print(f"load average before {load_before}, after {result['load_average_after']}")
    path = write_json(result, args.out, "generation")
    tracker = open_tracker(args, "generation")
    try:
        log_result(tracker, result, "generation", path)
    finally:
        tracker.finish("FINISHED")
    return 0


def hdf5_rate(gen, sizes: list[int], tmp: Path, env: dict[str, str], compile: bool = False) -> dict[str, Any]:
    """pipelines/generate.py writing each number of segments (spread over the classes) to HDF5, in a child
    process each: wall time and peak RSS; with two sizes, the rate from their difference (start-up, and with
    ``compile`` the compilation, excluded)."""
    gdir = tmp / "generator"
    if not gdir.is_dir():
        gen.save(gdir)
    runs = []
    for n in sizes:
        per = max(1, math.ceil(n / len(gen.classes)))
        h5 = tmp / f"gen-{n}.h5"
        cmd = ["--model", str(gdir), "--n", str(per), "--out", str(h5), "--seed", "0", "--no-progress",
               *(["--compile"] if compile else [])]
        r = peak_rss(ROOT / "pipelines" / "generate.py", cmd, env)
        r["segments"] = per * len(gen.classes)
        m = re.search(r"(\d+) segments/s after the first batch", r["log_tail"])  # generate.py's own steady rate
        r["after_first_per_s"] = float(m.group(1)) if m else None
        h5.unlink(missing_ok=True)
        runs.append(r)
    out: dict[str, Any] = {"runs": runs, "peak_rss_mb": max((r["peak_rss_mb"] or 0) for r in runs)}
    ok = sorted((r for r in runs if r["rc"] == 0), key=lambda r: r["segments"])
    if len(ok) >= 2 and ok[-1]["segments"] > ok[0]["segments"] and ok[-1]["wall_s"] > ok[0]["wall_s"]:
        out["segments_per_s"] = (ok[-1]["segments"] - ok[0]["segments"]) / (ok[-1]["wall_s"] - ok[0]["wall_s"])
    if ok and ok[-1]["after_first_per_s"]:
        out["after_first_per_s"] = ok[-1]["after_first_per_s"]  # the largest run's, as generate.py measured it
    return out


def run_validation(args: argparse.Namespace) -> int:
    """fidelity_report on --val-n segments, --repeats times, with the parts beside the defined formulations."""
    import torch

    torch.set_num_threads(args.threads)
    cwru = _cwru_dir(args)
    load_before = _loadavg()
    runs = [time_validation(args.val_n, cwru, seed=i) for i in range(max(1, args.repeats))]
    best = min(runs, key=lambda r: r["seconds"])
    result = {"machine": machine(args.threads), "load_average_before": load_before, "load_average_after": _loadavg(),
              "runs": runs, "summary": {"seconds_per_10000_best": best["seconds_per_10000"],
                                        "seconds_per_10000_band_given_best": min(r["seconds_per_10000_band_given"]
                                                                                 for r in runs)}}
    rows = [[i, r["seconds_per_10000"], r["seconds_per_10000_band_given"],
             *(r["parts_s"][k] for k in ("psd", "psd_scipy_welch", "envelope_hits_and_profile", "envelope_defined",
                                         "indicators"))] for i, r in enumerate(runs)]
    print(f"fidelity_report, C2ST off: {best['n_fake']} generated segments of {best['segment_length']}, "
          f"{best['classes']} classes ({best['source']}), {best['n_real']} real held-out; {args.threads} threads")
    _print_table(["run", "s / 10,000", "band given", "psd", "welch (defined)", "envelope", "envelope (defined)",
                  "indicators"], rows)
    print(f"load average before {load_before}, after {result['load_average_after']}")
    path = write_json(result, args.out, "validation")
    tracker = open_tracker(args, "validation")
    try:
        log_result(tracker, result, "validation", path)
    finally:
        tracker.finish("FINISHED")
    return 0


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished children (user + system)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def load_default(args: argparse.Namespace):
    from vibgan.config import load_config

    return load_config(CONFIGS / "default.toml", [f"train.threads={args.threads}", "tracking.enabled=false"])


def _tmp_parent(out: str) -> str:
    p = Path(out).resolve()
    p.mkdir(parents=True, exist_ok=True)
    return str(p)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"command", "tracking", "experiment"}
    return {k: (v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v))
            for k, v in vars(args).items() if k not in skip}


def speed_summary(r: dict) -> dict[str, Any]:
    s: dict[str, Any] = {"train": {}, "generation": {}, "validation_s_per_10000": r["validation"]["seconds_per_10000"]}
    for t in r["training"]:
        s["train"][f"{t['case']}/{t['device']}/{t['precision']}"] = {
            "steps_per_s": t["steps_per_s"], "gflops": t["achieved_flops"] / 1e9, "peak_fraction": t["peak_fraction"]}
    for g in r["generation"]:
        s["generation"][f"{g['device']}/batch{g['batch_size']}"] = {
            "segments_per_s": g["segments_per_s"], "realtime_factor": g["realtime_factor"],
            "peak_fraction": g["peak_fraction"]}
    mem = r.get("memory") or {}
    if mem:
        s["peak_rss_mb"] = {f"train/{k}": v["peak_rss_mb"] for k, v in mem.get("training", {}).items()}
        s["peak_rss_mb"].update({f"generate/{g['segments']}": g["peak_rss_mb"] for g in mem.get("generation", [])})
        if mem.get("estimate_1e6"):
            s["generate_1e6_hours_est"] = mem["estimate_1e6"]["hours"]
    return s


def print_speed(r: dict) -> None:
    print()
    print("matmul peak: " + ", ".join(f"{k} {v['best_flops'] / 1e9:.1f} GFLOP/s" for k, v in r["matmul_peak"].items()))
    _print_table(["training", "device", "batch x T", "steps/s", "GFLOP/step", "GFLOP/s", "% of peak", "CPU share"],
                 [[t["case"], f"{t['device']} {t['precision']}", f"{t['batch_size']} x {t['segment_length']}",
                   t["steps_per_s"], t["flops_per_step"] / 1e9, t["achieved_flops"] / 1e9,
                   100 * t["peak_fraction"], t["cpu_share"]] for t in r["training"]])
    for k, v in r["skipped"].items():
        print(f"  {k}: {v}")
    print()
    _print_table(["generation", "batch", "segments/s", "samples/s", "x real time (12 kHz)", "GFLOP/segment",
                  "% of peak"],
                 [[g["device"], g["batch_size"], g["segments_per_s"], g["samples_per_s"], g["realtime_factor"],
                   g["flops_per_segment"] / 1e9, 100 * g["peak_fraction"]] for g in r["generation"]])
    v = r["validation"]
    print(f"\nvalidation: {v['seconds_per_10000']:.2f} s per 10,000 segments of 4,096 (measured on {v['n_fake']}, "
          f"{v['classes']} classes, {v['n_real']} real held-out, C2ST off)")
    if v.get("parts_s"):
        print("  of which, measured again alone: " + ", ".join(f"{k} {s:.2f} s" for k, s in v["parts_s"].items())
              + f" (spectral.WORKERS = {v.get('spectral_workers')})")
    mem = r.get("memory") or {}
    if mem:
        rows = [[f"train {k} ({t['steps']} steps)", t["peak_rss_mb"], t["wall_s"], t["rc"]]
                for k, t in mem["training"].items()]
        rows += [[f"generate {g['segments']} to HDF5", g["peak_rss_mb"], g["wall_s"], g["rc"]] for g in mem["generation"]]
        print()
        _print_table(["child process", "peak RSS MB", "wall s", "rc"], rows)
        e = mem.get("estimate_1e6")
        if e:
            print(f"1,000,000 segments ({e['file_gb']:.1f} GB of float32): about {e['hours']:.1f} h at "
                  f"{e['segments_per_s']:.0f} segments/s; peak RSS as measured ({e['peak_rss_mb_max_measured']:.0f} MB)")
    m = r["machine"]
    print(f"load average: start {m['loadavg_start']}, end {m['loadavg_end']}; this process got "
          f"{m['cpu_share']:.2f} of its {m['torch_threads']} thread(s) over the run ({m['wall_s']:.0f} s, children included)")


# --------------------------------------------------------------------------------------------------
# augment
# --------------------------------------------------------------------------------------------------
VARIANTS = {
    "real": "real only",
    "classic": "classic augmentation (random crop, gain 0.8-1.2, noise 10-30 dB SNR)",
    "gan-mlp": "seed dense GAN (configs/sinusoid.toml networks, conditional)",
    "gan-vibgan": "vibgan conv GAN (configs/cwru.toml, segment 2048)",
    "gan-vibgan-classic": "vibgan conv GAN + classic: half classic windows, half GAN windows given the same gain and noise",
    "physics": "physics simulator (vibgan.synthetic.simulate_bearing)",
}
#: the GAN behind each GAN variant (gan-vibgan-classic reuses gan-vibgan's generator)
GAN_OF = {"gan-mlp": "gan-mlp", "gan-vibgan": "gan-vibgan", "gan-vibgan-classic": "gan-vibgan"}
#: GAN-test: the real-only classifier (seed 0) labels this many generated windows per class
GAN_TEST_N = 100


def gain_and_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Windows (n, C, T) times a gain U(0.8, 1.2) each, plus white noise at U(10, 30) dB SNR each."""
    n = len(x)
    x = x.astype(np.float32) * rng.uniform(0.8, 1.2, size=(n, 1, 1)).astype(np.float32)
    snr_db = rng.uniform(10.0, 30.0, size=(n, 1, 1))
    rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=-1, keepdims=True))
    return x + (rms / 10 ** (snr_db / 20) * rng.standard_normal(x.shape)).astype(np.float32)


def classic_windows(part, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """n windows of a training part: random crop position, then gain_and_noise."""
    sig = part.signal
    starts = rng.integers(0, sig.shape[1] - length + 1, size=n)
    return gain_and_noise(np.stack([sig[:, s:s + length] for s in starts]), rng)  # (n, C, T)


#: Simulator severity per CWRU fault diameter: a guess (severity 1 ~ the 0.007 in faults by kurtosis, scaled
#: linearly with diameter); nothing in the simulator is calibrated to the 0.014 and 0.021 in faults.
def physics_severity(diameter_in: float | None) -> float:
    return max(0.25, float(diameter_in or 0.007) / 0.007)


def physics_windows(part, n: int, length: int, seed: int) -> np.ndarray:
    """n non-overlapping windows of a simulated recording of the part's fault (1797 rpm or its meta rpm), gain
    matched to the RMS of the real training part (the only thing taken from the real data)."""
    from vibgan.synthetic import simulate_bearing

    m = part.meta
    fault = m.get("fault") or "normal"
    rpm = float(m.get("rpm") or 1797.0)
    dur = (n * length + 16) / part.fs
    rec = simulate_bearing(fault, rpm, part.fs, max(dur, 0.5), severity=physics_severity(m.get("diameter_in")),
                           seed=seed, load_hp=float(m.get("load_hp") or 0.0), channels=part.channels)
    x = rec.signal[:, : n * length].reshape(part.channels, n, length).transpose(1, 0, 2).copy()
    gain = float(np.sqrt((part.signal.astype(np.float64) ** 2).mean()) / max(1e-12, np.sqrt((x.astype(np.float64) ** 2).mean())))
    return (x * gain).astype(np.float32)


def confusions(cm: np.ndarray, classes: list[str]) -> list[tuple[str, str, float]]:
    """Off-diagonal cells of a confusion matrix (true, predicted) as (true, predicted, share of the true
    class's test windows), largest first; zero cells left out."""
    share = cm / np.maximum(1, cm.sum(axis=1, keepdims=True))
    cells = [(classes[i], classes[j], float(share[i, j])) for i in range(len(classes)) for j in range(len(classes))
             if i != j and cm[i, j]]
    return sorted(cells, key=lambda c: -c[2])


def gan_diagnostics(gens: dict[str, Any], real_net, classes: list[str], x_test: np.ndarray, y_test: np.ndarray,
                    scale: tuple[float, float], args: argparse.Namespace, per_epoch: int) -> dict[str, Any]:
    """GAN-test and GAN-train (Shmelkov et al., ECCV 2018) for each trained GAN.

    GAN-test: the real-only classifier (seed 0) labels GAN_TEST_N generated windows per class; the share it
    labels as the intended class (quality: do generated windows look like their class?).
    GAN-train: the classifier trained on generated windows only (args.per_class per class, seed 0), macro-F1
    on the real test set (do generated windows carry what separates the classes on unseen real data?).
    """
    from vibgan.classify import macro_f1, predict, train_classifier
    out: dict[str, Any] = {}
    K = len(classes)
    for name, gen in gens.items():
        gx = [gen.sample(c, GAN_TEST_N, seed=5000 + k) for k, c in enumerate(classes)]
        d: dict[str, Any] = {}
        if real_net is not None:
            d["gan_test"] = {c: float((predict(real_net, x, scale) == k).mean()) for k, (c, x) in enumerate(zip(classes, gx))}
        tx = np.concatenate([gen.sample(c, args.per_class, seed=6000 + k) for k, c in enumerate(classes)])
        ty = np.repeat(np.arange(K), args.per_class)
        net = train_classifier(tx, ty, K, seed=0, epochs=args.epochs, per_epoch=per_epoch, scale=scale)
        d["gan_train_macro_f1"] = macro_f1(y_test, predict(net, x_test, scale), K)
        out[name] = d
        gt = d.get("gan_test")
        print(f"  {name}: GAN-train macro-F1 {d['gan_train_macro_f1']:.3f}"
              + (f"; GAN-test (real-only classifier on generated windows) mean {np.mean(list(gt.values())):.2f}, "
                 f"lowest {min(gt, key=gt.get)} {min(gt.values()):.2f}" if gt else ""))
    return out


#: test windows scaled by these gains in level_sensitivity
LEVEL_GAINS = (0.9, 1.0, 1.1)


def level_sensitivity(net, classes: list[str], x_test: np.ndarray, y_test: np.ndarray,
                      scale: tuple[float, float]) -> dict[str, dict[str, float]]:
    """Per-class recall of a classifier (the real-only one, seed 0) on the test windows times 0.9, 1 and 1.1.

    A classifier that separates classes by signal level loses a class when its level drifts by 10 %, which
    a sensor, a mounting or a few weeks of wear easily do; gain augmentation trains that away, a generator
    that copies the training level does not."""
    from vibgan.classify import confusion_matrix, predict, recall
    out = {f"{g:g}": recall(confusion_matrix(y_test, predict(net, x_test * g, scale), len(classes)), classes)
           for g in LEVEL_GAINS}
    moved = [c for c in classes if max(r[c] for r in out.values()) - min(r[c] for r in out.values()) > 0.2]
    print("  level sensitivity (real-only classifier, test windows x 0.9 / 1 / 1.1): "
          + (", ".join(f"{c} recall " + " / ".join(f"{out[g][c]:.2f}" for g in out) for c in moved)
             if moved else "no class's recall moves by more than 0.2"))
    return out


#: --quick: a tiny conv GAN (smoke test of the plumbing, not a result)
QUICK_CONV = ["model.widths=[16, 16, 8, 8]", "model.res_blocks=[0, 0, 1, 0]", "model.d_channels=4"]


def gan_config(kind: str, args: argparse.Namespace, out: Path, seed: int):
    """vibgan's conv GAN (configs/cwru.toml) or the seed dense GAN (configs/sinusoid.toml networks and training
    settings; out_activation none because normalised vibration exceeds tanh's range), at the window length."""
    from vibgan.config import load_config

    common = [f"data.segment_length={args.window}", "train.progress=false", "tracking.enabled=false",
              f"out={str(out)!r}", f"train.threads={args.threads}", f"train.seed={seed}"]
    if kind == "gan-vibgan":
        return load_config(CONFIGS / "cwru.toml", [*common, f"train.steps={args.gan_steps}", *args.gan_set])
    return load_config(CONFIGS / "sinusoid.toml", [*common, f"train.steps={args.mlp_steps}",
                                                   "model.out_activation='none'"])


def _test_windows(recs, classes: list[str], T: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The last 30 % of every recording in non-overlapping windows, class indices, and each test part's offset."""
    from vibgan.windows import split_by_time, windows

    xs, ys, start = [], [], {}
    for r in recs:
        te = split_by_time(r, (0.7, 0.0, 0.3))[2]
        w = np.asarray(windows(te, T), dtype=np.float32)
        xs.append(w)
        ys.append(np.full(len(w), classes.index(r.label)))
        start[r.source] = int(te.meta["offset"])
    return np.concatenate(xs), np.concatenate(ys), start


def _training_part(r, S: float, T: int, test_start: int):
    """The training part of a recording in the augmentation and transfer protocols: a fault's first S seconds,
    normal's first 70 %; an error when it holds no window of T or reaches into the recording's test part."""
    from vibgan.errors import VibganError
    from vibgan.recordings import Recording
    from vibgan.windows import split_by_time

    end = split_by_time(r, (0.7, 0.0, 0.3))[0].samples if r.meta.get("fault") == "normal" else int(round(S * r.fs))
    where = f"{r.label} at {float(r.meta.get('rpm') or 0):g} rpm"
    if end < T:
        raise VibganError(f"--seconds {S:g}: {where} gets {end} samples, shorter than one window of {T}")
    if end > test_start:
        raise VibganError(f"--seconds {S:g}: {where}'s training part would reach into its test part")
    return Recording(r.signal[:, :end], r.fs, dict(r.meta, part="train", offset=0))


def _real_windows(parts, classes: list[str], T: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of T (hop ``hop``) of the training parts and its class index."""
    from vibgan.windows import windows

    xs = [np.asarray(windows(p, T, hop), dtype=np.float32) for p in parts]
    return np.concatenate(xs), np.concatenate([np.full(len(w), classes.index(p.label)) for w, p in zip(xs, parts)])


def run_augment(args: argparse.Namespace) -> int:
    import torch

    from vibgan.catalog import load_many
    from vibgan.classify import confusion_matrix, macro_f1, predict, recall, train_classifier
    from vibgan.datasets import TrainData
    from vibgan.errors import VibganError
    from vibgan.train import train

    if args.quick:
        args.seeds, args.seconds, args.gan_steps, args.mlp_steps = 1, args.seconds[:1], 2, 2
        args.epochs, args.per_class, args.hop = 3, 24, 512
        args.gan_set = [*QUICK_CONV, *args.gan_set]
    torch.set_num_threads(max(1, args.threads))
    cwru = _cwru_dir(args)
    if cwru is None:
        raise VibganError(f"--cwru {args.cwru}: no CWRU recordings there; the augmentation benchmark needs them "
                          "(see data/README.md)")
    T = args.window
    info = machine(torch.get_num_threads())
    recs = load_many(cwru, channels=["DE"], fs=12000.0)  # the normal baseline is 48 kHz: resampled
    classes = list(dict.fromkeys(r.label for r in recs))
    K = len(classes)
    fs = recs[0].fs
    # ---- the test set: the last 30 % of every recording, non-overlapping windows; nothing else touches it
    x_test, y_test, test_start = _test_windows(recs, classes, T)
    print(f"augment benchmark: {K} classes, windows of {T}, test {len(x_test)} windows "
          f"({', '.join(f'{c} {int((y_test == i).sum())}' for i, c in enumerate(classes))}); "
          f"{info['torch_threads']} threads, load average {info['loadavg_start']}")

    results: dict[str, Any] = {}
    for S in args.seconds:
        # ---- training parts: fault classes their first S seconds, normal its first 70 %
        parts = [_training_part(r, S, T, test_start[r.source]) for r in recs]
        real_x, real_y = _real_windows(parts, classes, T, args.hop)
        n_real = np.bincount(real_y, minlength=K)
        n_add = np.maximum(0, args.per_class - n_real)
        scale = (float(real_x.mean()), float(real_x.std()))
        part_of = {p.label: p for p in parts}  # one recording per class in the CWRU 10-class set
        print(f"\nS = {S:g} s: real training windows per class {dict(zip(classes, n_real.tolist()))} (hop {args.hop}); "
              f"synthetic added to reach {args.per_class}: {dict(zip(classes, n_add.tolist()))}")

        extra: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        gan_time: dict[str, float] = {}
        gens: dict[str, Any] = {}
        for v in args.variants:
            rng = np.random.default_rng(1000 + int(S * 1000))
            xs, ys = [], []
            if v == "real":
                extra[v] = (np.zeros((0, 1, T), np.float32), np.zeros(0, np.int64))
                continue
            gen = None
            if v in GAN_OF:
                g_name = GAN_OF[v]
                if g_name not in gens:
                    out = Path(args.out) / "augment" / f"{g_name}-S{S:g}"
                    cfg = gan_config(g_name, args, out, seed=0)
                    data = TrainData.from_recordings(parts, length=T, train_fraction=1.0, geometry=cfg.data.geometry)
                    t0 = time.perf_counter()
                    res = train(cfg, data, None)
                    gan_time[g_name] = time.perf_counter() - t0
                    gens[g_name] = res.generator
                    print(f"  {g_name}: trained {res.steps} steps in {gan_time[g_name]:.0f} s "
                          f"(final monitored lsd max {max(res.lsd_db.values()):.2f} dB)")
                gen = gens[g_name]
            for k, c in enumerate(classes):
                n = int(n_add[k])
                if n == 0:
                    continue
                if v == "classic":
                    x = classic_windows(part_of[c], n, T, rng)
                elif v == "physics":
                    x = physics_windows(part_of[c], n, T, seed=7919 * (k + 1) + int(S * 1000))
                elif v == "gan-vibgan-classic":
                    h = n // 2
                    x = np.concatenate([classic_windows(part_of[c], n - h, T, rng),
                                        gain_and_noise(gen.sample(c, h, seed=100 + k), rng)])
                else:
                    x = gen.sample(c, n, seed=100 + k)
                xs.append(x.astype(np.float32))
                ys.append(np.full(n, k))
            extra[v] = (np.concatenate(xs) if xs else np.zeros((0, 1, T), np.float32),
                        np.concatenate(ys) if ys else np.zeros(0, np.int64))

        per_epoch = K * args.per_class
        res_s: dict[str, Any] = {"n_real": dict(zip(classes, n_real.tolist())),
                                 "n_added": dict(zip(classes, n_add.tolist())), "gan_train_s": gan_time, "variants": {}}
        real_net = None
        for v in args.variants:
            x = np.concatenate([real_x, extra[v][0]])
            y = np.concatenate([real_y, extra[v][1]])
            f1s, accs, cm, t0 = [], [], np.zeros((K, K), np.int64), time.perf_counter()
            for seed in range(args.seeds):
                net = train_classifier(x, y, K, seed=seed, epochs=args.epochs, per_epoch=per_epoch, scale=scale)
                if v == "real" and seed == 0:
                    real_net = net
                pred = predict(net, x_test, scale)
                f1s.append(macro_f1(y_test, pred, K))
                accs.append(float((pred == y_test).mean()))
                cm += confusion_matrix(y_test, pred, K)
            res_s["variants"][v] = {"macro_f1": f1s, "mean": float(np.mean(f1s)),
                                    "std": float(np.std(f1s, ddof=1)) if len(f1s) > 1 else 0.0,
                                    "accuracy": accs, "n_train": int(len(x)),
                                    "recall": recall(cm, classes),
                                    "confusions": confusions(cm, classes),
                                    "classifier_s": time.perf_counter() - t0}
            worst = res_s["variants"][v]["confusions"][:2]
            print(f"  {v:<18} macro-F1 {np.mean(f1s):.3f} +/- {res_s['variants'][v]['std']:.3f} "
                  f"({len(x)} training windows, {args.seeds} seeds, {time.perf_counter() - t0:.0f} s)"
                  + (f"; most confused: {', '.join(f'{a} as {b} {r:.0%}' for a, b, r in worst)}" if worst else ""))
        res_s["gan_diagnostics"] = gan_diagnostics(gens, real_net, classes, x_test, y_test, scale, args, per_epoch)
        if real_net is not None:
            res_s["level_sensitivity"] = level_sensitivity(real_net, classes, x_test, y_test, scale)
        results[f"{S:g}"] = res_s

    info["loadavg_end"] = _loadavg()
    summary = {f"S{s}/{v}/{k}": r["variants"][v][k] for s, r in results.items() for v in r["variants"]
               for k in ("mean", "std")}
    summary.update({f"S{s}/gan_train_s/{v}": t for s, r in results.items() for v, t in r["gan_train_s"].items()})
    summary.update({f"S{s}/gan_train_macro_f1/{g}": d["gan_train_macro_f1"] for s, r in results.items()
                    for g, d in r["gan_diagnostics"].items()})
    result = {"benchmark": "augment", "machine": info, "settings": _settings(args),
              "protocol": {"classes": classes, "window": T, "fs": fs, "test": "last 30 % of each recording, "
                           "non-overlapping windows", "train": "fault classes: first S seconds; normal: first 70 %",
                           "test_windows": int(len(x_test)), "classifier": "window_cnn (WDCNN-style), Adam 1e-3, "
                           f"batch 64, {args.epochs} epochs of {K * args.per_class} class-balanced windows",
                           "variants": {v: VARIANTS[v] for v in args.variants},
                           "physics_severity": "diameter / 0.007 in (a guess), gain matched to the training part's RMS"},
              "results": results, "summary": summary}
    print()
    _print_table(["variant", *[f"S = {s} s macro-F1" for s in results]],
                 [[VARIANTS[v], *[f"{r['variants'][v]['mean']:.3f} +/- {r['variants'][v]['std']:.3f}"
                                  for r in results.values()]] for v in args.variants])
    for s, r in results.items():
        if r["gan_train_s"]:
            print(f"GAN training at S = {s} s: " + ", ".join(f"{k} {t:.0f} s" for k, t in r["gan_train_s"].items()))
    path = write_json(result, args.out, "augment")
    tracker = open_tracker(args, "augment", gan_config("gan-vibgan", args, Path(args.out) / "augment", 0))
    try:
        log_result(tracker, result, "augment", path)
    finally:
        tracker.finish("FINISHED")
    return 0


# --------------------------------------------------------------------------------------------------
# transfer
# --------------------------------------------------------------------------------------------------
TRANSFER_PROTOCOLS = {
    "1": "partial coverage: every class at the source condition, the --at-target classes at the target too; "
         "judged on the classes never recorded at the target",
    "2": "new condition from several: every class at each source condition, no fault class at the target (its "
         "healthy recordings only)",
    "3": "one condition only: every class at the source condition, no fault class at the target (its healthy "
         "recordings where there are any)",
}
TRANSFER_VARIANTS = {
    "real": "real only",
    "classic": "classic augmentation of each class's training parts (crop, gain, noise)",
    "resampled": "classes without a target recording: their source part speed-resampled to the target rpm "
                 "(vibgan.transfer.speed_resample), then classic; the others classic",
    "vibgan-target": "vibgan conv GAN trained on every training part, sampled at the target (rpm, load)",
    "vibgan-spread": "the same GAN sampled at speeds spread +/- 4 % around each class's recorded conditions",
    "source-eq": "classes without a target recording: their source part as recorded (no speed change: the "
                 "resonances stay, the fault lines keep the source rate), filtered by the condition response, then "
                 "classic; needs classes recorded at both conditions",
    "resampled-eq": "resampled, then filtered by the condition response learned from the classes recorded at both "
                    "conditions (vibgan.transfer.ConditionResponse: those of the class's fault type where there are "
                    "any, else every fault, else every class); needs such classes",
    "vibgan-eq": "vibgan sampled at the target rpm and the class's recorded load, then the condition response; "
                 "needs classes recorded at both conditions",
    "recorded": "the ceiling, not a method: classes without a target recording get their own first S seconds at "
                "the target (which the other variants never see), then classic: what recording them there gives",
    "cyclegan": "classes without a target recording: their source part translated by a CycleGAN "
                "(vibgan.cycle.CycleTranslator) learned on unpaired windows of the classes recorded at both "
                "conditions, then classic; the others classic",
}
#: variants that need classes recorded at the source and the target
NEEDS_RESPONSE = {"source-eq", "resampled-eq", "vibgan-eq", "cyclegan"}


#: simulated transfer data: fault severities per fault type (the middle one is judged in protocol 1), seconds
SIM_SEVERITIES = (0.6, 1.0, 1.6)
SIM_DURATION_S = 10.0


def _size_key(meta: dict) -> str:
    """A fault class's size as --at-target names it: the diameter in mils (CWRU), else the severity (simulated)."""
    if meta.get("diameter_in"):
        return f"{round(float(meta['diameter_in']) * 1000):d}"
    return f"{float(meta.get('severity') or 0):g}"


def simulated_transfer_data(sources: list[tuple[float, float]], target: tuple[float, float], seed: int = 0,
                            duration: float = SIM_DURATION_S) -> tuple[list, list]:
    """The simulator's recordings at each source condition and at the target: normal and each fault type at
    each of SIM_SEVERITIES (labels like ``inner_1.6``), 12 kHz, drive end. The same classes at every condition,
    so the target's faults are ground truth for what a transfer should produce there."""
    from vibgan.synthetic import _derived_seed, simulate_bearing

    def at(rpm: float, load: float) -> list:
        out = [simulate_bearing("normal", rpm, 12000.0, duration, load_hp=load,
                                seed=_derived_seed(seed, "normal", rpm, load))]
        for fault in ("inner", "outer", "ball"):
            for sev in SIM_SEVERITIES:
                out.append(simulate_bearing(fault, rpm, 12000.0, duration, severity=sev, load_hp=load,
                                            label=f"{fault}_{sev:g}",
                                            seed=_derived_seed(seed + int(sev * 100), fault, rpm, load)))
        for r in out:
            r.meta["source"] = f"simulated:{r.label}@{rpm:g}rpm/{load:g}hp"
        return out

    return [r for c in sources for r in at(*c)], at(*target)


def target_fidelity(fill: np.ndarray, real: np.ndarray, fs: float, fc: float | None) -> dict[str, Any]:
    """How close synthetic windows of one class are to its real windows at the target: in-band log-spectral
    distance of the mean PSDs (dB) beside the real side's own floor (its even against its odd windows), and the
    envelope hit rate at the target's fault frequency, generated and real."""
    from vibgan.spectral import envelope_hit_rate, lsd_db, mean_psd

    f, p_fill = mean_psd(fill, fs)
    _, p_real = mean_psd(real, fs)
    floor = float(lsd_db(mean_psd(real[0::2], fs)[1], mean_psd(real[1::2], fs)[1], f, fs)) if len(real) > 1 else None
    out = {"lsd_db": float(lsd_db(p_fill, p_real, f, fs)), "lsd_floor_db": floor}
    if fc is not None:
        out["envelope_hit"] = envelope_hit_rate(fill, fs, fc)
        out["envelope_hit_real"] = envelope_hit_rate(real, fs, fc)
    return out


def _part_condition(p) -> tuple[float, float]:
    """The (rpm, load_hp) a recording or training part was made at."""
    return float(p.meta["rpm"]), float(p.meta.get("load_hp") or 0)


def _recorded_at(p, cond: tuple[float, float]) -> bool:
    return all(abs(a - b) < 1e-6 for a, b in zip(_part_condition(p), cond))


def _nearest_part(parts: list, target: tuple[float, float]):
    """The training part recorded nearest the target condition (load first, then speed): the one carried there."""
    return min(parts, key=lambda p: (abs(_part_condition(p)[1] - target[1]), abs(_part_condition(p)[0] - target[0])))


def transfer_fill(variant: str, label: str, n: int, parts: list, target: tuple[float, float], gen, T: int,
                  rng: np.random.Generator, seed: int, response=None, translators=None, recorded=None) -> np.ndarray:
    """n synthetic windows of ``label`` for one transfer variant (see TRANSFER_VARIANTS); ``response``: the
    ConditionResponse of the *-eq variants; ``translators``: recorded condition -> CycleTranslator to the target;
    ``recorded``: label -> its training part at the target (the ``recorded`` ceiling)."""
    from vibgan.errors import VibganError
    from vibgan.recordings import Recording
    from vibgan.transfer import condition_grid, speed_resample

    if n <= 0:
        return np.zeros((0, parts[0].channels, T), np.float32)

    base = _nearest_part(parts, target)
    src = _part_condition(base)
    if variant == "recorded" and (recorded or {}).get(label) is not None:
        return classic_windows(recorded[label], n, T, rng)
    if variant in ("classic", "recorded") or (
            variant in ("resampled", "source-eq", "resampled-eq", "vibgan-eq", "cyclegan")
            and any(_recorded_at(p, target) for p in parts)):
        per = np.diff(np.linspace(0, n, len(parts) + 1).round().astype(int))
        return np.concatenate([classic_windows(p, int(k), T, rng) for p, k in zip(parts, per) if k])
    if variant == "resampled":
        return classic_windows(speed_resample(base, target[0], target[1]), n, T, rng)
    if variant == "source-eq":
        moved = response.apply(base.signal, src, target, label)
        return classic_windows(Recording(moved, base.fs, dict(base.meta, rpm=target[0], load_hp=target[1])), n, T, rng)
    if variant == "resampled-eq":
        r = speed_resample(base, target[0], target[1])
        return classic_windows(Recording(response.apply(r.signal, src, target, label), r.fs, r.meta), n, T, rng)
    if variant == "cyclegan":
        if src not in (translators or {}):
            raise VibganError(f"cyclegan: no class of {label}'s recorded condition {src} is recorded at the target "
                              f"{target}: nothing to learn the translation from")
        moved = translators[src].translate(base.signal[None])[0]
        return classic_windows(Recording(moved, base.fs, dict(base.meta, rpm=target[0], load_hp=target[1])), n, T, rng)
    if variant == "vibgan-eq":
        return response.apply(gen.sample(label, n, rpm=target[0], load_hp=src[1], seed=seed), src, target, label)
    if variant == "vibgan-target":
        return gen.sample(label, n, rpm=target[0], load_hp=target[1], seed=seed)
    if variant == "vibgan-spread":
        grid = condition_grid([_part_condition(p) for p in parts], 8)
        per = np.diff(np.linspace(0, n, len(grid) + 1).round().astype(int))
        return np.concatenate([gen.sample(label, int(k), rpm=r, load_hp=load, seed=seed + i)
                               for i, ((r, load), k) in enumerate(zip(grid, per)) if k])
    raise ValueError(variant)


def fit_translators(parts: list, unseen: list[str], by_class: dict, target: tuple[float, float], T: int,
                    args: argparse.Namespace) -> tuple[dict, float]:
    """One CycleTranslator per recorded condition the unseen classes are carried from, each learned on the
    windows of the classes recorded at that condition and at the target (unpaired); and the seconds it took."""
    from vibgan.cycle import CycleTranslator
    from vibgan.windows import windows

    out, t0 = {}, time.perf_counter()
    for base in sorted({_part_condition(_nearest_part(by_class[c], target)) for c in unseen}):
        both = sorted({p.label for p in parts if _recorded_at(p, base)}
                      & {p.label for p in parts if _recorded_at(p, target)})
        if not both:
            continue
        src = np.concatenate([np.asarray(windows(p, T, args.hop), np.float32) for p in parts
                              if p.label in both and _recorded_at(p, base)])
        tgt = np.concatenate([np.asarray(windows(p, T, args.hop), np.float32) for p in parts
                              if p.label in both and _recorded_at(p, target)])
        ct = CycleTranslator(src.shape[1]).fit(src, tgt, steps=args.cycle_steps, seed=0)
        out[base] = ct
        print(f"  cyclegan {base} -> {target}: {args.cycle_steps} steps on {len(src)} / {len(tgt)} windows of "
              f"{both} in {ct.train_s:.0f} s; cycle loss {np.mean(ct.history['cycle'][-50:]):.3f}")
    return out, time.perf_counter() - t0


def run_transfer(args: argparse.Namespace) -> int:
    import warnings

    import torch

    from vibgan.bearing import characteristic_frequency
    from vibgan.catalog import load_many
    from vibgan.classify import confusion_matrix, macro_f1, predict, recall, train_classifier
    from vibgan.datasets import TrainData
    from vibgan.errors import VibganError
    from vibgan.train import train
    from vibgan.transfer import ConditionResponse

    if args.quick:
        args.seeds, args.seconds, args.gan_steps, args.cycle_steps = 1, args.seconds[:1], 2, 2
        args.epochs, args.per_class, args.hop = 2, 24, 512
        args.gan_set = [*QUICK_CONV, "model.variety=false", *args.gan_set]
    torch.set_num_threads(max(1, args.threads))
    T = args.window
    info = machine(torch.get_num_threads())
    if args.data == "simulated":
        args.at_target = args.at_target or [f"{v:g}" for v in (SIM_SEVERITIES[0], SIM_SEVERITIES[-1])]
        args.protocols = args.protocols or ["1", "2", "3"]
        sources = [tuple(map(float, c)) for c in (args.sim_source or [[1797.0, 0.0]])]
        tgt_cond = tuple(map(float, args.sim_target))
        if tgt_cond in sources:
            raise VibganError(f"--sim-source / --sim-target: the target {tgt_cond} is one of the sources {sources}")
        if "2" in args.protocols and len(sources) == 1:
            sources.append((1750.0, 2.0) if tgt_cond != (1750.0, 2.0) else (1772.0, 1.0))
        src_all, tgt = simulated_transfer_data(sources, tgt_cond, duration=3.0 if args.quick else SIM_DURATION_S)
        src_dir = tgt_dir = f"simulated (vibgan.synthetic, severities {list(SIM_SEVERITIES)})"
    else:
        args.protocols = args.protocols or ["1", "3"]
        if "2" in args.protocols:
            raise VibganError("--protocols 2: a new condition from several needs classes recorded at two source "
                              "conditions and a third one to judge; the CWRU folders here hold two conditions "
                              "(use --data simulated, or measure on other loads)")
        args.at_target = args.at_target or ["7", "21"]
        src_dir, tgt_dir = _cwru_dir(args), Path(args.target_dir)
        if src_dir is None or not tgt_dir.is_dir() or not any(tgt_dir.iterdir()):
            raise VibganError(f"--cwru {args.cwru} / --target-dir {args.target_dir}: the transfer benchmark needs "
                              "recordings at both conditions (see data/README.md), or --data simulated")
        src_all = load_many(src_dir, channels=["DE"], fs=12000.0)
        tgt = load_many(tgt_dir, channels=["DE"], fs=12000.0)
    src_cond = _part_condition(src_all[0])
    src = [r for r in src_all if _part_condition(r) == src_cond]
    fs = src[0].fs
    classes = list(dict.fromkeys(r.label for r in src))
    if missing := sorted({r.label for r in tgt} - set(classes)):
        raise VibganError(f"--target-dir {tgt_dir}: classes {missing} have no recording at the source condition")
    K = len(classes)
    conds = {_part_condition(r) for r in tgt}
    if len(conds) != 1:
        raise VibganError(f"--target-dir {tgt_dir}: expected one target condition, found {sorted(conds)}")
    target = conds.pop()
    x_src, y_src, src_start = _test_windows(src, classes, T)
    extra = [r for r in src_all if all(r is not q for q in src)]  # protocol 2's further source conditions
    src_start.update(_test_windows(extra, classes, T)[2] if extra else {})
    x_tgt, y_tgt, tgt_start = _test_windows(tgt, classes, T)
    print(f"transfer benchmark: {K} classes, windows of {T}; source {src[0].meta['rpm']:g} rpm / "
          f"{src[0].meta.get('load_hp', 0):g} hp ({len(x_src)} test windows), target {target[0]:g} rpm / "
          f"{target[1]:g} hp ({len(x_tgt)} test windows, last 30 % of each recording); "
          f"{info['torch_threads']} threads, load average {info['loadavg_start']}")

    def first(r, S):
        return _training_part(r, S, T, src_start[r.source] if r.source in src_start else tgt_start[r.source])

    results: dict[str, Any] = {}
    for proto in args.protocols:
        # healthy recordings at the target go in wherever they exist (a plant has healthy data at many conditions)
        at_target = {r.label for r in tgt if r.meta.get("fault") == "normal"
                     or (proto == "1" and _size_key(r.meta) in args.at_target)}
        unseen = [c for c in classes if c not in at_target and any(r.label == c for r in tgt)]
        for S in args.seconds:
            key = f"P{proto}/S{S:g}"
            parts = [first(r, S) for r in (src_all if proto == "2" else src)] \
                + [first(r, S) for r in tgt if r.label in at_target]
            by_class = {c: [p for p in parts if p.label == c] for c in classes}
            real_x, real_y = _real_windows(parts, classes, T, args.hop)
            n_real = np.bincount(real_y, minlength=K)
            n_add = np.maximum(0, args.per_class - n_real)
            scale = (float(real_x.mean()), float(real_x.std()))
            print(f"\n{key}: {TRANSFER_PROTOCOLS[proto]}; recorded at the target: {sorted(at_target) or 'none'}; "
                  f"judged on {unseen}; real windows per class {dict(zip(classes, n_real.tolist()))}")
            gen, gan_s = None, None
            if any(v.startswith("vibgan") for v in args.variants):
                out = Path(args.out) / "transfer" / f"P{proto}-S{S:g}"
                cfg = gan_config("gan-vibgan", args, out, seed=0)
                data = TrainData.from_recordings(parts, length=T, train_fraction=1.0, geometry=cfg.data.geometry)
                t0 = time.perf_counter()
                res = train(cfg, data, None)
                gan_s, gen = time.perf_counter() - t0, res.generator
                print(f"  vibgan GAN: {res.steps} steps in {gan_s:.0f} s, trained at {gen.conditions}")
            response = ConditionResponse.fit(parts)
            has_response = response.response(src_cond, target) is not None
            res_p: dict[str, Any] = {"at_target": sorted(at_target), "judged_on": unseen, "gan_train_s": gan_s,
                                     "n_real": dict(zip(classes, n_real.tolist())), "variants": {},
                                     "condition_response": response.to_dict()}
            if has_response:
                d = response.response(src_cond, target)
                print(f"  condition response {src_cond} -> {target} from {response.support[(src_cond, target)]}: "
                      f"{d.min():+.1f} to {d.max():+.1f} dB, median |change| {np.median(np.abs(d)):.1f} dB")
                for c in unseen:
                    base = _part_condition(_nearest_part(by_class[c], target))
                    if (how := response.carried_by(base, target, c)) is not None:
                        dc = response.response(base, target, c)
                        print(f"    {c} from {base}: carried by {how[0]} ({', '.join(how[1])}): "
                              f"{dc.min():+.1f} to {dc.max():+.1f} dB")
            ceiling = {r.label: first(r, S) for r in tgt if r.label in unseen} if "recorded" in args.variants else {}
            translators, cycle_s = {}, None
            if "cyclegan" in args.variants and has_response:
                translators, cycle_s = fit_translators(parts, unseen, by_class, target, T, args)
                res_p["cyclegan_train_s"] = cycle_s
            for v in args.variants:
                if v in NEEDS_RESPONSE and not has_response:
                    print(f"  {v:<14} skipped: no class is recorded at both conditions")
                    continue
                rng = np.random.default_rng(1000 + int(S * 1000))
                with warnings.catch_warnings():  # sampling outside the trained conditions is the point here
                    warnings.simplefilter("ignore")
                    fill = [transfer_fill(v, c, int(n_add[k]) if v != "real" else 0, by_class[c], target, gen, T,
                                          rng, seed=100 + 17 * k, response=response, translators=translators,
                                          recorded=ceiling) for k, c in enumerate(classes)]
                x = np.concatenate([real_x, *fill])
                y = np.concatenate([real_y, *[np.full(len(f), k) for k, f in enumerate(fill)]])
                f1_t, f1_s, cm, t0 = [], [], np.zeros((K, K), np.int64), time.perf_counter()
                for seed in range(args.seeds):
                    net = train_classifier(x, y, K, seed=seed, epochs=args.epochs, per_epoch=K * args.per_class,
                                           scale=scale)
                    pt = predict(net, x_tgt, scale)
                    f1_t.append(macro_f1(y_tgt, pt, K, present_only=True))
                    f1_s.append(macro_f1(y_src, predict(net, x_src, scale), K, present_only=True))
                    cm += confusion_matrix(y_tgt, pt, K)
                rec_t = {c: r for c, r in recall(cm, classes).items() if (y_tgt == classes.index(c)).any()}
                # the synthetic windows of each judged class against its real target recording
                fid = {}
                for c in unseen:
                    k = classes.index(c)
                    if len(fill[k]):
                        fault = by_class[c][0].meta.get("fault")
                        fc = characteristic_frequency(fault, target[0]) if fault in ("inner", "outer", "ball") else None
                        fid[c] = target_fidelity(fill[k][:, 0], x_tgt[y_tgt == k][:, 0], fs, fc)
                d = {"target_macro_f1": f1_t, "target_mean": float(np.mean(f1_t)),
                     "target_std": float(np.std(f1_t, ddof=1)) if len(f1_t) > 1 else 0.0,
                     "source_macro_f1": f1_s, "source_mean": float(np.mean(f1_s)),
                     "target_recall": rec_t, "unseen_recall_mean": float(np.mean([rec_t[c] for c in unseen])),
                     "unseen_recall_min": float(min(rec_t[c] for c in unseen)),
                     "confusions": confusions(cm, classes)[:5], "n_train": int(len(x)),
                     "classifier_s": time.perf_counter() - t0, "target_fidelity": fid}
                if fid:
                    d["target_lsd_mean"] = float(np.mean([f["lsd_db"] for f in fid.values()]))
                    hits = [f["envelope_hit"] for f in fid.values() if "envelope_hit" in f]
                    d["target_envelope_hit_mean"] = float(np.mean(hits)) if hits else None
                res_p["variants"][v] = d
                worst = d["confusions"][:2]
                print(f"  {v:<14} target macro-F1 {d['target_mean']:.3f} +/- {d['target_std']:.3f}, unseen recall "
                      f"mean {d['unseen_recall_mean']:.2f} min {d['unseen_recall_min']:.2f}; source held-out "
                      f"{d['source_mean']:.3f} ({args.seeds} seeds, {d['classifier_s']:.0f} s)"
                      + (f"; most confused: {', '.join(f'{a} as {b} {r:.0%}' for a, b, r in worst)}" if worst else ""))
                if fid:
                    print("  " + " " * 15 + "at the target, generated vs real: " + ", ".join(
                        f"{c} lsd {f['lsd_db']:.1f} dB (floor {f['lsd_floor_db']:.1f})"
                        + (f", envelope {f['envelope_hit']:.2f} (real {f['envelope_hit_real']:.2f})"
                           if "envelope_hit" in f else "") for c, f in fid.items()))
            results[key] = res_p

    info["loadavg_end"] = _loadavg()
    summary = {f"{k}/{v}/{m}": r["variants"][v][m] for k, r in results.items() for v in r["variants"]
               for m in ("target_mean", "target_std", "source_mean", "unseen_recall_mean", "unseen_recall_min",
                         "target_lsd_mean", "target_envelope_hit_mean") if r["variants"][v].get(m) is not None}
    result = {"benchmark": "transfer", "machine": info, "settings": _settings(args),
              "protocol": {"classes": classes, "window": T, "data": args.data, "source": str(src_dir),
                           "target": str(tgt_dir), "source_condition": list(src_cond),
                           "source_conditions": sorted({_part_condition(r) for r in src_all}),
                           "target_condition": list(target), "protocols": {p: TRANSFER_PROTOCOLS[p] for p in args.protocols},
                           "test": "last 30 % of each recording at each condition, non-overlapping windows",
                           "train": "fault classes: first S seconds at each condition they are given at; normal: first 70 %",
                           "metric": "macro-F1 over the classes with test windows at that condition",
                           "classifier": f"window_cnn, Adam 1e-3, batch 64, {args.epochs} epochs of {K * args.per_class} "
                                         "class-balanced windows",
                           "variants": {v: TRANSFER_VARIANTS[v] for v in args.variants}},
              "results": results, "summary": summary}
    print()
    def cell(r, v, fmt):
        return fmt(r["variants"][v]) if v in r["variants"] else "-"

    _print_table(["variant", *[f"{k} target F1" for k in results], *[f"{k} unseen recall" for k in results],
                  *[f"{k} source F1" for k in results]],
                 [[v, *[cell(r, v, lambda d: f"{d['target_mean']:.3f} +/- {d['target_std']:.3f}") for r in results.values()],
                   *[cell(r, v, lambda d: f"{d['unseen_recall_mean']:.2f}") for r in results.values()],
                   *[cell(r, v, lambda d: f"{d['source_mean']:.3f}") for r in results.values()]] for v in args.variants])
    path = write_json(result, args.out, "transfer")
    tracker = open_tracker(args, "transfer", gan_config("gan-vibgan", args, Path(args.out) / "transfer", 0))
    try:
        log_result(tracker, result, "transfer", path)
    finally:
        tracker.finish("FINISHED")
    return 0


# --------------------------------------------------------------------------------------------------
# fidelity
# --------------------------------------------------------------------------------------------------
def _train_cli():
    """pipelines/train.py as a module (the report step is reused from there, not duplicated)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vibgan_pipelines_train", ROOT / "pipelines" / "train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_to_target(history: dict[str, list[float]], target_db: float) -> dict[str, Any]:
    """First monitored evaluation at which the worst class's lsd (EMA generator vs the training PSD) <= target."""
    for step, lsd, wall in zip(history.get("eval_step", []), history.get("lsd_db_max", []), history.get("wall_s", [])):
        if lsd <= target_db:
            return {"reached": True, "step": int(step), "wall_s": float(wall), "lsd_db_max": float(lsd)}
    return {"reached": False, "step": None, "wall_s": None,
            "lsd_db_max_last": float(history["lsd_db_max"][-1]) if history.get("lsd_db_max") else None}


def run_fidelity(args: argparse.Namespace) -> int:
    import torch

    from vibgan.config import load_config
    from vibgan.datasets import prepare_data
    from vibgan.train import train

    torch.set_num_threads(max(1, args.threads))
    overrides = list(args.overrides) + [f"train.threads={args.threads}"]
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if not any(o.startswith("out=") for o in overrides):
        overrides.append(f"out={str(Path(args.out) / 'fidelity')!r}")
    cfg = load_config(args.config, overrides)
    cwru = _cwru_dir(args)
    if cfg.data.source == "files" and not Path(cfg.data.path).exists() and cwru is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(cwru)))
    info = machine(torch.get_num_threads())
    data = prepare_data(cfg)
    tracker = open_tracker(args, "fidelity", cfg)
    status = "FAILED"
    try:
        result = train(cfg, data, tracker)
        report = _train_cli()._report(cfg, data, result, tracker)
        out = fidelity_result(args, info, result, report)
        path = write_json(out, args.out, "fidelity")
        log_result(tracker, out, "fidelity", path)
        status = "FINISHED"
    finally:
        tracker.finish(status)
    return 0


def fidelity_result(args: argparse.Namespace, info: dict, result, report) -> dict[str, Any]:
    target = time_to_target(result.history, args.target_db)
    info["loadavg_end"] = _loadavg()
    out = {"benchmark": "fidelity", "machine": info, "settings": _settings(args), "config": args.config,
           "device": result.device, "steps": result.steps, "train_wall_s": result.wall_s,
           "steps_per_s": result.steps / result.wall_s if result.wall_s > 0 else None,
           "target_db": args.target_db, "time_to_target": target,
           "monitored": {k: result.history.get(k, []) for k in ("eval_step", "lsd_db_max", "wall_s")},
           "report": report.to_dict(), "passed": report.passed,
           "summary": {"train_wall_s": result.wall_s, "time_to_target_s": target["wall_s"],
                       **{f"{k}/lsd_db": v.lsd_db for k, v in report.classes.items()},
                       "classes_passing": sum(v.passes for v in report.classes.values())}}
    reached = f"{target['wall_s']:.0f} s (step {target['step']})" if target["reached"] else "not reached"
    print(f"\ntrained {result.steps} steps in {result.wall_s:.0f} s on {result.device}; monitored lsd <= "
          f"{args.target_db:g} dB on all classes: {reached}; report {'PASS' if report.passed else 'some checks fail'} "
          f"({out['summary']['classes_passing']}/{len(report.classes)} classes pass)")
    return out



# --------------------------------------------------------------------------------------------------
# lazy: training memory against HDF5 file size
# --------------------------------------------------------------------------------------------------
def write_big_recordings(path: Path, size_mb: float, fs: float = 12000.0, seed: int = 0) -> dict[str, Any]:
    """An HDF5 recordings file of about ``size_mb`` MB: the 4 simulated classes at 1800 rpm, each 8 s of
    simulation tiled (with a fresh gain and noise per tile) to its share of the size; written in chunks."""
    import h5py

    from vibgan.synthetic import simulate_dataset

    recs = simulate_dataset(faults=("normal", "inner", "outer", "ball"), rpms=(1800.0,), fs=fs, duration=8.0, seed=seed)
    per = int(size_mb * 1024**2 / 4 / len(recs))  # float32 samples per recording
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        grp = f.create_group("recordings")
        for i, r in enumerate(recs):
            ds = grp.create_dataset(f"{i:05d}", shape=(1, per), dtype="float32", chunks=(1, 65536))
            ds.attrs.update({"fs": fs, "label": r.label, "rpm": 1800.0, "load_hp": 0.0, "units": "g"})
            base = r.signal.astype(np.float32)
            for a in range(0, per, base.shape[1]):
                z = min(per, a + base.shape[1])
                tile = base[:, : z - a] * rng.uniform(0.9, 1.1) + rng.normal(0, 0.002, (1, z - a)).astype(np.float32)
                ds[:, a:z] = tile
    return {"file_mb": path.stat().st_size / 1024**2, "write_s": time.perf_counter() - t0}


def run_lazy(args: argparse.Namespace) -> int:
    """Peak RSS of pipelines/train.py with data.lazy on recordings files of growing size (child processes)."""
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="lazy-", dir=_tmp_parent(args.out)))
    tmp_root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    rows, runs = [], []
    try:
        for size in args.sizes_mb:
            h5 = tmp_root / f"recordings-{size:g}MB.h5"
            info = write_big_recordings(h5, size)
            cmd = ["--config", str(CONFIGS / "default.toml"), "--steps", str(args.steps), "--no-tracking",
                   "--no-report", "--out", str(tmp_root / f"train-{size:g}"),
                   "--set", "data.source='files'", "--set", f"data.path={str(h5)!r}", "--set", "data.lazy=true",
                   "--set", f"train.threads={args.threads}", "--set", "train.progress=false",
                   "--set", f"train.checkpoint_every={args.steps}", "--set", f"train.eval_every={args.steps}",
                   "--set", f"train.sample_every={args.steps}"]
            r = peak_rss(ROOT / "pipelines" / "train.py", cmd, env)
            r.update(info, size_mb=size, steps=args.steps)
            h5.unlink(missing_ok=True)
            print(f"  lazy: {info['file_mb']:.0f} MB file: peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"({r['wall_s']:.0f} s, rc {r['rc']})", flush=True)
            if r["rc"] != 0:
                print(r["log_tail"], file=sys.stderr)
            runs.append(r)
            rows.append([f"{info['file_mb']:.0f}", f"{r['peak_rss_mb']:.0f}", f"{r['wall_s']:.0f}", r["rc"]])
    finally:
        if not args.tmp:
            shutil.rmtree(tmp_root, ignore_errors=True)
    result = {"machine": machine(args.threads), "runs": runs,
              "rss_growth_mb_per_gb": _slope([(r["file_mb"] / 1024, r["peak_rss_mb"]) for r in runs if r["rc"] == 0])}
    _print_table(["file MB", "peak RSS MB", "wall s", "rc"], rows)
    print(f"peak RSS growth: {result['rss_growth_mb_per_gb']:.1f} MB per GB of file" if result["rss_growth_mb_per_gb"]
          is not None else "")
    path = write_json(result, out_dir, "lazy")
    tracker = open_tracker(args, "lazy")
    log_result(tracker, result, "lazy", path)
    return 0 if all(r["rc"] == 0 for r in runs) else 1


def _slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x, None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    x, y = np.array(points).T
    return float(np.polyfit(x, y, 1)[0])


# --------------------------------------------------------------------------------------------------
# tracking: concurrent logging and registration against a shared server
# --------------------------------------------------------------------------------------------------
TINY_TRAIN = ["train.batch_size=4", "data.simulate.duration_s=2", "data.segment_length=1024", "train.eval_every=10",
              "train.sample_every=20", "train.checkpoint_every=20", "train.log_every=5", "train.progress=false",
              "train.threads=1", "model.widths=[24,16,8]", "model.d_channels=8"]


def run_tracking(args: argparse.Namespace) -> int:
    """Start --procs trainings at once against --uri, each logging metrics, artifacts and a model version
    under one registered name; afterwards count what the server holds against what each process sent."""
    from mlflow.tracking import MlflowClient

    stamp = time.strftime("%Y%m%d-%H%M%S")
    experiment, name = f"vibgan-concurrency-{stamp}", f"vibgan-concurrency-{stamp}"
    tmp = Path(tempfile.mkdtemp(prefix="tracking-", dir=_tmp_parent(args.out)))
    env = dict(os.environ, OMP_NUM_THREADS="1", MLFLOW_HTTP_REQUEST_MAX_RETRIES="7")
    procs = []
    t0 = time.perf_counter()
    for i in range(args.procs):
        cmd = [sys.executable, str(ROOT / "pipelines" / "train.py"), "--out", str(tmp / f"run{i}"), "--no-report",
               "--steps", str(args.steps), "--seed", str(i), "--tracking-uri", args.uri,
               "--set", f"tracking.experiment={experiment!r}", "--set", f"tracking.register_name={name!r}",
               "--set", "tracking.champion_if='always'", "--set", f"tracking.run_name='proc{i}'"]
        for o in TINY_TRAIN:
            cmd += ["--set", o]
        log = open(tmp / f"run{i}.log", "w")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp), env=env), log))
    rcs = []
    for p, log in procs:
        rcs.append(p.wait())
        log.close()
    wall = time.perf_counter() - t0
    client = MlflowClient(tracking_uri=args.uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    expected_points = args.steps // 5  # train.log_every=5
    per_run = []
    for r in runs:
        hist = client.get_metric_history(r.info.run_id, "loss/d")
        arts = [a.path for a in client.list_artifacts(r.info.run_id)]
        per_run.append({"run": r.data.tags.get("mlflow.runName"), "status": r.info.status,
                        "loss_d_points": len(hist), "metric_keys": len(r.data.metrics), "params": len(r.data.params),
                        "artifact_dirs": sorted(arts)})
    versions = client.search_model_versions(f"name='{name}'")
    champion = client.get_model_version_by_alias(name, "champion").version if versions else None
    lost = {"runs": args.procs - len(runs),
            "metric_points": sum(max(0, expected_points - p["loss_d_points"]) for p in per_run),
            "versions": args.procs - len(versions),
            "unfinished_runs": sum(p["status"] != "FINISHED" for p in per_run)}
    result = {"machine": machine(1), "uri": args.uri, "procs": args.procs, "steps": args.steps, "wall_s": wall,
              "exit_codes": rcs, "runs": per_run, "versions": sorted(int(v.version) for v in versions),
              "champion": champion, "expected_loss_d_points_per_run": expected_points, "lost": lost,
              "summary": {"wall_s": wall, "runs": len(runs), "versions": len(versions), **{f"lost_{k}": v for k, v in lost.items()}}}
    _print_table(["run", "status", "loss/d points", "metric keys", "params", "artifacts"],
                 [[p["run"], p["status"], f"{p['loss_d_points']}/{expected_points}", p["metric_keys"], p["params"],
                   ",".join(p["artifact_dirs"])] for p in sorted(per_run, key=lambda p: p["run"] or "")])
    print(f"{args.procs} processes at once, {wall:.0f} s, exit codes {rcs}; server holds {len(runs)} runs, "
          f"model versions {result['versions']} (champion {champion}); lost: {lost}")
    write_json(result, args.out, "tracking")
    shutil.rmtree(tmp, ignore_errors=True)
    ok = all(rc == 0 for rc in rcs) and not any(lost.values())
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------------
# first-run: `make train` as a new user meets it
# --------------------------------------------------------------------------------------------------
#: the phases of pipelines/train.py, each recognised by how its lines start, in the order they come
FIRST_RUN_PHASES = [("training", ("train:",)), ("calibration", ("calibration:",)),
                    ("evaluation", ("report: generating", "evaluation:")), ("report", ("report:",)),
                    ("registration", ("registration:",)), ("done", ("outputs:",))]


def phase_times(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per phase from timestamped output lines: a phase lasts from its first line to the first line of
    a later phase; "setup" is everything before training (imports, data, the MLflow run)."""
    starts: dict[str, float] = {}
    order = [name for name, _ in FIRST_RUN_PHASES]
    for t, line in lines:
        text = line.strip()
        for name, prefixes in FIRST_RUN_PHASES:
            if name not in starts and any(text.startswith(p) for p in prefixes):
                if all(order.index(n) < order.index(name) for n in starts):  # phases only move forward
                    starts[name] = t
                break
    marks = [("setup", 0.0)] + sorted(starts.items(), key=lambda kv: kv[1]) + [("end", total)]
    out = {name: round(marks[i + 1][1] - t, 1) for i, (name, t) in enumerate(marks[:-1])}
    out.pop("done", None)
    out["total"] = round(total, 1)
    return out


def run_first_run(args: argparse.Namespace) -> int:
    """Run pipelines/train.py on --config in a new folder with a new local MLflow store (what `make train` does on
    a fresh clone, less the install) and time each phase from its output lines."""
    tmp = Path(tempfile.mkdtemp(prefix="first-run-", dir=_tmp_parent(args.out)))
    env = dict(os.environ, VIBGAN_HOME=str(tmp / "home"), PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, str(ROOT / "pipelines" / "train.py"), "--config", str(args.config)]
    for o in args.overrides:
        cmd += ["--set", o]
    load_before = _loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=str(tmp), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[tuple[float, str]] = []
    buf = b""
    last_shown = 0.0
    while True:
        chunk = proc.stdout.read1(4096) if hasattr(proc.stdout, "read1") else proc.stdout.read(4096)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.replace(b"\r", b"\n").split(b"\n")
        now = time.perf_counter() - t0
        for raw in done:
            text = raw.decode("utf-8", "replace")
            if text.strip():
                lines.append((now, text))
                if not text.startswith("train:") or now - last_shown > 30:  # the bar, every 30 s
                    print(f"[{now:6.1f} s] {text}", flush=True)
                    last_shown = now
    rc = proc.wait()
    total = time.perf_counter() - t0
    phases = phase_times(lines, total)
    result = {"machine": machine(int(os.environ.get("OMP_NUM_THREADS", 0) or (os.cpu_count() or 1))),
              "config": str(args.config), "overrides": args.overrides, "exit_code": rc,
              "load_average_before": load_before, "phases_s": phases, "summary": phases}
    print()
    _print_table(["phase", "seconds"], [[k, v] for k, v in phases.items()])
    print(f"exit code {rc}; load average before the run {load_before}")
    write_json(result, args.out, "first-run")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
