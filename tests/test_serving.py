"""Real servers on 127.0.0.1: `mlflow models serve` answering /invocations, and `mlflow server` as the tracking
store of a short training run that survives the server going away. Every wait is bounded; servers are
always stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import helpers
import numpy as np
import pytest
from helpers import train_tiny
from scipy.signal import welch

from vibgan import registry

ROOT = Path(__file__).resolve().parents[1]
MLFLOW = [str(Path(sys.executable).with_name("mlflow"))] if Path(sys.executable).with_name("mlflow").exists() \
    else [sys.executable, "-m", "mlflow"]
START_TIMEOUT_S = 120


def tiny_config(out: Path, uri: str, name: str, steps: int, extra: list[str] | None = None):
    return helpers.tiny_config(out, uri=uri, name=name, steps=steps, extra=extra)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A subprocess in its own process group, logging to a file; ``stop`` ends the whole group."""

    def __init__(self, args: list[str], log: Path, health: str, env: dict | None = None) -> None:
        self.args, self.log, self.health = args, log, health
        # mlflow starts uvicorn by name: the interpreter's bin folder must be on PATH even without an activated venv
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": path, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Server:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.args, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{' '.join(self.args[:3])} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.health, timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        pytest.fail(f"{self.health} did not answer within {timeout_s:.0f} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with _suppress():
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def _suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError, PermissionError)


def post_json(url: str, payload: dict, timeout_s: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def class_rms(data, label: str) -> float:
    x = np.concatenate([p.signal for p in data.train_parts if p.label == label], axis=1)
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@pytest.fixture(scope="session")
def registered(tmp_path_factory) -> SimpleNamespace:
    """A 20-step generator tracked in a sqlite store and registered with alias champion."""
    from vibgan import tracking
    from vibgan.datasets import prepare_data

    root = tmp_path_factory.mktemp("serve-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg = tiny_config(root / "run", uri, "vibgan-serve", 20, ["train.lr_g=1e-3"])
    data = prepare_data(cfg)
    tracker = tracking.start_run(cfg, data=data)
    result = train_tiny(cfg, data, tracker)
    info = registry.log_generator(tracker, result, cfg, None, champion_if="always")
    tracker.finish()
    assert "champion" in info, info
    return SimpleNamespace(uri=uri, root=root, data=data, result=result, info=info)


@pytest.mark.slow
def test_models_serve_answers_invocations(registered, tmp_path):

    port = free_port()
    server = Server(MLFLOW + ["models", "serve", "-m", "models:/vibgan-serve@champion", "--env-manager", "local",
                              "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                    tmp_path / "serve.log", f"http://127.0.0.1:{port}/ping",
                    env={"MLFLOW_TRACKING_URI": registered.uri, "MLFLOW_REGISTRY_URI": registered.uri})
    try:
        server.start()
        status, body = post_json(f"http://127.0.0.1:{port}/invocations",
                                 {"dataframe_split": {"columns": ["label", "n", "seed"], "data": [["inner", 2, 5]]}})
        assert status == 200, body
        rows = body["predictions"]
        assert [(r["label"], r["index"], r["seed"], r["rpm"]) for r in rows] == [("inner", 0, 5, 1500.0),
                                                                                 ("inner", 1, 5, 1500.0)]
        x = np.asarray([r["signal"] for r in rows], dtype=np.float32)  # (2, C, T)
        assert x.shape == (2, 1, 1024)
        # the served values are the registered generator's (float32 survives JSON)
        g = registry.load_generator("models:/vibgan-serve@champion", tracking_uri=registered.uri)
        # equal up to float rounding: the server process may use another torch thread count (reduction order)
        np.testing.assert_allclose(x, g.sample("inner", 2, seed=5), rtol=1e-5, atol=1e-6)
        # physically plausible: the level of the class's training signals, and a spectrum that is not flat
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        assert 1 / 3 < rms / class_rms(registered.data, "inner") < 3
        f, p = welch(x[:, 0], g.fs, nperseg=256, axis=-1)
        p = p.mean(0)[(f > 0) & (f <= 0.45 * g.fs)]
        assert p.max() / np.median(p) > 10  # white noise of 2 segments: about 2
        # a bad request is a 400 naming the problem, and the server keeps serving
        status, body = post_json(f"http://127.0.0.1:{port}/invocations",
                                 {"dataframe_split": {"columns": ["label", "n"], "data": [["bogus", 1]]}})
        assert status == 400 and "unknown label 'bogus'" in body.get("message", ""), body
        status, body = post_json(f"http://127.0.0.1:{port}/invocations",
                                 {"dataframe_split": {"columns": ["label", "n", "rpm", "seed"],
                                                      "data": [["ball", 1, 1800, 1]]}})
        assert status == 200 and body["predictions"][0]["rpm"] == 1800.0
    finally:
        server.stop()


@pytest.mark.slow
def test_tracking_server_run_survives_an_outage_and_registers(tmp_path):
    from mlflow.tracking import MlflowClient

    from vibgan import tracking
    from vibgan.datasets import prepare_data

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = Server(MLFLOW + ["server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                              "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
                              "--port", str(port), "--workers", "1"],
                    tmp_path / "server.log", f"{uri}/health")
    outage = {}
    try:
        server.start()
        cfg = tiny_config(tmp_path / "run", uri, "vibgan-http", 4)
        data = prepare_data(cfg)
        tracker = tracking.start_run(cfg, data=data)
        tracker.retry_interval_s = 0.0

        def after_step(state):  # the server goes away after step 1 and is back after step 2
            if state.step == 1:
                server.stop()
                outage["stopped"] = True
            elif state.step == 2:
                outage["failed_calls"] = tracker.failed_calls
                server.start()

        result = train_tiny(cfg, data, tracker, hooks={"after_step": after_step})
        info = registry.log_generator(tracker, result, cfg, None, champion_if="always")
        tracker.finish()
        assert result.steps == 4 and outage["failed_calls"] > 0
        assert info == "models:/vibgan-http/1 (aliases: candidate, champion)"
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        run = client.get_run(tracker.run_id)
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:/")
        assert run.data.params["train.steps"] == "4"
        # the step-2 evaluation was logged during the outage: held back, then sent
        assert [m.step for m in client.get_metric_history(tracker.run_id, "fid/lsd_db_max")] == [2, 4]
        assert run.data.tags["vibgan.tracking_unlogged"] == "0"
        # loaded back over HTTP (artifacts proxied by the server) through both kinds of models:/ URI
        for model_uri in ("models:/vibgan-http@champion", "models:/vibgan-http/1"):
            g = registry.load_generator(model_uri, tracking_uri=uri)
            assert np.array_equal(g.sample("outer", 2, seed=1), result.generator.sample("outer", 2, seed=1))
        assert (tmp_path / "server-artifacts").is_dir()
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_script_starts_and_stops_the_whole_server(registered, tmp_path):
    """pipelines/serve.sh: start answers invocations; stop leaves no uvicorn child and frees the port."""
    import socket
    import subprocess

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.uri, "SERVE_PORT": str(port),
           "VIBGAN_SERVE_DIR": str(tmp_path / "serve"), "PYTHON": sys.executable}
    script = [str(ROOT / "pipelines" / "serve.sh")]
    started = subprocess.run(["bash", *script, "start", "models:/vibgan-serve@champion"], env=env,
                             capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        assert f"http://127.0.0.1:{port}/invocations" in started.stdout
        status, body = post_json(f"http://127.0.0.1:{port}/invocations",
                                 {"dataframe_split": {"columns": ["label", "n", "seed"], "data": [["outer", 1, 3]]}})
        assert status == 200 and body["predictions"][0]["label"] == "outer"
        pgid = int((tmp_path / "serve" / "serve.pid").read_text())
        assert subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).stdout.split()  # mlflow + uvicorn
    finally:
        stopped = subprocess.run(["bash", *script, "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped
    assert not subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).stdout.split()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing answers any more
    again = subprocess.run(["bash", *script, "start", "runs/no-such-model"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode != 0 and "cannot be loaded" in again.stderr and not (tmp_path / "serve" / "serve.pid").exists()
