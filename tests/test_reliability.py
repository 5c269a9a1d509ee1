"""Reliability: killed training and generation, a full disk, a failing tracking store, fuzzed inputs,
absurd requests and untrusted files.

The kill tests run the real CLIs as subprocesses and SIGKILL them; the helpers live in pipelines/soak.py,
which runs the same checks for longer (figures in docs/RELIABILITY.md). The property tests count their
cases in ``CASES``; ``test_fuzz_zz_case_counts`` prints the counts (``-s``), and writes them to the file
named by ``VIBGAN_FUZZ_COUNTS``. ``VIBGAN_FUZZ_EXAMPLES`` sets the examples per target (default 60).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pickle
import random
import re
import select
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import load_script
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vibgan import registry, serving, tracking
from vibgan.checkpoints import latest_checkpoint, load_checkpoint
from vibgan.config import Config, flatten, load_config, to_dict
from vibgan.datasets import prepare_data
from vibgan.errors import ConfigError, DataError, ModelError, TrainingError, VibganError
from vibgan.exchange import read_generated, write_generated
from vibgan.generator import TrainedGenerator
from vibgan.recordings import load
from vibgan.train import train

ROOT = Path(__file__).resolve().parents[1]


soak = load_script("pipelines/soak.py")
train_cli = load_script("pipelines/train.py")
generate_cli = load_script("pipelines/generate.py")

EXAMPLES = int(os.environ.get("VIBGAN_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
CASES: Counter = Counter()  # fuzz target -> cases run
HANGS: Counter = Counter()  # fuzz target -> cases that hung inside libhdf5 (killed child processes)


class Evil:
    """Unpickling this creates a marker directory: the proof that a planted pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


class Hang(Exception):
    """A call ran past its time limit."""


@contextlib.contextmanager
def bounded(seconds: float):
    """Fail (raise Hang) if the block runs longer than ``seconds``: no input may make a call hang."""
    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def in_child(fn, timeout_s: float = 20.0) -> str:
    """Run ``fn`` in a forked child and say how it ended: ``ok``, ``vibgan`` (a VibganError), ``hang`` (still
    running after ``timeout_s``: killed), or ``TypeName: message`` for any other exception.

    For HDF5: libhdf5 can loop forever on a corrupt file while holding the GIL, which no in-process time
    limit (``bounded``) can interrupt; a child process can always be killed.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any pytest/atexit code
        try:
            os.close(r)
            try:
                fn()
                msg = "ok"
            except VibganError:
                msg = "vibgan"
            except BaseException as e:  # noqa: BLE001 (any other exception is the finding)
                msg = f"{type(e).__name__}: {str(e)[:300]}"
            os.write(w, msg.encode("utf-8", "replace"))
        finally:
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout_s)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return "hang"
        chunks = []
        while chunk := os.read(r, 4096):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace") or "child died without a word"
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def run_train(cfg, data, *args, **kwargs):
    """train() with torch's thread count restored afterwards (the small config sets one thread)."""
    threads = torch.get_num_threads()
    try:
        return train(cfg, data, *args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-step run of the small config: checkpoints, generator directory, the loaded generator."""
    out = tmp_path_factory.mktemp("tiny")
    cfg = soak.load_small_config(out, soak.small_overrides(4, 2))
    result = run_train(cfg, prepare_data(cfg))
    return result


@pytest.fixture(scope="module")
def gen(tiny) -> TrainedGenerator:
    return registry.load_generator(tiny.generator_dir)


# --------------------------------------------------------------------------------------------------
# 1. Killed training: SIGKILL at random moments, resume, same result as an uninterrupted run
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path):
    overrides = soak.small_overrides(32, 2)
    ref = soak.reference_process(tmp_path / "reference", overrides)  # runs beside the killed one
    try:
        fig = soak.kill_and_resume(tmp_path / "killed", overrides, kills=3, rng=random.Random(os.getpid()))
        ref.wait(timeout=300)
    finally:
        if ref.poll() is None:
            os.kill(ref.pid, signal.SIGKILL)
            ref.wait()
        ref.log.close()
    print("kill/resume figures:", {k: v for k, v in fig.items() if k != "problems"})
    assert fig["problems"] == []
    assert fig["kills_landed"] == 3 and fig["resumes"] == 3
    assert fig["corrupt_checkpoints"] == 0 and fig["resumed_from_older"] == 0
    assert ref.returncode == 0, (tmp_path / "reference.log").read_text()
    a = latest_checkpoint(tmp_path / "reference" / "checkpoints")
    b = latest_checkpoint(tmp_path / "killed" / "checkpoints")
    assert a.name == b.name == "ckpt_00000032.pt"
    assert soak.compare_checkpoints(a, b) == []  # G, D, G_ema, optimisers, RNG states, step, history
    for name in ("generator.safetensors", "generator.json"):
        assert (tmp_path / "reference" / "generator" / name).read_bytes() == \
            (tmp_path / "killed" / "generator" / name).read_bytes()


def test_temp_files_are_never_taken_for_checkpoints(tiny, tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    shutil.copy(latest_checkpoint(tiny.out_dir / "checkpoints"), ckpt / "ckpt_00000004.pt")
    (ckpt / ".ckpt_00000006.pt.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")  # what a kill mid-save leaves
    (ckpt / "ckpt_00000008.pt.tmp").write_bytes(b"")
    assert latest_checkpoint(ckpt).name == "ckpt_00000004.pt"
    audit = soak.audit_checkpoints(ckpt)
    assert audit["sound"] == ["ckpt_00000004.pt"] and audit["temps"] == [".ckpt_00000006.pt.tmp"]
    with pytest.raises(ModelError, match="refused or unreadable"):
        load_checkpoint(ckpt / ".ckpt_00000006.pt.tmp")


# --------------------------------------------------------------------------------------------------
# 2. Disk full / unwritable output
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def disk_reference(tmp_path_factory) -> Path:
    """The final checkpoint of an uninterrupted 4-step run (what a run hit by a full disk must end as)."""
    out = tmp_path_factory.mktemp("disk-ref")
    cfg = soak.load_small_config(out, soak.small_overrides(4, 2))
    run_train(cfg, prepare_data(cfg))
    return latest_checkpoint(out / "checkpoints")


@pytest.mark.parametrize("mode", ["save", "partial", "replace"])
def test_disk_full_is_a_training_error_and_the_previous_checkpoint_survives(mode, disk_reference, tmp_path):
    """ENOSPC from torch.save (before any byte / after half the bytes) or from the rename: a TrainingError
    naming the disk error and saying the previous checkpoint is intact; it loads; no temp file remains;
    resuming once the disk is back ends bit-identical to an uninterrupted run."""
    r = soak.disk_full_trial(tmp_path, random.Random(mode), mode, reference=disk_reference, steps=4)
    assert r["injected"] == 1
    assert r["problems"] == []
    assert "No space left on device" in r["message"] and "intact" in r["message"]


def test_unwritable_output_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = train_cli.main(["--config", str(soak.DEFAULT_CONFIG), "--no-tracking", "--no-report",
                           "--out", str(blocker / "run"), *sum((["--set", o] for o in soak.small_overrides(4, 2)), [])])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error:" in err and str(blocker / "run") in err and "Traceback" not in err


@pytest.mark.parametrize("part", ["weights", "json"])
def test_disk_full_when_saving_the_generator(tmp_path, monkeypatch, part):
    """The disk fills up at the very end: a TrainingError, and the final checkpoint is there to resume from."""
    import safetensors
    import safetensors.torch

    if part == "weights":  # safetensors reports I/O errors as SafetensorError, not OSError
        def full(*a, **k):
            raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on device "
                                              "(os error 28)")

        monkeypatch.setattr(safetensors.torch, "save_file", full)
    else:
        real = Path.write_text

        def write_text(self, *a, **k):
            if self.name in ("generator.json", ".generator.json.tmp"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "write_text", write_text)
    cfg = soak.load_small_config(tmp_path, soak.small_overrides(2, 2))
    with pytest.raises(TrainingError, match="No space left on device.*intact"):
        run_train(cfg, prepare_data(cfg))
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))["step"] == 2  # resumable


# --------------------------------------------------------------------------------------------------
# 3. The MLflow store failing mid-run
# --------------------------------------------------------------------------------------------------
def test_store_gone_mid_run_training_finishes_and_reports(tmp_path, monkeypatch, capsys):
    """pipelines/train.py with a store that stops answering after a few calls and never comes back:
    exit 0, checkpoints, generator and local MLflow model on disk, the failure reported on stderr and in
    tracking_failures.json with every unlogged metric point listed. (A store that comes back loses nothing:
    tests/test_tracking.py::test_store_failing_mid_run_loses_nothing, and pipelines/soak.py.)"""
    real_start = tracking.start_run
    flaky = {}

    def start_run(cfg, *a, **k):
        tracker = real_start(cfg, *a, **k)
        tracker.retry_interval_s = 0.0
        client = tracker.client = soak.FlakyClient(tracker.client)
        real_log_metrics = tracker.log_metrics

        def log_metrics(metrics, step):
            client.down = client.down or step >= 2  # the store goes away at step 2, for good
            real_log_metrics(metrics, step)

        tracker.log_metrics = log_metrics
        flaky["client"], flaky["tracker"] = client, tracker
        return tracker

    monkeypatch.setattr(tracking, "start_run", start_run)
    out = tmp_path / "run"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--config", str(soak.DEFAULT_CONFIG), "--no-report", "--out", str(out), "--tracking-uri", uri,
            *sum((["--set", o] for o in soak.small_overrides(4, 2) if not o.startswith("tracking.")), [])]
    code = train_cli.main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    assert flaky["client"].refused > 0
    assert sorted(p.name for p in (out / "checkpoints").glob("ckpt_*.pt")) == ["ckpt_00000002.pt", "ckpt_00000004.pt"]
    assert (out / "generator" / "generator.safetensors").is_file() and (out / "mlflow_model" / "MLmodel").is_file()
    assert registry.load_generator(out / "mlflow_model").classes == ["normal", "inner"]
    assert "warning: MLflow logging failed" in err and "could not be logged" in err
    rep = json.loads((out / tracking.FAILURES_FILE).read_text())
    assert rep["failed_calls"] == flaky["client"].refused and rep["unlogged"]["metric_points"] > 0
    assert len(rep["metrics_unlogged"]) == rep["unlogged"]["metric_points"]
    assert {m["step"] for m in rep["metrics_unlogged"]} >= {2, 4}


# --------------------------------------------------------------------------------------------------
# 4. Generation interrupted
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("previous", [True, False])
def test_killed_generation_leaves_the_previous_file_or_none(tiny, tmp_path, previous):
    target = tmp_path / "gen.h5"
    if previous:
        write_generated(target, np.zeros((3, 1, 1024), np.float32), "normal", 12000.0)
    before = target.read_bytes() if previous else None
    r = soak.kill_generation(tiny.generator_dir, target, random.Random(int(previous)))
    assert r["killed"] and r["problems"] == []
    assert (target.read_bytes() if target.exists() else None) == before
    if previous:
        assert len(read_generated(target)) == 3
    assert r["half_written_accepted"] == 0
    assert all(n.startswith(".gen.h5.") and n.endswith(".tmp") for n in r["leftovers"])


# --------------------------------------------------------------------------------------------------
# 5. Property tests: only VibganError, never another exception, never a hang
# --------------------------------------------------------------------------------------------------
CONFIG_KEYS = sorted(flatten(to_dict(Config())))
NAMES = st.sampled_from(CONFIG_KEYS) | st.text("abcdefghijklmnopqrstuvwxyz_.", min_size=1, max_size=20)
TOML_SCALARS = st.one_of(
    st.integers(-2**70, 2**70).map(str), st.just(str(10**400)), st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: "nan" if math.isnan(f) else ("inf" if f == math.inf else "-inf" if f == -math.inf else repr(f))),
    st.sampled_from(["true", "false", '"cpu"', "'hinge'", '"normal"', "1979-05-27", "0x1F", "1_000", "[]", "{}",
                     "nan", "-inf", "1e400", '"\\u0000"', "'''x'''", '"__import__(\'os\')"']),
    st.text(max_size=12).map(json.dumps))
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(st.tuples(st.sampled_from(["a", "b", "adv", "spectral"]), inner), max_size=3).map(
        lambda kv: "{" + ", ".join(f"{k} = {v}" for k, v in kv) + "}")), max_leaves=8)


def _config_or_config_error(fn) -> None:
    try:
        with bounded(10):
            cfg = fn()
    except ConfigError as e:
        assert str(e)
        return
    assert isinstance(cfg, Config)


@FUZZ
@given(lines=st.lists(st.one_of(
    st.builds(lambda k, v: f"{k} = {v}", NAMES, TOML_VALUES),
    st.sampled_from(["[data]", "[train]", "[model]", "[data.simulate]", "[train.lambdas]", "[[train]]", "[",
                     "[tracking]", "x = ", "= 1", '"""', "\x00", "# comment", "\ufeff"]),
    st.text(max_size=30)), max_size=12), junk=st.binary(max_size=16))
def test_fuzz_config_file(tmp_path_factory, lines, junk):
    CASES["config file"] += 1
    p = tmp_path_factory.getbasetemp() / "fuzz-config.toml"
    p.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + (junk if len(junk) % 3 == 0 else b""))
    _config_or_config_error(lambda: load_config(p))


@FUZZ
@given(overrides=st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", NAMES, TOML_VALUES),
    st.builds(lambda k, v: f"{k}={v}", NAMES, st.text(max_size=20)),
    st.text(max_size=30)), min_size=1, max_size=5))
def test_fuzz_config_overrides(overrides):
    CASES["config --set overrides"] += 1
    _config_or_config_error(lambda: load_config(soak.DEFAULT_CONFIG, overrides))


def test_deeply_nested_config_is_a_config_error(tmp_path):
    deep = "[" * 5000 + "]" * 5000
    (tmp_path / "deep.toml").write_text(f"x = {deep}\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "deep.toml")
    with pytest.raises(ConfigError):
        load_config(None, [f"train.betas={deep}"])


def test_non_finite_config_numbers_are_refused():
    for item in ("data.fs=nan", "data.fs=inf", "data.simulate.duration_s=inf", "train.lr_g=nan",
                 "data.simulate.rpms=[inf]", "train.lambdas={adv = nan}"):
        with pytest.raises(ConfigError, match="finite"):
            load_config(None, [item])


@pytest.mark.parametrize("item", ["train.threads=-3", "train.betas=[2.0, 0.9]", "train.lr_g=0.0", "train.lr_d=-1e-4"])
def test_values_torch_would_reject_are_config_errors(item):
    """Refused when the config loads, not as a torch traceback once the data is prepared."""
    with pytest.raises(ConfigError, match=re.escape(item.split("=")[0])):
        load_config(soak.DEFAULT_CONFIG, [item])


def _check_generated(path: Path) -> None:
    """read_generated: a sound GeneratedSet or a DataError naming the file (runs in a child process)."""
    try:
        got = read_generated(path)
    except VibganError as e:
        assert str(path) in str(e), str(e)
        raise
    n, c, t = got.signals.shape
    assert got.signals.dtype == np.float32 and np.isfinite(got.signals).all()
    assert len(got.labels) == n and c >= 1 and t >= 1 and math.isfinite(got.fs) and got.fs > 0


def _only_vibgan_errors(target: str, fn) -> None:
    """``fn`` in a child: it must end well or with a VibganError; a libhdf5 hang is counted in HANGS."""
    outcome = in_child(fn)
    if outcome == "hang":
        HANGS[target] += 1
        return
    assert outcome in ("ok", "vibgan"), outcome


@FUZZ
@given(data=st.binary(max_size=4096), magic=st.booleans())
def test_fuzz_hdf5_exchange_random_bytes(tmp_path_factory, data, magic):
    target = "HDF5 exchange reader: random bytes"
    CASES[target] += 1
    p = tmp_path_factory.getbasetemp() / "fuzz-bytes.h5"
    p.write_bytes((b"\x89HDF\r\n\x1a\n" if magic else b"") + data)
    _only_vibgan_errors(target, lambda: _check_generated(p))


ATTR_VALUES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                        st.text(max_size=10), st.binary(max_size=10),
                        st.lists(st.floats(-1e3, 1e3), min_size=0, max_size=3),
                        st.lists(st.text(max_size=5), min_size=1, max_size=3),
                        st.sampled_from(['{"seed": 1}', "[1, 2]", "{not json", "null"]))


@st.composite
def exchange_files(draw):
    """A description of an HDF5 file near the exchange format: each part right, wrong, or missing."""
    n, c, t = draw(st.integers(0, 4)), draw(st.integers(0, 2)), draw(st.integers(0, 8))
    spec = {
        "signals": draw(st.sampled_from(["ok", "missing", "group", "float64", "int16", "2d", "nan", "strings"])),
        "labels": draw(st.sampled_from(["ok", "missing", "short", "int", "bytes", "2d", "empty-strings"])),
        "attrs": draw(st.dictionaries(st.sampled_from(["fs", "units", "channels", "provenance", "format",
                                                       "format_version"]), ATTR_VALUES, max_size=6)),
        "fs_ok": draw(st.booleans()),
        "rpm": draw(st.sampled_from(["none", "ok", "short", "nan", "strings", "group"])),
        "n": n, "c": c, "t": t,
    }
    return spec


def _write_exchange(path: Path, s: dict) -> None:
    n, c, t = s["n"], s["c"], s["t"]
    x = np.random.default_rng(0).standard_normal((n, c, t)).astype(np.float32)
    with h5py.File(path, "w") as f:
        if s["signals"] == "ok":
            f["signals"] = x
        elif s["signals"] == "group":
            f.create_group("signals")
        elif s["signals"] == "float64":
            f["signals"] = x.astype(np.float64)
        elif s["signals"] == "int16":
            f["signals"] = x.astype(np.int16)
        elif s["signals"] == "2d":
            f["signals"] = x.reshape(n, c * t)
        elif s["signals"] == "nan":
            f["signals"] = np.full((n, c, t), np.nan, np.float32)
        elif s["signals"] == "strings":
            f["signals"] = np.array(["a"] * max(n, 1), dtype=h5py.string_dtype())
        labels = [f"class{i % 2}" for i in range(n)]
        if s["labels"] == "ok":
            f["labels"] = np.array(labels, dtype=h5py.string_dtype())
        elif s["labels"] == "short":
            f["labels"] = np.array(labels[:-1] + ["x", "y"][: 2 - (n > 0)], dtype=h5py.string_dtype())
        elif s["labels"] == "int":
            f["labels"] = np.arange(n)
        elif s["labels"] == "bytes":
            f["labels"] = np.array([lab.encode() for lab in labels] or [b""], dtype="S8")
        elif s["labels"] == "2d":
            f["labels"] = np.array([labels, labels], dtype=h5py.string_dtype())
        elif s["labels"] == "empty-strings":
            f["labels"] = np.array([""] * n, dtype=h5py.string_dtype())
        if s["rpm"] == "ok":
            f["rpm"] = np.full(n, 1797.0)
        elif s["rpm"] == "short":
            f["rpm"] = np.full(n + 1, 1797.0)
        elif s["rpm"] == "nan":
            f["rpm"] = np.full(n, np.nan)
        elif s["rpm"] == "strings":
            f["rpm"] = np.array(["fast"] * n, dtype=h5py.string_dtype())
        elif s["rpm"] == "group":
            f.create_group("rpm")
        if s["fs_ok"]:
            f.attrs["fs"] = 12000.0
        for k, v in s["attrs"].items():
            if v is None:
                continue
            with contextlib.suppress(TypeError, ValueError):  # values h5py cannot store are simply left out
                f.attrs[k] = np.void(v) if isinstance(v, bytes) and v else v


@FUZZ
@given(spec=exchange_files())
def test_fuzz_hdf5_exchange_structure(tmp_path_factory, spec):
    target = "HDF5 exchange reader: wrong structure"
    CASES[target] += 1
    p = tmp_path_factory.getbasetemp() / "fuzz-structure.h5"
    _write_exchange(p, spec)
    _only_vibgan_errors(target, lambda: _check_generated(p))
    _only_vibgan_errors(target, lambda: load(p, fs=12000.0))  # the general HDF5 loader, on the same file


@pytest.fixture(scope="module")
def valid_exchange(tmp_path_factory) -> bytes:
    p = tmp_path_factory.mktemp("valid-exchange") / "valid.h5"
    write_generated(p, np.random.default_rng(1).standard_normal((6, 1, 256)).astype(np.float32),
                    ["normal", "inner"] * 3, 12000.0, rpm=1797.0, load_hp=0.0, provenance={"seed": 1})
    return p.read_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_hdf5_exchange_damaged(tmp_path_factory, valid_exchange, data):
    target = "HDF5 exchange reader: truncated / bit-flipped"
    CASES[target] += 1
    raw = bytearray(valid_exchange)
    cut = data.draw(st.integers(0, len(raw)))
    for _ in range(data.draw(st.integers(0, 6))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    p = tmp_path_factory.getbasetemp() / "fuzz-damaged.h5"
    p.write_bytes(bytes(raw[:cut]) if data.draw(st.booleans()) else bytes(raw))
    _only_vibgan_errors(target, lambda: _check_generated(p))


def test_one_corrupt_byte_does_not_hang_read_generated(valid_exchange, tmp_path, monkeypatch):
    """libhdf5 2.0 (h5py 3.16) loops forever reading the attributes of this file (one byte of a valid exchange
    file changed; found by the damaged-file fuzz). read_generated walks the file's structure in a child process
    first (recordings.probe_hdf5), so the job gets a DataError naming the file instead of hanging."""
    from vibgan import recordings

    raw = bytearray(valid_exchange)
    raw[2208] = 236
    p = tmp_path / "one-byte.h5"
    p.write_bytes(bytes(raw))
    monkeypatch.setattr(recordings, "HDF5_PROBE_S", 1.0)
    t0 = time.monotonic()
    assert in_child(lambda: _check_generated(p), timeout_s=10) == "vibgan"
    assert time.monotonic() - t0 < 8
    with pytest.raises(DataError, match=r"one-byte\.h5: HDF5 file: reading its structure did not finish"):
        read_generated(p)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_bytes(tiny, tmp_path_factory, data):
    """Damaged or random checkpoint files: load_checkpoint raises ModelError or returns plain data."""
    CASES["checkpoint loader: damaged files"] += 1
    raw = bytearray(latest_checkpoint(tiny.out_dir / "checkpoints").read_bytes())
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    p = tmp_path_factory.getbasetemp() / "fuzz-ckpt.pt"
    p.write_bytes(bytes(raw) if data.draw(st.integers(0, 9)) else data.draw(st.binary(max_size=512)))
    try:
        with bounded(20):
            sd = load_checkpoint(p)
    except ModelError:
        return
    assert isinstance(sd, dict)


# requests: well-formed and absurd values mixed, as JSON would bring them to a served model
REQUEST_VALUES = st.one_of(
    st.none(), st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")), st.booleans(),
    st.integers(-5, 4), st.sampled_from([0, -1, 10**9, 2**63, 2**70, 1797, 64, 1024, 2048, 1000, 100_000]),
    st.floats(-1e6, 1e6), st.sampled_from([2.5, 1024.0, 1797.0, -0.0]),
    st.sampled_from(["normal", "inner", "bogus", "", "1", "nan", "1024"]), st.text(max_size=5),
    st.lists(st.integers(0, 3), max_size=2))
REQUEST_ROWS = st.dictionaries(st.sampled_from(["label", "n", "rpm", "load_hp", "seed", "length", "colour"]),
                               REQUEST_VALUES, max_size=7)


@FUZZ
@given(rows=st.lists(REQUEST_ROWS, max_size=4), other=st.sampled_from(["frame", "frame", "frame", "dict", "list",
                                                                        "none", "array", "text"]))
def test_fuzz_pyfunc_predict(gen, rows, other):
    """Whatever a client sends to the served model: a DataFrame of segments, or a VibganError (which MLflow's
    scoring server answers with HTTP 400 and its message), within a few seconds."""
    CASES["pyfunc predict input"] += 1
    model = serving.GeneratorModel(gen)
    req = {"frame": lambda: pd.DataFrame(rows), "dict": lambda: rows[0] if rows else {},
           "list": lambda: rows, "none": lambda: None, "array": lambda: np.zeros((2, 2)),
           "text": lambda: "label=inner,n=1"}[other]()
    try:
        with bounded(30):
            out = model.predict(req)
    except VibganError as e:
        assert str(e).startswith("predict")
        return
    assert isinstance(out, pd.DataFrame) and len(out) >= 1
    sig = np.asarray(out["signal"].tolist(), dtype=np.float32)
    assert sig.ndim == 3 and sig.shape[1] == 1 and np.isfinite(sig).all()


ODD_VALUES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=4),
                       st.lists(st.integers(0, 2), max_size=2), st.sampled_from([2**63, 2**70, -(2**70), 10**9]))
SAMPLE_N = st.one_of(st.integers(-3, 3), st.builds(np.int64, st.integers(-3, 3)), st.sampled_from([2.0, 2.5]), ODD_VALUES)
SAMPLE_RPM = st.one_of(st.floats(-2e5, 2e5), st.sampled_from([1797.0, 0.0, -1.0, "1797"]), ODD_VALUES)
SAMPLE_LENGTH = st.one_of(st.sampled_from([64, 128, 1024, 2048, 1000, 63, 0, -64, 64 * 1024 + 64, 1024.5]), ODD_VALUES)
SAMPLE_BATCH = st.one_of(st.sampled_from([256, 1, 2, 0, -1, np.int64(2), 2**70]), ODD_VALUES)
SAMPLE_SEED = st.one_of(st.integers(-2**64, 2**65), st.sampled_from([0, -1, 2**63, 2**64 - 1, 2**64]), ODD_VALUES)


@FUZZ
@given(label=st.one_of(st.sampled_from(["normal", "inner", "bogus", ""]), ODD_VALUES, st.integers(0, 2)),
       n=SAMPLE_N, rpm=SAMPLE_RPM, load_hp=SAMPLE_RPM, seed=SAMPLE_SEED, length=SAMPLE_LENGTH, batch_size=SAMPLE_BATCH)
def test_fuzz_sample_arguments(gen, label, n, rpm, load_hp, seed, length, batch_size):
    CASES["TrainedGenerator.sample arguments"] += 1
    try:
        with bounded(30):
            x = gen.sample(label, n, rpm=rpm, load_hp=load_hp, seed=seed, length=length, batch_size=batch_size)
    except VibganError as e:
        assert str(e).startswith("sample")
        return
    assert x.dtype == np.float32 and x.shape[:2] == (int(n), 1) and np.isfinite(x).all()


@pytest.fixture(scope="module")
def generator_meta(tiny) -> dict:
    return json.loads((tiny.generator_dir / "generator.json").read_text())


JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=6)


@FUZZ
@given(data=st.data())
def test_fuzz_generator_json(tiny, generator_meta, tmp_path_factory, data):
    """A tampered generator.json (fields replaced or dropped, nested model fields too, or not JSON): the
    load is refused with a VibganError or yields a generator that samples or refuses cleanly."""
    CASES["generator.json tampering"] += 1
    d = tmp_path_factory.getbasetemp() / "fuzz-generator"
    if not d.exists():
        shutil.copytree(tiny.generator_dir, d)
    meta = json.loads(json.dumps(generator_meta))
    for _ in range(data.draw(st.integers(1, 3))):
        table = meta["model"] if isinstance(meta.get("model"), dict) and data.draw(st.booleans()) else meta
        key = data.draw(st.sampled_from(sorted(table)) | st.text(max_size=5) if table else st.text(max_size=5))
        if data.draw(st.integers(0, 4)) == 0:
            table.pop(key, None)
        else:
            table[key] = data.draw(JSON_VALUES)
    text = json.dumps(meta)
    if data.draw(st.integers(0, 9)) == 0:
        text = text[: data.draw(st.integers(0, len(text)))]
    (d / "generator.json").write_text(text)
    try:
        with bounded(30):
            g = registry.load_generator(d)
    except VibganError:
        return
    try:
        with bounded(30):
            g.sample(g.classes[0] if g.classes else "x", 1, seed=0)
    except VibganError:
        pass


def test_fuzz_zz_case_counts():
    """Runs last: print how many cases each fuzz target ran (and save them where VIBGAN_FUZZ_COUNTS says)."""
    print("\nfuzz cases run:", json.dumps(dict(sorted(CASES.items())), indent=1), "total", sum(CASES.values()))
    print("cases that hung inside libhdf5 (child killed):", dict(HANGS))
    if os.environ.get("VIBGAN_FUZZ_COUNTS"):
        Path(os.environ["VIBGAN_FUZZ_COUNTS"]).write_text(json.dumps({"cases": CASES, "hangs": HANGS}, indent=1))
    ran = [name for name, count in CASES.items() if count]
    assert not CASES or len(ran) == len(CASES)


# --------------------------------------------------------------------------------------------------
# 6. Absurd requests are refused before any work
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"label": "inner", "n": 0}, "n must be at least 1"),
    ({"label": "inner", "n": -4}, "n must be at least 1"),
    ({"label": "inner", "n": 2, "rpm": -1797.0}, "rpm must be a shaft speed"),
    ({"label": "spalled", "n": 2}, "unknown label 'spalled'"),
    ({"label": "inner", "n": 10**9}, "limit 2 GiB"),
    ({"label": "inner", "n": 2, "batch_size": 0}, "batch_size"),
    ({"label": "inner", "n": 2, "seed": 2**70}, "seed"),
])
def test_absurd_sample_requests_are_refused_before_work(gen, monkeypatch, kwargs, message):
    calls = []
    monkeypatch.setattr(gen.model, "forward", lambda *a, **k: calls.append(1))
    label, n = kwargs.pop("label"), kwargs.pop("n")
    with bounded(10), pytest.raises(VibganError, match=re.escape(message)):
        gen.sample(label, n, **kwargs)
    assert calls == []  # refused before the network ran once


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n 0: expected at least 1"),
    (["--n", "4", "--rpm", "-1797"], "--rpm -1797"),
    (["--n", "4", "--labels", "spalled"], "unknown ['spalled']"),
    (["--n", str(10**9)], "free"),
])
def test_absurd_generate_requests_are_refused_before_work(tiny, tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(TrainedGenerator, "iter_samples", lambda *a, **k: pytest.fail("generation started"))
    out = tmp_path / "gen.h5"
    with bounded(60):
        code = generate_cli.main(["--model", str(tiny.generator_dir), "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_absurd_predict_request_is_refused(gen):
    with pytest.raises(VibganError, match="pipelines/generate.py"):
        serving.GeneratorModel(gen).predict(pd.DataFrame({"label": ["inner"], "n": [10**9]}))


# --------------------------------------------------------------------------------------------------
# 7. Untrusted files: planted pickles never run, config files are data
# --------------------------------------------------------------------------------------------------
def _planted(kind: str, path: Path, marker: Path) -> None:
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"G": Evil(marker), "step": 99}))
    else:  # a real torch zip archive whose pickle calls os.mkdir
        torch.save({"G": Evil(marker), "step": 99}, path)


@pytest.mark.parametrize("kind", ["pickle", "torch-zip"])
def test_planted_checkpoint_is_refused_and_never_runs(tiny, tmp_path, kind):
    marker = tmp_path / "PWNED"
    payload = tmp_path / "payload"
    _planted(kind, payload, marker)
    assert not marker.exists()
    with pytest.raises(ModelError, match="refused or unreadable"):
        load_checkpoint(payload)
    assert not marker.exists(), "load_checkpoint executed a planted pickle"
    if kind == "pickle":  # the payload is live: plain pickle.load would run it
        pickle.loads(payload.read_bytes())
        assert marker.is_dir()
        marker.rmdir()


@pytest.mark.slow
def test_train_resume_refuses_a_planted_checkpoint(tiny, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny.out_dir / "checkpoints", out / "checkpoints")
    marker = tmp_path / "PWNED"
    _planted("torch-zip", out / "checkpoints" / "ckpt_00000099.pt", marker)  # the newest: resume picks it
    cmd = soak.train_command(out, soak.small_overrides(120, 2), resume=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=soak._env())
    assert proc.returncode == 2, proc.stderr
    assert "ckpt_00000099.pt: refused or unreadable" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists(), "pipelines/train.py --resume executed a planted pickle"
    assert not (out / "generator").exists()


@pytest.fixture
def generator_copy(tiny, tmp_path) -> Path:
    d = tmp_path / "generator"
    shutil.copytree(tiny.generator_dir, d)
    return d


@pytest.mark.parametrize("plant", ["extra-pkl", "weights-are-pickle", "json-is-pickle", "innocent-name"])
def test_planted_pickle_in_a_generator_directory_is_refused(generator_copy, tmp_path, plant):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Evil(marker))
    target = {"extra-pkl": "normalizer.pkl", "weights-are-pickle": "generator.safetensors",
              "json-is-pickle": "generator.json", "innocent-name": "README.txt"}[plant]
    (generator_copy / target).write_bytes(payload)
    with pytest.raises(ModelError, match=re.escape(target)):
        registry.load_generator(generator_copy)
    assert not marker.exists(), "load_generator executed a planted pickle"


@pytest.mark.parametrize("text, match", [
    ("{not json", "not a valid vibgan generator description"),
    ("[1, 2, 3]", "not a valid vibgan generator description"),
    ('{"classes": 5}', "not a valid vibgan generator description"),
])
def test_tampered_generator_json_is_refused(generator_copy, text, match):
    (generator_copy / "generator.json").write_text(text)
    with pytest.raises(ModelError, match=match):
        registry.load_generator(generator_copy)


@pytest.mark.parametrize("field, value", [("classes", 5), ("length", "long"), ("model", []), ("normalizer", "x"),
                                          ("fs", "fast"), ("channels", None)])
def test_generator_json_with_wrong_types_is_refused(generator_copy, generator_meta, field, value):
    (generator_copy / "generator.json").write_text(json.dumps({**generator_meta, field: value}))
    with pytest.raises(VibganError):
        registry.load_generator(generator_copy)


def test_config_files_are_data_never_code(tmp_path):
    marker = tmp_path / "PWNED"
    code = f"__import__('os').mkdir({str(marker)!r})"
    (tmp_path / "evil.toml").write_text(f'out = "{code}"\n[tracking]\nrun_name = "{{{{ {code} }}}}"\n')
    cfg = load_config(tmp_path / "evil.toml")
    assert cfg.out == code  # kept as text
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(None, [f"train.steps={code}"])
    (tmp_path / "evil.py").write_text(f"{code}\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "evil.py")
    (tmp_path / "evil.yaml").write_text(f"out: !!python/object/apply:os.mkdir [{str(marker)!r}]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "evil.yaml")
    assert not marker.exists()
    source = (ROOT / "vibgan" / "config.py").read_text()
    for forbidden in ("eval(", "exec(", "pickle", "yaml", "importlib", "__import__", "compile("):
        assert forbidden not in source, f"config.py uses {forbidden}"
