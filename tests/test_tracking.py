"""MLflow tracking, registry and loading on a throwaway sqlite store (CPU, no server).

One tiny generator is trained once per session against the store; the tests read back what it logged,
register versions, load them through every kind of URI, tamper with copies, and break the store.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import shutil
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import helpers
import numpy as np
import pytest
from helpers import load_script, train_tiny
from scipy.signal import welch

from vibgan import registry, serving, tracking
from vibgan.errors import ModelError, TrackingError, VibganError

ROOT = Path(__file__).resolve().parents[1]
NAME = "vibgan-test"


def tiny_config(out: Path, uri: str = "", name: str = NAME, extra: list[str] | None = None):
    # the strict champion policy, whatever the demo config says
    return helpers.tiny_config(out, uri=uri, name=name, extra=["tracking.champion_if='passed'", *(extra or [])])


class Evil:
    """Unpickling this creates a marker directory: the proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("store")
    return SimpleNamespace(root=root, uri=f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture(scope="session")
def run(store, tmp_path_factory) -> SimpleNamespace:
    """A 4-step run tracked in the store, its generator registered (no report: candidate only)."""
    from vibgan.datasets import prepare_data

    out = tmp_path_factory.mktemp("run")
    cfg = tiny_config(out, store.uri)
    data = prepare_data(cfg)
    tracker = tracking.start_run(cfg, data=data)
    result = train_tiny(cfg, data, tracker)
    info = registry.log_generator(tracker, result, cfg, None)
    tracker.finish("FINISHED")
    return SimpleNamespace(cfg=cfg, data=data, tracker=tracker, result=result, info=info, out=out,
                           run_id=tracker.run_id)


@pytest.fixture(scope="session")
def client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store.uri, registry_uri=store.uri)


def psd(x: np.ndarray, fs: float) -> np.ndarray:
    return welch(x, fs, nperseg=256, axis=-1)[1].mean(axis=(0, 1))


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for a in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, a.path) if a.is_dir else {a.path}
    return out


# --------------------------------------------------------------------------------------------------
# The tracked run
# --------------------------------------------------------------------------------------------------
def test_run_logs_config_tags_metrics_and_artifacts(run, client, store):
    r = client.get_run(run.run_id)
    assert r.info.status == "FINISHED"
    p = r.data.params
    assert p["train.steps"] == "4" and p["data.segment_length"] == "1024" and p["train.lambdas.spectral"] == "1.0"
    assert p["model.widths"] == "[24, 16, 8]" and int(p["model/params_g"]) > 1000
    t = r.data.tags
    import torch

    import vibgan

    assert t["vibgan.version"] == vibgan.__version__ and t["torch.version"] == torch.__version__
    assert t["device"] == "cpu" and t["host"] == socket.gethostname()
    # metrics with their steps: eval every 2 steps, losses at the last step (log_every=20 > steps)
    hist = client.get_metric_history(run.run_id, "fid/lsd_db_max")
    assert [m.step for m in hist] == [2, 4]
    assert [m.value for m in hist] == pytest.approx(run.result.history["lsd_db_max"], rel=1e-9)
    assert [m.step for m in client.get_metric_history(run.run_id, "loss/d")] == [4]
    keys = set(r.data.metrics)
    assert {tracking.metric_name(f"fid/lsd_db/{k}") for k in run.result.lsd_db} <= keys  # e.g. inner@1500rpm
    assert all(any(k.startswith(f"fid/lsd_db/{c}") for k in keys) for c in run.result.generator.classes)
    assert not any("@" in k for k in keys)
    arts = artifact_paths(client, run.run_id)
    for want in ("samples/step_00000004.png", "plots/loss_curves.png", "environment/versions.json",
                 "environment/requirements.txt", "data/provenance.json", "model/MLmodel", "model/model_card.md",
                 "model/data/generator/generator.safetensors", "model/data/generator/generator.json"):
        assert want in arts, want
    assert not any(a.endswith((".pkl", ".pickle", ".pt")) for a in arts)
    # the experiment keeps its artifacts beside the database file
    exp = client.get_experiment(r.info.experiment_id)
    assert exp.artifact_location == (store.root / "mlartifacts").as_uri()
    assert (store.root / "mlartifacts" / run.run_id / "artifacts" / "model" / "MLmodel").is_file()
    assert json.loads((run.out / "mlflow_run.json").read_text())["run_id"] == run.run_id


def test_provenance_and_environment_artifacts(run, client, tmp_path):
    local = Path(client.download_artifacts(run.run_id, "data/provenance.json", str(tmp_path)))
    prov = json.loads(local.read_text())
    assert prov["source"] == "simulated" and prov["classes"] == run.data.classes and prov["fs_hz"] == 12000.0
    sha = hashlib.sha256(run.data.signals.numpy().tobytes()).hexdigest()
    assert prov["train_signals_sha256"] == sha
    assert prov["split"]["fractions"] == [0.7, 0.0, 0.3] and len(prov["recordings"]) == 8
    env = json.loads(Path(client.download_artifacts(run.run_id, "environment/versions.json", str(tmp_path))).read_text())
    assert env["packages"]["mlflow"] and env["packages"]["torch"]
    card = Path(client.download_artifacts(run.run_id, "model/model_card.md", str(tmp_path))).read_text()
    for section in ("## Intended use", "## Data provenance", "## Fidelity", "## Limits", sha):
        assert section in card


def test_metric_names_are_made_valid(run, client):
    assert tracking.metric_name("fid/lsd_db/OR@6_7") == "fid/lsd_db/OR_at_6_7"
    assert tracking.metric_name("loss/g") == "loss/g"
    assert tracking.metric_name("a//b/./c é!") == "a/b/c __"
    tr = tracking.MlflowTracker(run.tracker.tracking_uri, run.run_id)
    tr.log_metrics({"fid/lsd_db/OR@6_7": 1.25, "odd name (x)": 2.0, "not a number": "n/a"}, step=7)
    assert tr.rejected == [] and tr.failed_calls == 0
    m = client.get_run(run.run_id).data.metrics
    assert m["fid/lsd_db/OR_at_6_7"] == 1.25 and m["odd name _x_"] == 2.0 and "not a number" not in m


# --------------------------------------------------------------------------------------------------
# Registry and aliases
# --------------------------------------------------------------------------------------------------
def report(passed: bool):
    classes = {"inner": {"lsd_db": 1.1, "floor_db": 0.8, "nearest_class": "inner", "passes": passed}}
    return SimpleNamespace(passed=passed, to_dict=lambda: {"passed": passed, "thresholds": {"lsd_db": 1.5},
                                                             "classes": classes})


def test_registered_as_candidate_only_without_a_report(run, client):
    assert run.info.startswith(f"models:/{NAME}/1 (aliases: candidate)"), run.info
    assert "not champion" in run.info
    mv = client.get_model_version_by_alias(NAME, "candidate")
    assert str(mv.version) == "1" and mv.run_id == run.run_id and mv.tags["fidelity.passed"] == "unknown"
    assert "champion" not in client.get_registered_model(NAME).aliases


def test_champion_follows_the_report_and_the_policy(run, client):
    cfg = copy.deepcopy(run.cfg)
    cfg.tracking.register_name = "vibgan-aliases"
    info = registry.log_generator(run.tracker, run.result, cfg, report(False))
    assert info.startswith("models:/vibgan-aliases/1 (aliases: candidate)") and "no champion yet" in info
    info = registry.log_generator(run.tracker, run.result, cfg, report(True))
    assert info == "models:/vibgan-aliases/2 (aliases: candidate, champion)"
    info = registry.log_generator(run.tracker, run.result, cfg, report(False))
    assert "champion stays version 2" in info
    aliases = client.get_registered_model("vibgan-aliases").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"candidate": "3", "champion": "2"}
    assert client.get_model_version("vibgan-aliases", "3").tags["fidelity.passed"] == "false"
    # bootstrap policy: a first version becomes champion even without a passing report, and says so
    cfg.tracking.register_name = "vibgan-first"
    info = registry.log_generator(run.tracker, run.result, cfg, report(False), champion_if="passed-or-first")
    assert "aliases: candidate, champion" in info and "does not pass" in info
    info = registry.log_generator(run.tracker, run.result, cfg, report(False), champion_if="passed-or-first")
    assert "champion stays version 1" in info
    with pytest.raises(VibganError, match="champion_if"):
        registry.log_generator(run.tracker, run.result, cfg, None, champion_if="sometimes")


def test_registry_failure_keeps_the_generator(run, tmp_path):
    broken = tracking.MlflowTracker(run.tracker.tracking_uri, run.run_id, tmp_path)

    def refuse(*a, **k):
        raise ConnectionError("registry went away")

    broken.client.create_model_version = refuse
    info = registry.log_generator(broken, run.result, run.cfg, None)
    assert info.startswith("NOT registered") and "registry went away" in info and str(run.result.generator_dir) in info
    assert (run.result.generator_dir / "generator.safetensors").is_file()
    assert (run.result.out_dir / "mlflow_model" / "MLmodel").is_file()


def test_no_mlflow_tracker_saves_a_local_model(run):
    info = registry.log_generator(tracking.MemoryTracker(), run.result, run.cfg, None)
    assert "not registered" in info
    g = registry.load_generator(run.result.out_dir / "mlflow_model")
    assert g.classes == run.result.generator.classes


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------
def test_load_candidate_matches_the_directory_exactly(run, store):
    from vibgan.generator import TrainedGenerator

    g = registry.load_generator(f"models:/{NAME}@candidate", tracking_uri=store.uri)
    ref = TrainedGenerator.load(run.result.generator_dir)
    x, y = g.sample("inner", 3, seed=11), ref.sample("inner", 3, seed=11)
    assert x.shape == (3, 1, 1024) and x.dtype == np.float32
    assert np.array_equal(x, y)
    np.testing.assert_array_equal(psd(x, g.fs), psd(y, ref.fs))
    assert not np.allclose(x, g.sample("inner", 3, seed=12))
    assert g.meta["registry"]["version"] == "1" and g.meta["source_uri"] == f"models:/{NAME}@candidate"
    assert next(g.model.parameters()).device.type == "cpu"


def test_load_by_version_runs_uri_local_dirs_and_env(run, store, monkeypatch):
    want = run.result.generator.sample("outer", 2, seed=5)
    uris = [f"models:/{NAME}/1", f"models:/{NAME}/latest", f"runs:/{run.run_id}/model", str(run.result.generator_dir),
            str(run.result.out_dir / "mlflow_model"), (run.result.out_dir / "mlflow_model").as_uri()]
    for uri in uris:
        g = registry.load_generator(uri, tracking_uri=store.uri)
        assert np.array_equal(g.sample("outer", 2, seed=5), want), uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    import vibgan

    assert np.array_equal(vibgan.load_generator(f"models:/{NAME}@candidate").sample("outer", 2, seed=5), want)


def test_load_errors_are_model_errors(store, tmp_path):
    with pytest.raises(ModelError, match="no-such-model"):
        registry.load_generator("models:/no-such-model@champion", tracking_uri=store.uri)
    with pytest.raises(ModelError, match="no such model directory"):
        registry.load_generator(tmp_path / "missing")
    with pytest.raises(ModelError, match="neither a vibgan generator"):
        registry.load_generator(tmp_path)
    with pytest.raises(ModelError, match="not a torch device"):
        registry.load_generator(tmp_path, device="gpu please")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="not available on this machine"):
            registry.load_generator(tmp_path, device="cuda")


@pytest.fixture()
def model_copy(run, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(run.result.out_dir / "mlflow_model", dst)
    return dst


def _refused(path: Path, match: str, marker: Path) -> None:
    with pytest.raises(ModelError, match=match):
        registry.load_generator(path)
    with pytest.raises(ModelError):
        serving._load_pyfunc(str(path / "data" / "generator"))  # what MLflow serving would call
    assert not marker.exists(), "a planted pickle was executed"


def test_planted_pickles_are_refused_and_never_run(model_copy, tmp_path):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(Evil(marker))
    with pytest.raises(FileExistsError):  # the payload works: unpickling it twice would fail on the marker
        pickle.loads(payload)
        pickle.loads(payload)
    os.rmdir(marker)
    (model_copy / "python_model.pkl").write_bytes(payload)
    _refused(model_copy, "python_model.pkl", marker)
    (model_copy / "python_model.pkl").unlink()
    (model_copy / "data" / "generator" / "notes.txt").write_bytes(payload)  # a pickle under an innocent name
    _refused(model_copy, "notes.txt", marker)
    (model_copy / "data" / "generator" / "notes.txt").unlink()
    (model_copy / "data" / "generator" / "generator.safetensors").write_bytes(payload)  # pickle as the weights
    _refused(model_copy, "generator.safetensors", marker)
    (model_copy / "data" / "generator" / "generator.safetensors").unlink()
    _refused(model_copy, "generator.safetensors: missing", marker)


def test_code_and_foreign_loaders_are_refused(model_copy, tmp_path):
    (model_copy / "code").mkdir()
    (model_copy / "code" / "evil.py").write_text(f"import os; os.mkdir({str(tmp_path / 'PWNED')!r})\n")
    _refused(model_copy, "evil.py", tmp_path / "PWNED")
    shutil.rmtree(model_copy / "code")
    mlmodel = model_copy / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("loader_module: vibgan.serving", "loader_module: evil"))
    with pytest.raises(ModelError, match="not a vibgan model"):
        registry.load_generator(model_copy)
    os.symlink("/etc/hostname", model_copy / "data" / "generator" / "link.json")
    with pytest.raises(ModelError, match="outside the model directory"):
        registry.load_generator(model_copy / "data" / "generator")


def test_weights_of_the_wrong_shape_are_refused(model_copy):
    from safetensors.torch import load_file, save_file

    w = model_copy / "data" / "generator" / "generator.safetensors"
    weights = load_file(str(w))
    key = next(k for k, v in weights.items() if v.ndim >= 2)
    weights[key] = weights[key][..., :-1].contiguous()
    save_file(weights, str(w))
    with pytest.raises(ModelError, match="weights_sha256 differs"):  # the recorded checksum catches it first
        registry.load_generator(model_copy)
    meta_path = w.with_name("generator.json")  # a hand-made description without the checksum: the shape check
    meta = json.loads(meta_path.read_text())
    del meta["weights_sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not fit"):
        registry.load_generator(model_copy)


def test_tampered_registered_version_is_refused(run, store, client, tmp_path, model_copy):
    marker = tmp_path / "PWNED"
    (model_copy / "python_model.pkl").write_bytes(pickle.dumps(Evil(marker)))
    client.log_artifacts(run.run_id, str(model_copy), "tampered")
    source = client.get_run(run.run_id).info.artifact_uri + "/tampered"
    client.create_registered_model("vibgan-tampered")
    client.create_model_version("vibgan-tampered", source, run_id=run.run_id)
    with pytest.raises(ModelError, match="python_model.pkl"):
        registry.load_generator("models:/vibgan-tampered/1", tracking_uri=store.uri)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# The pyfunc model
# --------------------------------------------------------------------------------------------------
def test_pyfunc_predict_matches_sample_and_refuses_bad_requests(run):
    import mlflow.pyfunc
    import pandas as pd

    m = mlflow.pyfunc.load_model(str(run.result.out_dir / "mlflow_model"))
    req = pd.DataFrame({"label": ["inner", "ball"], "n": [2, 1], "rpm": [1800.0, np.nan], "load_hp": [0.0, 0.0],
                        "seed": [3, 4]})
    out = m.predict(req)
    assert list(out.columns) == ["request", "label", "index", "rpm", "load_hp", "seed", "signal"]
    assert out["label"].tolist() == ["inner", "inner", "ball"] and out["index"].tolist() == [0, 1, 0]
    assert out["rpm"].tolist() == [1800.0, 1800.0, 1500.0]  # missing rpm: the class's first training speed
    sig = np.asarray(out["signal"].tolist(), dtype=np.float32)  # (3, C, T)
    assert sig.shape == (3, 1, 1024)
    g = run.result.generator
    assert np.array_equal(sig[:2], g.sample("inner", 2, rpm=1800.0, load_hp=0.0, seed=3))
    assert np.array_equal(sig[2:], g.sample("ball", 1, seed=4))
    wrapper = serving._load_pyfunc(str(run.result.out_dir / "mlflow_model" / "data" / "generator"))
    bad = [({"label": "bogus", "n": 1}, "unknown label"), ({"label": "inner", "n": 0}, "at least 1"),
           ({"label": "inner", "n": 1, "rpm": -5.0}, "rpm"), ({"label": "inner"}, "missing"),
           ({"label": "inner", "n": 1, "colour": "red"}, "unknown"), ({"label": "inner", "n": 2.5}, "whole number"),
           ({"label": "inner", "n": 10**9}, "pipelines/generate.py"), ({"label": 3, "n": 1}, "label"),
           ({"label": "inner", "n": "many"}, "must be numbers")]
    for request, match in bad:
        with pytest.raises(VibganError, match=match):
            wrapper.predict(pd.DataFrame([request]))
    with pytest.raises(VibganError, match="no requests"):
        wrapper.predict(pd.DataFrame({"label": [], "n": []}))


# --------------------------------------------------------------------------------------------------
# Store failures and resume
# --------------------------------------------------------------------------------------------------
FlakyClient = load_script("pipelines/soak.py").FlakyClient  # a real MlflowClient, or ConnectionError while down


def test_store_failing_mid_run_loses_nothing(run, store, client, tmp_path, capsys):
    cfg = tiny_config(tmp_path / "out", store.uri, extra=["tracking.run_name='flaky'"])
    tracker = tracking.start_run(cfg)
    tracker.retry_interval_s = 0.0
    flaky = tracker.client = FlakyClient(tracker.client)

    def after_step(state):
        flaky.down = state.step < 4  # the store is away from after step 1 until step 4's logging

    result = train_tiny(cfg, run.data, tracker, hooks={"after_step": after_step})
    flaky.down = False
    tracker.finish("FINISHED")
    assert result.steps == 4 and (result.generator_dir / "generator.safetensors").is_file()
    assert flaky.refused > 0 and tracker.failed_calls == flaky.refused
    assert [m.step for m in client.get_metric_history(tracker.run_id, "fid/lsd_db_max")] == [2, 4]
    arts = artifact_paths(client, tracker.run_id)
    assert "samples/step_00000004.png" in arts and "plots/loss_curves.png" in arts
    r = client.get_run(tracker.run_id)
    assert r.info.status == "FINISHED" and int(r.data.tags["vibgan.tracking_failures"]) == flaky.refused
    assert r.data.tags["vibgan.tracking_unlogged"] == "0"
    report = json.loads((tmp_path / "out" / "tracking_failures.json").read_text())
    assert report["unlogged"]["metric_points"] == 0 and report["failed_calls"] == flaky.refused
    assert capsys.readouterr().err.count("warning: MLflow logging failed") == 1


def test_store_that_never_comes_back_is_reported(run, store, tmp_path, capsys):
    tracker = tracking.MlflowTracker(store.uri, run.run_id, tmp_path, retry_interval_s=0.0)
    flaky = tracker.client = FlakyClient(tracker.client)
    flaky.down = True
    for step in range(1, 6):
        tracker.log_metrics({"loss/d": 0.5 * step, "fid/lsd_db/OR@6_7": 2.0}, step=step)
    png = tmp_path / "plot.png"
    png.write_bytes(b"\x89PNG")
    tracker.log_artifact(png, "plots")
    tracker.log_params({"late.param": 1})
    tracker.finish("FINISHED")  # must not raise
    report = json.loads((tmp_path / "tracking_failures.json").read_text())
    assert report["unlogged"]["metric_points"] == 10 and report["unlogged"]["artifacts"] == [str(png)]
    assert report["unlogged"]["params"] == ["late.param"]
    assert {(m["key"], m["step"]) for m in report["metrics_unlogged"]} >= {("loss/d", 5), ("fid/lsd_db/OR_at_6_7", 1)}
    err = capsys.readouterr().err
    assert err.count("warning: MLflow logging failed") == 1 and "could not be logged" in err and "RUNNING" in err


def test_metric_buffer_is_bounded(store, run, tmp_path):
    tracker = tracking.MlflowTracker(store.uri, run.run_id, tmp_path, retry_interval_s=3600, max_buffer=5)
    tracker.client = FlakyClient(tracker.client)
    tracker.client.down = True
    for step in range(12):
        tracker.log_metrics({"x": float(step)}, step=step)
    assert tracker.unlogged["metric_points"] == 5 and tracker.dropped_metrics == 7
    assert tracker.client.refused == 1  # one failed call, then it waits for the retry interval


def test_resume_reopens_the_run(store, client, tmp_path):
    cfg = tiny_config(tmp_path, store.uri)
    first = tracking.start_run(cfg)
    first.finish("FAILED")
    cfg2 = tiny_config(tmp_path, store.uri, extra=["train.steps=8"])
    again = tracking.start_run(cfg2, resume=True)
    assert again.run_id == first.run_id and client.get_run(first.run_id).info.status == "RUNNING"
    again.finish("FINISHED")
    r = client.get_run(first.run_id)
    assert r.info.status == "FINISHED" and r.data.params["train.steps"] == "4"
    assert r.data.tags["param_changed/train.steps"] == "8"
    fresh = tracking.start_run(cfg2)  # without --resume: a new run
    assert fresh.run_id != first.run_id
    fresh.finish()


def test_unreachable_server_fails_fast_with_the_uri(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    uri = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match=f"127.0.0.1:{port}.*cannot be reached") as e:
        tracking.start_run(tiny_config(tmp_path, uri))
    assert time.monotonic() - t0 < 30  # a hang guard, not a benchmark: MLflow's default retries take minutes
    assert "Connection refused" in str(e.value)
    assert not (tmp_path / "mlflow_run.json").exists()


def test_default_store_is_the_same_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("VIBGAN_HOME", raising=False)
    root = Path(tracking.__file__).resolve().parents[1]  # the clone this vibgan is installed from
    uris = set()
    for where in (tmp_path, root, root / "pipelines"):
        monkeypatch.chdir(where)
        uris.add(tracking.resolve_tracking_uri(""))
    assert uris == {f"sqlite:///{root / 'mlflow.db'}"}
    assert tracking._artifact_location(uris.pop()) == (root / "mlartifacts").as_uri()
    monkeypatch.setenv("VIBGAN_HOME", str(tmp_path / "home"))
    uri = tracking.resolve_tracking_uri("")
    assert uri == f"sqlite:///{(tmp_path / 'home').resolve() / 'mlflow.db'}"
    with pytest.raises(TrackingError, match=r"no MLflow store at .*home/mlflow.db \(the default local store in VIBGAN_HOME"):
        tracking.require_existing_store(uri)
    assert not (tmp_path / "home").exists()  # looking created nothing
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.resolve_tracking_uri("") == "http://tracking.example:5000"
    tracking.require_existing_store("http://tracking.example:5000")  # servers are asked, not looked for
    assert tracking.resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"
    assert tracking.redact("https://me:secret@host/x") == "https://me:***@host/x"


def test_loading_from_a_missing_store_says_where_it_looked(tmp_path, monkeypatch):
    from vibgan.registry import load_generator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("VIBGAN_HOME", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrackingError, match="no MLflow store at .*nowhere/mlflow.db"):
        load_generator("models:/vibgan-sim@champion")
    assert not any(tmp_path.iterdir())  # no empty mlflow.db left behind, here or there


# --------------------------------------------------------------------------------------------------
# pipelines/generate.py against the registry: provenance names the version
# --------------------------------------------------------------------------------------------------
def test_generate_from_the_registry_records_the_version(run, store, tmp_path):
    from vibgan.exchange import read_generated

    cli = load_script("pipelines/generate.py")
    out = tmp_path / "gen.h5"
    rc = cli.main(["--model", f"models:/{NAME}@candidate", "--tracking-uri", store.uri, "--n", "3", "--labels",
                   "outer", "--seed", "9", "--out", str(out), "--no-progress"])
    assert rc == 0
    g = read_generated(out)
    assert g.provenance["model_uri"] == f"models:/{NAME}@candidate" and g.provenance["model_version"] == "1"
    assert g.provenance["model_run_id"] == run.run_id and g.provenance["seed"] == 9
    k = run.result.generator.classes.index("outer")
    assert np.array_equal(g.signals, run.result.generator.sample("outer", 3, seed=9 + k))


def test_model_card_carries_the_fidelity_table(run):
    card = registry.model_card(run.result, run.cfg, report(False), run.tracker.dicts["data/provenance.json"],
                               name=NAME, run_id=run.run_id)
    assert "Overall: **does not pass every check**" in card
    assert "| inner | 1.10 | 0.80 | inner | - / - | - / - | - | - | - |" in card
    assert run.tracker.dicts["data/provenance.json"]["train_signals_sha256"] in card
    assert f'vibgan.load_generator("models:/{NAME}@champion")' in card
    # the simulated default: every class at both speeds, nothing extrapolated
    assert "## Conditions: seen and extrapolated" in card
    assert "- inner: seen at 1500 rpm / 0 hp, 1800 rpm / 0 hp; every condition of the data set" in card


def test_refusals_of_a_server_with_access_control_say_who_was_refused_and_what_to_set(monkeypatch):
    """401 and 403 from a basic-auth server: one line naming the user and the setting, not 'cannot be reached'."""
    from mlflow.exceptions import RestException

    from vibgan.tracking import short_reason

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    unauth = RestException({"error_code": "UNAUTHENTICATED", "message": "You are not authenticated."})
    assert "MLFLOW_TRACKING_USERNAME" in short_reason(unauth) and "MLFLOW_TRACKING_PASSWORD" in short_reason(unauth)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    assert "rejected the password of user 'alice'" in short_reason(unauth)
    denied = RestException({"error_code": "PERMISSION_DENIED", "message": "Permission denied"})
    assert short_reason(denied).startswith("PERMISSION_DENIED") and "'alice'" in short_reason(denied)
    other = RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad name\nmore"})
    assert short_reason(other) == "RestException: INVALID_PARAMETER_VALUE: bad name"
