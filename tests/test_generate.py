"""pipelines/generate.py: the exchange format in batches, atomically, with refusals before any work."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, load_script

from vibgan import registry
from vibgan.errors import VibganError

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_GENERATOR = ROOT / "tests" / "fixtures" / "pre_split" / "generator"
SCRIPT = ROOT / "pipelines" / "generate.py"


cli = load_script("pipelines/generate.py")


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> Path:
    """A 4-step generator saved as an MLflow model directory (no tracking store needed)."""
    import torch

    from vibgan import tracking
    from vibgan.config import load_config
    from vibgan.datasets import prepare_data
    from vibgan.train import train

    out = tmp_path_factory.mktemp("gen-model")
    cfg = load_config(ROOT / "configs" / "default.toml", TINY + [f"out={str(out)!r}"])
    threads = torch.get_num_threads()
    try:
        result = train(cfg, prepare_data(cfg), tracking.MemoryTracker())
    finally:
        torch.set_num_threads(threads)
    info = registry.log_generator(tracking.MemoryTracker(), result, cfg, None)
    assert "saved" in info
    return out / "mlflow_model"


@pytest.fixture(scope="session")
def gen(model):

    return registry.load_generator(model)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_writes_the_exchange_format_parquet_and_wav(model, gen, tmp_path, monkeypatch):
    import pandas as pd
    from scipy.io import wavfile

    from vibgan.exchange import GeneratedWriter, read_generated

    rows = []
    real_append = GeneratedWriter.append

    def spy(self, x, *a, **k):
        rows.append(len(x))
        return real_append(self, x, *a, **k)

    monkeypatch.setattr(GeneratedWriter, "append", spy)
    out = tmp_path / "sub" / "gen.h5"
    rc = cli.main(["--model", str(model), "--n", "5", "--labels", "inner", "outer", "--seed", "3", "--batch-size", "2",
                   "--out", str(out), "--parquet", str(tmp_path / "gen.parquet"), "--wav-dir", str(tmp_path / "wav"),
                   "--no-progress"])
    assert rc == 0
    assert rows == [2, 2, 1, 2, 2, 1]  # streamed in batches of at most --batch-size: memory stays flat
    g = read_generated(out)
    assert g.signals.shape == (10, 1, 1024) and g.signals.dtype == np.float32 and g.fs == 12000.0 and g.units == "g"
    assert g.labels.tolist() == ["inner"] * 5 + ["outer"] * 5
    assert g.rpm.tolist() == [1500.0] * 10 and g.load_hp.tolist() == [0.0] * 10  # each class's first condition
    p = g.provenance
    assert p["model_uri"] == str(model) and p["seed"] == 3 and p["generator"]["classes"] == gen.classes
    assert [r["seed"] for r in p["request"]] == [3 + gen.classes.index("inner"), 3 + gen.classes.index("outer")]
    want = np.concatenate([gen.sample("inner", 5, seed=3 + gen.classes.index("inner"), batch_size=2),
                           gen.sample("outer", 5, seed=3 + gen.classes.index("outer"), batch_size=2)])
    assert np.array_equal(g.signals, want)
    df = pd.read_parquet(tmp_path / "gen.parquet")
    assert df.columns.tolist() == ["label", "index", "rpm", "load_hp", "signal_DE"]
    assert df["index"].tolist() == [0, 1, 2, 3, 4] * 2
    assert np.array_equal(np.stack(df["signal_DE"].to_numpy()), want[:, 0])
    wavs = sorted((tmp_path / "wav").iterdir())
    assert len(wavs) == 10 and wavs[0].name == "inner_0000000.wav"
    rate, y = wavfile.read(wavs[-1])
    assert rate == 12000 and y.dtype == np.float32 and np.array_equal(y, want[-1, 0])
    assert leftovers(tmp_path) == ["gen.parquet", "sub", "wav"] and leftovers(tmp_path / "sub") == ["gen.h5"]


def test_same_seed_same_file(model, tmp_path):
    from vibgan.exchange import read_generated

    for name in ("a.h5", "b.h5"):
        assert cli.main(["--model", str(model), "--n", "3", "--seed", "42", "--out", str(tmp_path / name),
                         "--no-progress"]) == 0
    a, b = read_generated(tmp_path / "a.h5"), read_generated(tmp_path / "b.h5")
    assert a.signals.shape == (12, 1, 1024) and np.array_equal(a.signals, b.signals)
    assert a.labels.tolist() == b.labels.tolist()


def test_samples_depend_on_seed_and_index_not_on_batch_size(gen):
    a = gen.sample("inner", 150, seed=9, batch_size=7)
    b = gen.sample("inner", 150, seed=9, batch_size=256)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())  # float rounding of batched convs only
    assert np.array_equal(gen.sample("inner", 10, seed=9, batch_size=4), gen.sample("inner", 10, seed=9, batch_size=4))
    assert np.abs(gen.sample("inner", 150, seed=10) - b).max() > 0.1 * np.abs(b).max()  # another seed differs
    np.testing.assert_allclose(a[:64], gen.sample("inner", 64, seed=9), rtol=0, atol=1e-5 * np.abs(b).max())


def test_workers_give_the_numbers_of_one_and_keep_the_order(gen):
    """Batches computed on 2 threads come back in order with the numbers of 1 worker, across requests too
    (iter_requests, what generate.py streams), and the intra-op thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    one = gen.sample("inner", 150, seed=9, batch_size=32)
    two = gen.sample("inner", 150, seed=9, batch_size=32, workers=2)
    assert torch.get_num_threads() == threads
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5 * np.abs(one).max())
    assert np.abs(two[32:64] - one[:32]).max() > 0.1 * np.abs(one).max()  # a batch out of place would show
    reqs = [{"label": "inner", "n": 70, "seed": 9}, {"label": gen.classes[0], "n": 40, "seed": 3}]
    got = list(gen.iter_requests(reqs, batch_size=32, workers=2))
    assert [(i, len(x)) for i, x in got] == [(0, 32), (0, 32), (0, 6), (1, 32), (1, 8)]
    np.testing.assert_allclose(np.concatenate([x for i, x in got if i == 0]), one[:70], rtol=0,
                               atol=1e-5 * np.abs(one).max())
    np.testing.assert_allclose(np.concatenate([x for i, x in got if i == 1]), gen.sample(gen.classes[0], 40, seed=3),
                               rtol=0, atol=1e-5 * np.abs(one).max())
    with pytest.raises(VibganError, match="workers must be a whole number >= 1"):
        gen.sample("inner", 4, workers=0)
    with pytest.raises(VibganError, match="unknown label"):  # every request is checked before any batch
        list(gen.iter_requests([{"label": "inner", "n": 4}, {"label": "bogus", "n": 4}], workers=2))


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n 0: expected at least 1"),
    (["--n", "-5"], "--n -5"),
    (["--n", "2", "--rpm", "-1"], "--rpm -1: expected a shaft speed"),
    (["--n", "2", "--rpm", "nan"], "--rpm nan"),
    (["--n", "2", "--load-hp", "-2"], "--load-hp -2"),
    (["--n", "2", "--labels", "inner", "bogus"], "unknown ['bogus']"),
    (["--n", "1000000000"], "free"),
    (["--n", "2", "--length", "1000"], "length must be a multiple"),
    (["--n", "2", "--batch-size", "0"], "--batch-size 0"),
    (["--n", "200000", "--wav-dir", "WAVDIR"], "WAV files"),
])
def test_absurd_requests_are_refused_before_work(model, tmp_path, capsys, args, message):
    out = tmp_path / "gen.h5"
    args = [a.replace("WAVDIR", str(tmp_path / "wav")) for a in args]
    rc = cli.main(["--model", str(model), "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err and "Traceback" not in err
    assert leftovers(tmp_path) == []


def test_bad_models_are_clear_errors(model, tmp_path, capsys):
    import shutil

    assert cli.main(["--model", str(tmp_path / "nope"), "--n", "1", "--out", str(tmp_path / "g.h5")]) == 2
    assert "no such model directory" in capsys.readouterr().err
    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    (bad / "data" / "generator" / "generator.safetensors").unlink()
    assert cli.main(["--model", str(bad), "--n", "1", "--out", str(tmp_path / "g.h5")]) == 2
    err = capsys.readouterr().err
    assert "generator.safetensors: missing" in err and "Traceback" not in err
    assert not (tmp_path / "g.h5").exists()


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_mid_generation_leaves_no_partial_file(model, tmp_path, monkeypatch, exc):
    from vibgan.generator import TrainedGenerator

    real = TrainedGenerator.iter_requests

    def failing(self, *a, **k):  # the third batch fails, while the two workers have more in flight
        for i, x in enumerate(real(self, *a, **k)):
            if i == 2:
                raise exc
            yield x

    monkeypatch.setattr(TrainedGenerator, "iter_requests", failing)
    out = tmp_path / "gen.h5"
    out.write_bytes(b"the previous file")
    args = ["--model", str(model), "--n", "8", "--batch-size", "2", "--out", str(out), "--parquet",
            str(tmp_path / "g.parquet"), "--wav-dir", str(tmp_path / "wav"), "--no-progress"]
    if isinstance(exc, KeyboardInterrupt):
        assert cli.main(args) == 130
    else:
        with pytest.raises(RuntimeError, match="disk on fire"):
            cli.main(args)
    assert out.read_bytes() == b"the previous file"  # untouched: the new file never replaced it
    assert leftovers(tmp_path) == ["gen.h5"]  # no temp files, no Parquet, no WAV folder


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_process_leaves_no_output_file(model, tmp_path, sig):
    out = tmp_path / "gen.h5"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--model", str(model), "--n", "100000", "--batch-size", "8",
                             "--seed", "1", "--out", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".gen.h5.")]
            if tmp and tmp[0].stat().st_size > 100_000:  # well into writing batches
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(sig)
        # communicate, not wait: it drains stderr, so a child with a lot to say cannot block on a full pipe
        _, err = proc.communicate(timeout=90)  # generous: the claim is "no partial file", not how fast it stops
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not out.exists()
    if sig == signal.SIGTERM:  # cleaned up like Ctrl-C
        assert proc.returncode == 130 and leftovers(tmp_path) == [], err.decode()[-2000:]
    else:  # nothing can clean up after SIGKILL: only a hidden temp file remains, never gen.h5 ...
        left = leftovers(tmp_path)
        assert left and all(name.startswith(f".gen.h5.pid{proc.pid}.") and name.endswith(".tmp") for name in left)
        # ... and the next run to the same file removes it (its writer is dead) and says so
        again = subprocess.run([sys.executable, str(SCRIPT), "--model", str(model), "--n", "2", "--seed", "1",
                                "--out", str(out), "--no-progress"], capture_output=True, text=True, cwd=tmp_path,
                               timeout=120)
        assert again.returncode == 0 and "a partial file left by an earlier run that was killed" in again.stdout
        assert [n for n in leftovers(tmp_path) if n != "gen.h5"] == [] and out.is_file()


def test_stale_temp_files_of_live_writers_are_kept(tmp_path):
    from vibgan.files import remove_stale_temps, temp_beside

    out = tmp_path / "x.h5"
    mine = temp_beside(out)  # this process: alive
    dead = tmp_path / ".x.h5.pid999999999.abc.tmp"  # no such process
    dead.write_bytes(b"partial")
    other = tmp_path / ".y.h5.pid999999999.abc.tmp"  # another file's temp: not ours to judge
    other.write_bytes(b"partial")
    assert remove_stale_temps(out) == [(dead, 7)]
    assert mine.exists() and other.exists() and not dead.exists()


def test_an_unwritable_out_folder_fails_before_any_message(model, tmp_path, capsys):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:  # root writes anyway: use a file where a folder should be
            ro = tmp_path / "file"
            ro.write_text("x")
        rc = cli.main(["--model", str(model), "--n", "2", "--out", str(ro / "gen.h5"), "--no-progress"])
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    out, err = capsys.readouterr()
    assert rc == 2 and "generating" not in out
    assert err.startswith("error: --out") and "cannot write in the folder" in err


def test_a_generator_directory_mixing_two_saves_is_refused(gen, tmp_path):
    import shutil

    import torch

    from vibgan.errors import ModelError
    from vibgan.generator import TrainedGenerator

    a = gen.save(tmp_path / "a")
    assert not [p.name for p in a.iterdir() if p.name.startswith(".")]  # no temp files left behind
    other = TrainedGenerator.load(a)
    with torch.no_grad():
        next(other.model.parameters()).add_(1.0)
    b = other.save(tmp_path / "b")
    assert np.array_equal(TrainedGenerator.load(a).sample("inner", 2, seed=1), gen.sample("inner", 2, seed=1))
    shutil.copy(b / "generator.safetensors", a / "generator.safetensors")  # a crash between the two renames
    with pytest.raises(ModelError, match="weights_sha256 differs"):
        TrainedGenerator.load(a)


def test_a_sigterm_swallowed_inside_a_finaliser_still_stops_the_write(tmp_path):
    """Python ignores an exception raised in a __del__; a SIGTERM handled there must not be lost."""
    from types import SimpleNamespace

    class Finaliser:
        def __del__(self):
            cli._sigterm(signal.SIGTERM, None)  # its KeyboardInterrupt is "ignored" by Python

    class FakeGen:
        channels, fs, units = ["DE"], 12000.0, "g"

        def iter_requests(self, requests, **kw):
            for i in range(requests[0]["n"] // 4):
                if i == 2:
                    Finaliser()  # dropped at once: the handler runs inside __del__
                yield 0, np.zeros((4, 1, 64), np.float32)

    out = tmp_path / "gen.h5"
    args = SimpleNamespace(out=str(out), parquet=None, wav_dir=None, no_progress=True, batch_size=4, workers=1)
    jobs = [{"label": "inner", "n": 400, "rpm": 1797.0, "load_hp": 0.0, "seed": 0, "length": 64}]
    cli._STOP["requested"] = False
    try:
        with pytest.raises(KeyboardInterrupt):
            cli.write_all(FakeGen(), jobs, args, {})
    finally:
        cli._STOP["requested"] = False
    assert not out.exists() and leftovers(tmp_path) == []


def test_sampling_outside_the_training_conditions_warns_once_with_how_far(tmp_path):
    import warnings

    from vibgan.generator import ExtrapolationWarning, TrainedGenerator

    g = TrainedGenerator.load(FIXTURE_GENERATOR)  # trained on normal and inner at 1800 rpm, 0 hp
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # inside the training conditions: no warning at all
        g.sample("inner", 2, rpm=1800, seed=0)
        g.sample("inner", 2, rpm=1790, seed=0)  # within 2 %
    with pytest.warns(ExtrapolationWarning, match=r"'inner'.*3000 rpm is 67% above 1800 rpm"):
        g.sample("inner", 2, rpm=3000, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g.sample("inner", 2, rpm=3000, seed=1)  # once per condition
    with pytest.warns(ExtrapolationWarning, match=r"load 2 hp was never recorded \(trained at 0 hp\)"):
        g.sample("normal", 1, rpm=1800, load_hp=2.0, seed=0)
    assert g.outside("inner", 1500, 0.0) == "1500 rpm is 17% below 1800 rpm"


def test_condition_coverage_names_seen_interpolated_and_extrapolated_pairs():
    from vibgan.generator import TrainedGenerator

    g = TrainedGenerator.load(FIXTURE_GENERATOR)
    g.conditions = {"normal": [[1500.0, 0.0], [1800.0, 0.0], [1730.0, 3.0]], "inner": [[1500.0, 0.0], [1800.0, 0.0]]}
    cov = {(c["class"], c["rpm"], c["load_hp"]): c for c in g.condition_coverage()}
    assert len(cov) == 6 and all(cov[("normal", r, h)]["seen"] for r, h in [(1500, 0), (1800, 0), (1730, 3)])
    assert cov[("inner", 1800.0, 0.0)]["seen"] and not cov[("inner", 1730.0, 3.0)]["seen"]
    assert cov[("inner", 1730.0, 3.0)]["extrapolated"] == "load 3 hp was never recorded (trained at 0 hp)"
    lines = g.coverage_lines()
    assert lines[0] == "normal: seen at 1500 rpm / 0 hp, 1730 rpm / 3 hp, 1800 rpm / 0 hp; every condition of the data set"
    assert lines[1] == ("inner: seen at 1500 rpm / 0 hp, 1800 rpm / 0 hp; not recorded at 1730 rpm / 3 hp "
                        "(extrapolated: load 3 hp was never recorded (trained at 0 hp))")
    g.conditions = {"normal": [[1500.0, 0.0], [1650.0, 0.0], [1800.0, 0.0]], "inner": [[1500.0, 0.0], [1800.0, 0.0]]}
    assert "1650 rpm / 0 hp (interpolated)" in g.coverage_lines()[1]


def test_a_pickle_in_place_of_the_weights_is_named_as_such(tmp_path):
    import pickle
    import shutil

    from vibgan.errors import ModelError
    from vibgan.generator import TrainedGenerator

    d = tmp_path / "g"
    shutil.copytree(FIXTURE_GENERATOR, d)
    (d / "generator.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelError, match=r"generator\.safetensors: not a safetensors file \(it holds a Python pickle\)"):
        TrainedGenerator.load(d)
    (d / "generator.safetensors").write_bytes(b"PK\x03\x04" + bytes(64))
    with pytest.raises(ModelError, match="zip archive"):
        TrainedGenerator.load(d)


@pytest.mark.parametrize("n", [3, 40, 700])
def test_the_size_estimate_matches_the_file_written(tmp_path, n):
    from vibgan.exchange import GeneratedWriter

    c, t = 1, 1024
    w = GeneratedWriter(tmp_path / "x.h5", 12000.0, c, t, expected_rows=n)
    w.append(np.zeros((n, c, t), dtype=np.float32) + 0.5, "inner", 1800.0, 0.0)
    w.close()
    actual, estimate = (tmp_path / "x.h5").stat().st_size, GeneratedWriter.file_bytes(n, c, t)
    assert actual <= estimate <= 2 * actual + 128 * 1024, (actual, estimate)  # never short, never 16 x over
    assert oct((tmp_path / "x.h5").stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # like any new file


def _umask() -> int:
    from vibgan.files import umask

    return umask()


@pytest.mark.slow
def test_compiled_generation_equals_eager_and_compiles_once(model, gen, tmp_path):
    """generate.py --compile: torch.compile'd network, outputs equal to the eager ones to float32 rounding, and the
    short last batch (5 = 4 + 1) is cut from a full one instead of compiling a second shape."""
    from torch._dynamo.utils import counters

    from vibgan.exchange import read_generated

    counters.clear()
    out = tmp_path / "c.h5"
    assert cli.main(["--model", str(model), "--n", "5", "--labels", "inner", "--seed", "3", "--batch-size", "4",
                     "--compile", "--out", str(out), "--no-progress"]) == 0
    g = read_generated(out)
    want = gen.sample("inner", 5, seed=3 + gen.classes.index("inner"), batch_size=4)
    assert g.signals.shape == want.shape and g.provenance["compiled"] is True
    np.testing.assert_allclose(g.signals, want, rtol=0, atol=1e-5 * np.abs(want).max())
    assert counters["stats"]["unique_graphs"] >= 1  # it did compile
    assert not counters["recompiles"]  # one shape served both batches
    # and the comparison can fail: another seed is far off
    assert np.abs(g.signals[:4] - gen.sample("inner", 4, seed=99, batch_size=4)).max() > 0.1 * np.abs(want).max()


def test_keep_freed_memory_stops_the_page_faults_of_each_batch():
    """Each batch of a CPU forward pass frees and reallocates tensors of a few MB. With glibc's defaults freed
    pages go back to the system and the next batch faults them in again; after keep_freed_memory they stay.
    Measured in a child process each: minor page faults over 12 batches of 64 of a saved generator's
    segments, after 3 batches of warm-up (12, not 6: the kept run's faults are mostly a fixed cost, 160-670
    here, against about 20,000 for 6 batches without it; with 6, one run in a full suite failed the factor of 10)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("keep_freed_memory acts on glibc only")
    script = (
        "import resource, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from vibgan.device import keep_freed_memory\n"
        "kept = keep_freed_memory() if sys.argv[1] == 'kept' else None\n"
        "from vibgan.registry import load_generator\n"
        "gen = load_generator(sys.argv[2])\n"
        "for _ in gen.iter_samples(gen.classes[0], 192, batch_size=64, seed=0): pass\n"
        "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in gen.iter_samples(gen.classes[0], 768, batch_size=64, seed=1): pass\n"
        "print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n")
    runs = {}
    for mode in ("default", "kept"):
        out = subprocess.run([sys.executable, "-c", script, mode, str(FIXTURE_GENERATOR)], capture_output=True,
                             text=True, check=True, cwd=ROOT)
        kept, faults = out.stdout.split()[-2:]
        runs[mode] = (kept, int(faults))
    assert runs["kept"][0] == "True"
    assert runs["kept"][1] < runs["default"][1] / 10, runs


def _fake_gen(batches):
    """A generator stand-in whose iter_requests yields the given (request index, batch) pairs, counting them."""
    class FakeGen:
        channels, fs, units = ["DE"], 12000.0, "g"
        yielded = 0

        def iter_requests(self, requests, **kw):
            for item in batches:
                FakeGen.yielded += 1
                yield item

    return FakeGen()


def test_write_all_keeps_the_order_of_batches_and_labels(tmp_path):
    from types import SimpleNamespace

    import h5py

    jobs = [{"label": "inner", "n": 12, "rpm": 1797.0, "load_hp": 0.0, "seed": 0, "length": 64},
            {"label": "outer", "n": 8, "rpm": 1750.0, "load_hp": 2.0, "seed": 1, "length": 64}]
    batches = [(0 if k < 3 else 1, np.full((4, 1, 64), float(k), np.float32)) for k in range(5)]
    out = tmp_path / "gen.h5"
    args = SimpleNamespace(out=str(out), parquet=None, wav_dir=None, no_progress=True, batch_size=4, workers=1)
    timing = cli.write_all(_fake_gen(batches), jobs, args, {})
    with h5py.File(out, "r") as f:
        assert f["signals"][:, 0, 0].tolist() == [float(k) for k in range(5) for _ in range(4)]
        assert [v.decode() for v in f["labels"][:]] == ["inner"] * 12 + ["outer"] * 8
        assert f["rpm"][:].tolist() == [1797.0] * 12 + [1750.0] * 8
    assert timing["first_n"] == 4 and timing["after_first_per_s"] > 0


def test_a_bad_batch_stops_generation_at_once_and_leaves_no_file(tmp_path):
    from types import SimpleNamespace

    from vibgan.errors import DataError

    bad = np.zeros((4, 1, 64), np.float32)
    bad[1, 0, 5] = np.nan
    batches = [(0, np.zeros((4, 1, 64), np.float32))] * 2 + [(0, bad)] + [(0, np.zeros((4, 1, 64), np.float32))] * 97
    jobs = [{"label": "inner", "n": 400, "rpm": 1797.0, "load_hp": 0.0, "seed": 0, "length": 64}]
    out = tmp_path / "gen.h5"
    args = SimpleNamespace(out=str(out), parquet=None, wav_dir=None, no_progress=True, batch_size=4, workers=1)
    gen = _fake_gen(batches)
    with pytest.raises(DataError, match=r"gen\.h5.*signals: expected finite values, found 1 NaN"):
        cli.write_all(gen, jobs, args, {})
    assert type(gen).yielded == 3  # nothing after the bad batch was generated
    assert not out.exists() and leftovers(tmp_path) == []
