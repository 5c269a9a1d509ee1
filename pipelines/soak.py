#!/usr/bin/env python
"""Soak and fuzz vibgan: kill training and generation at random moments, inject faults, fuzz the inputs.

    python pipelines/soak.py                                  # 10 training kills, 4 generation kills, fuzz x 300
    python pipelines/soak.py --kills 20 --fuzz-examples 2000 --json soak.json

What it does, all on the CPU with a tiny configuration (2 classes, segments of 1024, narrow networks):
- training: ``pipelines/train.py`` as a real subprocess, SIGKILLed at a random moment after a new checkpoint
  appeared, then ``--resume``d, ``--kills`` times; a last ``--resume`` finishes the run, whose final checkpoint
  must equal an uninterrupted run of the same config and seed bit for bit. After every kill each checkpoint
  file must load and the next resume must start from the newest complete one.
- generation: ``pipelines/generate.py`` SIGKILLed while writing; the previous file at the target must be
  intact and no half-written file may pass ``read_generated``.
- disk full: ENOSPC injected (in-process) into ``torch.save`` / ``os.replace`` at a random checkpoint: a
  TrainingError, the previous checkpoint loads, and resuming once the disk is back ends as if nothing happened.
- tracking: the MLflow store goes away at a random step (and comes back, or not): training finishes, the
  generator and checkpoints exist, the failure is reported.
- fuzz: the property tests of ``tests/test_reliability.py`` with ``--fuzz-examples`` examples per target.

Prints a table of figures (kills survived, fuzz cases per target, faults injected, data lost: must be 0)
and exits 1 when anything was lost or a check failed. The helpers here are reused by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "pipelines" / "train.py"
GENERATE = ROOT / "pipelines" / "generate.py"
DEFAULT_CONFIG = ROOT / "configs" / "default.toml"

#: A configuration small enough for many subprocess runs on 2 shared cores (one torch thread each).
SMALL = [
    "data.simulate.faults=['normal', 'inner']", "data.simulate.rpms=[1797.0]", "data.simulate.duration_s=2.0",
    "data.segment_length=1024", "model.widths=[24, 16, 8]", "model.res_blocks=[1, 1, 0]",
    "model.d_channels=8", "train.batch_size=4", "train.progress=false", "train.eval_every=4",
    "train.sample_every=1000", "train.log_every=1", "train.threads=1", "tracking.enabled=false",
    # configs/default.toml distils after the last checkpoint (minutes): off here, where kill and resume are tested
    "distill.enabled=false",
]
TEMP_RE = re.compile(r"^\.ckpt_\d+\.pt\.tmp$")


def small_overrides(steps: int, checkpoint_every: int, *extra: str) -> list[str]:
    """The tiny config as ``--set`` values: ``steps`` iterations, a checkpoint every ``checkpoint_every``."""
    return [*SMALL, f"train.steps={steps}", f"train.checkpoint_every={checkpoint_every}", *extra]


def load_small_config(out: str | Path, overrides: list[str]):
    """The same Config that ``pipelines/train.py --out OUT --set ...`` resolves (for in-process runs)."""
    from vibgan.config import load_config

    return load_config(DEFAULT_CONFIG, [*overrides, f"out={str(out)!r}"])


def train_command(out: str | Path, overrides: list[str], resume: bool = False) -> list[str]:
    """``pipelines/train.py`` with the given overrides, no tracking, no fidelity report."""
    cmd = [sys.executable, str(TRAIN), "--config", str(DEFAULT_CONFIG), "--no-tracking", "--no-report",
           "--out", str(out)]
    for o in overrides:
        cmd += ["--set", o]
    return cmd + (["--resume"] if resume else [])


def _env() -> dict[str, str]:
    # one thread everywhere: the machine is shared and the result must not depend on thread counts
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg"}


def checkpoint_steps(ckpt_dir: Path) -> list[int]:
    """Steps of the complete checkpoints (``ckpt_<step>.pt``) in ``ckpt_dir``, ascending."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(p.stem.split("_")[1]) for p in ckpt_dir.glob("ckpt_*.pt"))


def audit_checkpoints(ckpt_dir: Path) -> dict:
    """Load every ``ckpt_*.pt``; list the corrupt ones, the temp files, and anything unexpected.

    A checkpoint is sound when it loads with ``weights_only=True`` and its ``step`` matches its name.
    ``latest`` is what ``latest_checkpoint`` picks: it must be a sound checkpoint, never a temp file.
    """
    from vibgan.checkpoints import latest_checkpoint, load_checkpoint
    from vibgan.errors import VibganError

    sound, corrupt, temps, other = [], [], [], []
    for p in sorted(Path(ckpt_dir).iterdir()) if Path(ckpt_dir).is_dir() else []:
        if p.name.startswith("ckpt_") and p.suffix == ".pt":
            try:
                sd = load_checkpoint(p)
                ok = int(sd["step"]) == int(p.stem.split("_")[1])
            except (VibganError, KeyError, ValueError):
                ok = False
            (sound if ok else corrupt).append(p.name)
        elif TEMP_RE.match(p.name):
            temps.append(p.name)
        else:
            other.append(p.name)
    latest = latest_checkpoint(Path(ckpt_dir)) if Path(ckpt_dir).is_dir() else None
    return {"sound": sound, "corrupt": corrupt, "temps": temps, "other": other,
            "latest": latest.name if latest is not None else None}


def _wait_for_newer_checkpoint(proc: subprocess.Popen, ckpt_dir: Path, after: int, timeout_s: float) -> bool:
    """Wait until a checkpoint newer than step ``after`` exists (True), or the process ends / time runs out."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        steps = checkpoint_steps(ckpt_dir)
        if steps and steps[-1] > after:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def _random_kill_moment(proc: subprocess.Popen, ckpt_dir: Path, after: int, rng: random.Random,
                        timeout_s: float) -> str:
    """Return at a random moment after the first new checkpoint, and say which kind of moment it is.

    ``random``: 1 or 2 checkpoints later, then a random fraction (0-1.5) of the measured time between two
    checkpoints, so the kill lands in a step, in an evaluation or (rarely) in a checkpoint write.
    ``save`` (one cycle in three): the moment a checkpoint temp file appears, i.e. in the middle of writing it.
    """
    if not _wait_for_newer_checkpoint(proc, ckpt_dir, after, timeout_s):
        return "none"
    if rng.random() < 1 / 3:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and proc.poll() is None:
            if any(TEMP_RE.match(e.name) for e in os.scandir(ckpt_dir)):
                return "save"
            time.sleep(0.0005)
        return "none"
    t_first, first = time.monotonic(), checkpoint_steps(ckpt_dir)[-1]
    if not _wait_for_newer_checkpoint(proc, ckpt_dir, first, timeout_s):
        return "none"
    interval = time.monotonic() - t_first
    if rng.random() < 0.5 and not _wait_for_newer_checkpoint(proc, ckpt_dir, checkpoint_steps(ckpt_dir)[-1], timeout_s):
        return "none"
    time.sleep(rng.uniform(0.0, 1.5 * interval))
    return "random"


def _resumed_step(log: str) -> int | None:
    m = re.search(r"resumed from \S+ at step (\d+)", log)
    return int(m.group(1)) if m else None


def kill_and_resume(out: Path, overrides: list[str], kills: int, rng: random.Random, *,
                    timeout_s: float = 120.0) -> dict:
    """Run ``pipelines/train.py`` and SIGKILL it ``kills`` times at random moments, resuming each time; then
    finish with ``--resume``. Returns the figures and the problems found (an empty ``problems`` is success).

    Each cycle waits for a checkpoint newer than the one it resumed from (so every cycle makes progress), then
    for a random moment (``_random_kill_moment``), then kills. After each kill: every ``ckpt_*.pt`` must load, and the next run must
    resume from the newest of them.
    """
    ckpt_dir = out / "checkpoints"
    logs = out.parent / f"{out.name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    figures = {"kills": 0, "kills_landed": 0, "kills_aimed_at_a_save": 0, "finished_before_kill": 0, "resumes": 0,
               "temp_files_seen": 0,
               "corrupt_checkpoints": 0, "resumed_from_older": 0, "kill_steps": [], "problems": []}
    expected_resume: int | None = None
    for cycle in range(kills + 1):
        last = cycle == kills
        resume = bool(checkpoint_steps(ckpt_dir))
        log_path = logs / f"run{cycle:02d}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(train_command(out, overrides, resume=resume), stdout=log, stderr=subprocess.STDOUT,
                                    env=_env(), cwd=out.parent, start_new_session=True)
            try:
                before = checkpoint_steps(ckpt_dir)[-1] if resume else 0
                if last:
                    proc.wait(timeout=timeout_s)
                else:
                    figures["kills"] += 1
                    moment = _random_kill_moment(proc, ckpt_dir, before, rng, timeout_s)
                    if proc.poll() is None:
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=30)
                        figures["kills_landed"] += 1
                        figures["kills_aimed_at_a_save"] += moment == "save"
                    else:
                        figures["finished_before_kill"] += 1
            finally:
                if proc.poll() is None:  # only the process this function started
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
        text = log_path.read_text(errors="replace")
        if resume:
            figures["resumes"] += 1
            got = _resumed_step(text)
            if expected_resume is not None and got != expected_resume:
                figures["resumed_from_older"] += 1
                figures["problems"].append(f"run {cycle}: resumed at step {got}, newest sound checkpoint was "
                                           f"{expected_resume}")
        killed = proc.returncode == -signal.SIGKILL
        if not killed and proc.returncode != 0:
            figures["problems"].append(f"run {cycle}: exit status {proc.returncode}: {text[-800:]}")
            break
        audit = audit_checkpoints(ckpt_dir)
        figures["temp_files_seen"] += len(audit["temps"])  # a kill landed inside a checkpoint write
        figures["corrupt_checkpoints"] += len(audit["corrupt"])
        if audit["corrupt"] or audit["other"]:
            figures["problems"].append(f"after run {cycle}: corrupt {audit['corrupt']}, unexpected {audit['other']}")
        if audit["latest"] is None or audit["latest"] not in audit["sound"]:
            figures["problems"].append(f"after run {cycle}: latest_checkpoint picks {audit['latest']!r}")
        expected_resume = int(audit["latest"][len("ckpt_"):-len(".pt")]) if audit["latest"] else None
        if killed:
            figures["kill_steps"].append(expected_resume or 0)
        else:
            break  # finished (the last run, or one that ended before its kill): nothing left to resume
    return figures


def reference_process(out: Path, overrides: list[str]) -> subprocess.Popen:
    """Start the uninterrupted run (the same command, never killed); the caller waits for it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.parent / f"{out.name}.log", "w")  # noqa: SIM115 (closed with the process by the caller)
    proc = subprocess.Popen(train_command(out, overrides), stdout=log, stderr=subprocess.STDOUT, env=_env(),
                            cwd=out.parent, start_new_session=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def compare_checkpoints(a: Path, b: Path) -> list[str]:
    """Where two checkpoints differ (empty: bit-identical training state): weights, optimisers, RNG states,
    step, rollbacks and the logged history (except wall-clock times)."""
    import torch

    from vibgan.checkpoints import load_checkpoint

    sa, sb = load_checkpoint(a), load_checkpoint(b)
    diffs: list[str] = []

    def same(x, y, where: str) -> None:
        if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
            if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape
                    and x.dtype == y.dtype and torch.equal(x, y)):
                diffs.append(where)
        elif isinstance(x, dict) and isinstance(y, dict):
            if set(x) != set(y):
                diffs.append(f"{where}: keys {sorted(set(x) ^ set(y), key=str)}")
            for k in set(x) & set(y):
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
            if len(x) != len(y):
                diffs.append(f"{where}: length {len(x)} != {len(y)}")
            for i, (u, v) in enumerate(zip(x, y)):
                same(u, v, f"{where}[{i}]")
        elif x != y:
            diffs.append(f"{where}: {x!r} != {y!r}")

    for key in ("G", "D", "G_ema", "opt_g", "opt_d", "gen", "torch_rng", "step", "rollbacks"):
        same(sa.get(key), sb.get(key), key)
    ha = {k: v for k, v in sa["history"].items() if k != "wall_s"}
    hb = {k: v for k, v in sb["history"].items() if k != "wall_s"}
    same(ha, hb, "history")
    return diffs


def kill_generation(model: Path, target: Path, rng: random.Random, *, n: int = 200_000, batch: int = 8,
                    timeout_s: float = 90.0) -> dict:
    """SIGKILL ``pipelines/generate.py`` while it writes ``target``; return what was left behind.

    ``previous``: the bytes at ``target`` before (None: no file). Checks: ``target`` holds exactly the previous
    bytes (or does not exist), and every leftover temp file fails ``read_generated`` or is complete.
    """
    from vibgan.errors import VibganError
    from vibgan.exchange import read_generated

    previous = target.read_bytes() if target.exists() else None
    before = {p.name for p in target.parent.iterdir()}
    cmd = [sys.executable, str(GENERATE), "--model", str(model), "--n", str(n), "--batch-size", str(batch),
           "--seed", "1", "--out", str(target), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=target.parent,
                            start_new_session=True)
    res = {"killed": False, "target_intact": False, "leftovers": [], "half_written_accepted": 0, "problems": []}
    try:
        threshold = rng.randint(20_000, 400_000)  # bytes of the temp file before the kill: anywhere in writing
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and proc.poll() is None:
            tmp = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.") and p.name not in before]
            if tmp and tmp[0].exists() and tmp[0].stat().st_size > threshold:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            res["killed"] = True
        else:
            res["problems"].append(f"generate.py ended before the kill (status {proc.returncode}): "
                                   f"{proc.stderr.read().decode(errors='replace')[-500:]}")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    now = target.read_bytes() if target.exists() else None
    res["target_intact"] = now == previous
    if not res["target_intact"]:
        res["problems"].append(f"{target}: changed by a killed run ({len(now or b'')} bytes now)")
    for p in sorted(target.parent.iterdir()):
        if p.name in before or p == target:
            continue
        res["leftovers"].append(p.name)
        try:
            got = read_generated(p)
        except VibganError:
            continue
        if len(got) != 2 * n:  # a complete file that was not yet renamed would hold every segment
            res["half_written_accepted"] += 1
            res["problems"].append(f"{p.name}: a half-written file ({len(got)} of {2 * n} segments) passes "
                                   "read_generated")
    for name in res["leftovers"]:  # temp files a SIGKILL leaves behind: nothing else cleans them up
        (target.parent / name).unlink(missing_ok=True)
    return res


# --------------------------------------------------------------------------------------------------
# In-process fault injection: disk full, tracking store away
# --------------------------------------------------------------------------------------------------
def disk_full_trial(work: Path, rng: random.Random, mode: str, reference: Path | None = None, steps: int = 6) -> dict:
    """Train the tiny config; ENOSPC at a random checkpoint (``mode``: ``save`` before any byte, ``partial``
    after half the bytes, ``replace`` at the rename). Then resume with the disk back and finish.

    Returns figures and problems: the error must be a TrainingError naming the disk error, the previous
    checkpoint must load, no temp file may remain, and the finished run must equal ``reference`` (the final
    checkpoint of an uninterrupted run of ``steps`` steps) when given.
    """
    import errno

    import torch

    from vibgan.checkpoints import latest_checkpoint, load_checkpoint
    from vibgan.datasets import prepare_data
    from vibgan.errors import TrainingError
    from vibgan.train import train

    every = 2
    cfg = load_small_config(work, small_overrides(steps, every))
    data = prepare_data(cfg)
    fail_at = rng.randint(2, steps // every)  # the n-th checkpoint write fails (the first always succeeds)
    calls = {"save": 0, "replace": 0}
    real_save, real_replace = torch.save, os.replace
    res = {"mode": mode, "fail_at_checkpoint": fail_at, "problems": [], "injected": 0}

    def disk_full():
        res["injected"] += 1
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def save(obj, f, *a, **k):
        calls["save"] += 1
        if mode in ("save", "partial") and calls["save"] == fail_at:
            if mode == "partial":
                Path(f).write_bytes(b"PK\x03\x04" + b"\0" * 4096)  # half a zip, then the disk is full
            raise disk_full()
        return real_save(obj, f, *a, **k)

    def replace(src, dst, *a, **k):
        if Path(dst).name.startswith("ckpt_"):
            calls["replace"] += 1
            if mode == "replace" and calls["replace"] == fail_at:
                raise disk_full()
        return real_replace(src, dst, *a, **k)

    threads = torch.get_num_threads()
    torch.save, os.replace = save, replace
    try:
        train(cfg, data)
        res["problems"].append("no error although the disk was full")
    except TrainingError as e:
        res["message"] = str(e)
        if "No space left on device" not in str(e) or "intact" not in str(e):
            res["problems"].append(f"unclear message: {e}")
    except Exception as e:  # noqa: BLE001 (anything else is the finding)
        res["problems"].append(f"{type(e).__name__} instead of TrainingError: {e}")
    finally:
        torch.save, os.replace = real_save, real_replace
        torch.set_num_threads(threads)
    audit = audit_checkpoints(work / "checkpoints")
    if audit["corrupt"] or audit["temps"] or audit["other"]:
        res["problems"].append(f"left behind: corrupt {audit['corrupt']}, temp {audit['temps']}, other {audit['other']}")
    last = latest_checkpoint(work / "checkpoints")
    expected = (fail_at - 1) * every
    if last is None or int(load_checkpoint(last)["step"]) != expected:
        res["problems"].append(f"previous checkpoint: expected step {expected}, found {last}")
    try:
        done = train(cfg, data, resume=True)  # the disk is back
        if done.steps != steps:
            res["problems"].append(f"resumed run ended at step {done.steps}")
        if reference is not None:
            diffs = compare_checkpoints(reference, latest_checkpoint(work / "checkpoints"))
            if diffs:
                res["problems"].append(f"resumed run differs from the uninterrupted one: {diffs[:5]}")
    finally:
        torch.set_num_threads(threads)
    return res


class FlakyClient:
    """Forwards to a real MlflowClient, but every call raises ConnectionError while ``down`` is true."""

    def __init__(self, real) -> None:
        self.real, self.down, self.refused, self.calls = real, False, 0, 0

    def __getattr__(self, name):
        attr = getattr(self.real, name)
        if not callable(attr):
            return attr

        def call(*a, **k):
            self.calls += 1
            if self.down:
                self.refused += 1
                raise ConnectionError("Connection refused (simulated outage)")
            return attr(*a, **k)

        return call


def tracking_outage_trial(work: Path, rng: random.Random, comes_back: bool) -> dict:
    """Train the tiny config tracked in a local sqlite MLflow store that goes away at a random step (and comes
    back two steps later, or never). Training must finish with its generator and checkpoints; the failures
    must be reported (tag and ``tracking_failures.json``); when the store comes back, nothing is unlogged."""
    import torch

    from vibgan import registry, tracking
    from vibgan.datasets import prepare_data
    from vibgan.train import train

    steps = 8
    uri = f"sqlite:///{work / 'mlflow.db'}"
    cfg = load_small_config(work / "out", small_overrides(steps, 2, "tracking.enabled=true", f"tracking.uri={uri!r}"))
    data = prepare_data(cfg)
    tracker = tracking.start_run(cfg, data=data)
    tracker.retry_interval_s = 0.0
    flaky = tracker.client = FlakyClient(tracker.client)
    down_from = rng.randint(1, steps - 3)
    up_at = down_from + 2 if comes_back else steps + 1
    res = {"comes_back": comes_back, "down_from": down_from, "problems": []}

    def after_step(state):
        flaky.down = down_from <= state.step < up_at

    threads = torch.get_num_threads()
    try:
        result = train(cfg, data, tracker, hooks={"after_step": after_step})
        info = registry.log_generator(tracker, result, cfg, None)
        tracker.finish("FINISHED")
    finally:
        torch.set_num_threads(threads)
    res["refused_calls"] = flaky.refused
    res["registered"] = info
    out = work / "out"
    if not (result.generator_dir / "generator.safetensors").is_file() or not (out / "mlflow_model" / "MLmodel").is_file():
        res["problems"].append("the generator or the local MLflow model is missing")
    if not list((out / "checkpoints").glob("ckpt_*.pt")):
        res["problems"].append("no checkpoint")
    report = out / tracking.FAILURES_FILE
    if flaky.refused and not report.is_file():
        res["problems"].append("store failures were not reported in tracking_failures.json")
    if report.is_file():
        rep = json.loads(report.read_text())
        res["unlogged"] = rep["unlogged"]["metric_points"]
        if comes_back and rep["unlogged"]["metric_points"]:
            res["problems"].append(f"{rep['unlogged']['metric_points']} metric points lost although the store came back")
        if not comes_back and rep["unlogged"]["metric_points"] != len(rep["metrics_unlogged"]):
            res["problems"].append("unlogged metric points are not all listed in the failure report")
    if comes_back:
        from mlflow.tracking import MlflowClient

        run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
        if run.info.status != "FINISHED":
            res["problems"].append(f"run status {run.info.status} although the store came back")
        hist = [m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(tracker.run_id, "loss/d")]
        if sorted(hist) != list(range(1, steps + 1)):
            res["problems"].append(f"loss/d logged at steps {sorted(hist)}, expected 1..{steps}")
    return res


# --------------------------------------------------------------------------------------------------
# The soak run
# --------------------------------------------------------------------------------------------------
def run_fuzz(examples: int, work: Path) -> tuple[dict[str, dict[str, int]], int, str]:
    """The property tests of tests/test_reliability.py with ``examples`` examples each: ({"cases": per target,
    "hangs": per target}, pytest status, its last lines)."""
    counts = work / "fuzz_counts.json"
    env = {**_env(), "VIBGAN_FUZZ_EXAMPLES": str(examples), "VIBGAN_FUZZ_COUNTS": str(counts)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_reliability.py"), "-k", "fuzz"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    got = json.loads(counts.read_text()) if counts.is_file() else {}
    return got, proc.returncode, "\n".join(proc.stdout.strip().splitlines()[-15:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs of training runs (default 10)")
    p.add_argument("--steps", type=int, default=0, help="training steps of the killed run (default: 8 per kill + 4)")
    p.add_argument("--gen-kills", type=int, default=4, help="SIGKILLs of generation runs (default 4)")
    p.add_argument("--disk-full", type=int, default=3, help="disk-full injections (default 3)")
    p.add_argument("--outages", type=int, default=2, help="tracking-store outages (default 2)")
    p.add_argument("--fuzz-examples", type=int, default=300, help="hypothesis examples per fuzz target (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random kill moments and fault choices")
    p.add_argument("--work", help="working folder (default: a temporary folder, removed at the end)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    rng = random.Random(args.seed)
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="vibgan-soak-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    fig: dict = {"seed": args.seed}
    problems: list[str] = []

    # ---- training killed and resumed
    steps = args.steps or 8 * args.kills + 4
    overrides = small_overrides(steps, 2)
    t0 = time.perf_counter()
    ref = reference_process(work / "reference", overrides)
    kr = kill_and_resume(work / "killed", overrides, args.kills, rng)
    ref.wait(timeout=600)
    ref.log.close()
    problems += kr["problems"]
    equal = None
    if ref.returncode != 0:
        problems.append(f"reference run failed with status {ref.returncode}")
    else:
        from vibgan.checkpoints import latest_checkpoint

        diffs = compare_checkpoints(latest_checkpoint(work / "reference" / "checkpoints"),
                                    latest_checkpoint(work / "killed" / "checkpoints"))
        equal = not diffs
        if diffs:
            problems.append(f"killed-and-resumed run differs from the uninterrupted one: {diffs[:8]}")
    fig["training"] = {**{k: v for k, v in kr.items() if k != "problems"}, "steps": steps,
                       "final_equals_uninterrupted": equal, "wall_s": round(time.perf_counter() - t0, 1)}
    print(f"training: {kr['kills_landed']}/{kr['kills']} kills landed at steps {kr['kill_steps']}, "
          f"{kr['resumes']} resumes, final equal to uninterrupted: {equal}", flush=True)

    # ---- generation killed
    t0 = time.perf_counter()
    gen_dir = work / "reference" / "generator"
    g = {"kills": 0, "kills_landed": 0, "targets_intact": 0, "half_written_accepted": 0, "leftover_temp_files": 0}
    outdir = work / "generated"
    outdir.mkdir(exist_ok=True)
    for i in range(args.gen_kills):
        target = outdir / "gen.h5"
        if i % 2 == 0:
            target.write_bytes(b"the previous file %d" % i)
        else:
            target.unlink(missing_ok=True)
        r = kill_generation(gen_dir, target, rng)
        g["kills"] += 1
        g["kills_landed"] += r["killed"]
        g["targets_intact"] += r["target_intact"]
        g["half_written_accepted"] += r["half_written_accepted"]
        g["leftover_temp_files"] += len(r["leftovers"])
        problems += r["problems"]
    g["wall_s"] = round(time.perf_counter() - t0, 1)
    fig["generation"] = g
    print(f"generation: {g['kills_landed']}/{g['kills']} kills landed, targets intact {g['targets_intact']}, "
          f"half-written files accepted {g['half_written_accepted']}", flush=True)

    # ---- disk full
    t0 = time.perf_counter()
    from vibgan.checkpoints import latest_checkpoint

    small_ref = work / "disk-ref"
    import torch

    from vibgan.datasets import prepare_data
    from vibgan.train import train

    threads = torch.get_num_threads()
    cfg = load_small_config(small_ref, small_overrides(6, 2))
    train(cfg, prepare_data(cfg))
    torch.set_num_threads(threads)
    d = {"injections": 0, "clear_errors": 0, "resumed_equal": 0}
    modes = ["save", "partial", "replace"]
    for i in range(args.disk_full):
        r = disk_full_trial(work / f"disk-{i}", rng, modes[i % 3], latest_checkpoint(small_ref / "checkpoints"))
        d["injections"] += r["injected"]
        d["clear_errors"] += "message" in r and not any("unclear" in q for q in r["problems"])
        d["resumed_equal"] += not any("differs" in q for q in r["problems"])
        problems += [f"disk full ({r['mode']}): {q}" for q in r["problems"]]
    d["wall_s"] = round(time.perf_counter() - t0, 1)
    fig["disk_full"] = d
    print(f"disk full: {d['injections']} injections, {d['clear_errors']} clear errors, "
          f"{d['resumed_equal']} resumed runs equal to uninterrupted", flush=True)

    # ---- tracking store outages
    t0 = time.perf_counter()
    o = {"outages": 0, "refused_calls": 0, "runs_finished_with_model": 0}
    for i in range(args.outages):
        r = tracking_outage_trial(work / f"outage-{i}", rng, comes_back=i % 2 == 0)
        o["outages"] += 1
        o["refused_calls"] += r["refused_calls"]
        o["runs_finished_with_model"] += not any("missing" in q for q in r["problems"])
        problems += [f"tracking outage: {q}" for q in r["problems"]]
    o["wall_s"] = round(time.perf_counter() - t0, 1)
    fig["tracking"] = o
    print(f"tracking: {o['outages']} outages, {o['refused_calls']} refused store calls, "
          f"{o['runs_finished_with_model']} runs finished with their model", flush=True)

    # ---- fuzz
    t0 = time.perf_counter()
    got, status, tail = run_fuzz(args.fuzz_examples, work) if args.fuzz_examples > 0 else ({}, 0, "")
    counts, hangs = got.get("cases", {}), got.get("hangs", {})
    if status != 0:
        problems.append(f"fuzz tests failed (pytest status {status}):\n{tail}")
    fig["fuzz"] = {"cases": counts, "total": sum(counts.values()), "hangs": hangs, "pytest_status": status,
                   "wall_s": round(time.perf_counter() - t0, 1)}
    print(f"fuzz: {sum(counts.values())} cases, {sum(hangs.values())} hung in libhdf5, pytest status {status}",
          flush=True)

    lost = (kr["corrupt_checkpoints"] + kr["resumed_from_older"] + (0 if equal else 1)
            + (g["kills"] - g["targets_intact"]) + g["half_written_accepted"]
            + sum(1 for q in problems if q.startswith("disk full") and ("previous checkpoint" in q or "differs" in q))
            + sum(1 for q in problems if q.startswith("tracking outage") and ("missing" in q or "lost" in q)))
    fig["data_lost"] = lost
    fig["problems"] = problems
    fig["wall_s"] = round(time.perf_counter() - t_start, 1)
    print()
    print(table(fig))
    if problems:
        print("\nproblems:")
        for q in problems:
            print(f"- {q}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 1 if problems or lost else 0


def table(fig: dict) -> str:
    """The figures as a markdown table."""
    t, g, d, o, f = fig["training"], fig["generation"], fig["disk_full"], fig["tracking"], fig["fuzz"]
    rows = [
        ("training kills survived (SIGKILL, then --resume)", f"{t['kills_landed']} of {t['kills']} "
         f"({t['finished_before_kill']} runs ended before the kill)"),
        ("resumes; resumed from an older checkpoint than the newest", f"{t['resumes']}; {t['resumed_from_older']}"),
        ("kills aimed at a checkpoint write; temp files left by a kill (ignored on resume)",
         f"{t['kills_aimed_at_a_save']}; {t['temp_files_seen']}"),
        ("checkpoints corrupt after a kill", str(t["corrupt_checkpoints"])),
        ("final state equals the uninterrupted run (G, D, G_ema, optimisers, RNG, history)",
         str(t["final_equals_uninterrupted"])),
        ("generation kills survived; target intact", f"{g['kills_landed']} of {g['kills']}; {g['targets_intact']}"),
        ("half-written generation files that pass read_generated", str(g["half_written_accepted"])),
        ("disk-full faults injected; clear TrainingError; resumed = uninterrupted",
         f"{d['injections']}; {d['clear_errors']}; {d['resumed_equal']}"),
        ("tracking-store outages; refused store calls; runs finished with their model",
         f"{o['outages']}; {o['refused_calls']}; {o['runs_finished_with_model']}"),
    ]
    for target, n in sorted(f["cases"].items()):
        rows.append((f"fuzz cases: {target}", str(n)))
    rows.append(("fuzz cases in all (pytest status)", f"{f['total']} ({f['pytest_status']})"))
    for target, n in sorted(f["hangs"].items()):
        rows.append((f"fuzz cases that hung in libhdf5 (child killed after 20 s): {target}", str(n)))
    faults = t["kills_landed"] + g["kills_landed"] + d["injections"] + o["outages"]
    rows.append(("faults injected in all", str(faults)))
    rows.append(("data lost (must be 0)", str(fig["data_lost"])))
    rows.append(("wall time", f"{fig['wall_s']:.0f} s"))
    w = max(len(r[0]) for r in rows)
    lines = [f"| {'figure'.ljust(w)} | value |", f"| {'-' * w} | --- |"]
    lines += [f"| {a.ljust(w)} | {b} |" for a, b in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
