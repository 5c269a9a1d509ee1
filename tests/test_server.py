"""pipelines/mlflow_server.sh: a PostgreSQL-backed MLflow server started by the script, used by a
training run, then stopped and restarted with nothing lost."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "pipelines" / "mlflow_server.sh"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _have_postgres() -> str | None:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "PostgreSQL binaries not installed (Debian package postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 not installed (pip install -e '.[server]')"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_have_postgres() is not None, reason=str(_have_postgres()))]


def script(cmd: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), cmd], env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture
def state_dir():
    """A server folder the postgres user can reach when the tests run as root (pytest's tmp is mode 700)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="vibgan-pg-", dir="/tmp"))
    d.chmod(0o755)
    yield d / "srv"
    shutil.rmtree(d, ignore_errors=True)


def test_postgres_server_script_serves_a_training_run_and_keeps_it_across_restart(tmp_path, state_dir):
    state = state_dir
    env = {**os.environ, "VIBGAN_SERVER_DIR": str(state), "MLFLOW_PORT": str(_free_port()),
           "PG_PORT": str(_free_port()), "MLFLOW_WORKERS": "1", "PYTHON": sys.executable}
    uri = f"http://127.0.0.1:{env['MLFLOW_PORT']}"
    try:
        started = script("start", env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"export MLFLOW_TRACKING_URI={uri}" in started.stdout
        assert oct((state / "pgpass").stat().st_mode & 0o777) == "0o600"
        train = subprocess.run(
            [sys.executable, str(ROOT / "pipelines" / "train.py"), "--out", str(tmp_path / "out"), "--no-report",
             "--tracking-uri", uri, "--steps", "4", "--set", "train.batch_size=4", "--set", "data.simulate.duration_s=2",
             "--set", "data.segment_length=1024", "--set", "train.eval_every=2", "--set", "train.log_every=1",
             "--set", "train.sample_every=4", "--set", "train.checkpoint_every=4", "--set", "train.progress=false",
             "--set", "train.threads=1", "--set", "model.widths=[32,24,16,8]", "--set", "model.d_channels=8",
             "--set", "tracking.register_name='vibgan-pg'", "--set", "tracking.champion_if='always'"],
            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
        assert script("stop", env).returncode == 0
        assert script("status", env).returncode == 3
        assert script("start", env).returncode == 0  # same data folder: the run and the version are still there
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("vibgan").experiment_id])
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        assert len(client.get_metric_history(runs[0].info.run_id, "loss/d")) == 4
        assert client.get_model_version_by_alias("vibgan-pg", "champion").version == "1"
        assert (state / "artifacts").is_dir() and any((state / "artifacts").rglob("generator.safetensors"))
        # the backend really is PostgreSQL
        assert "postgresql" in script("uri", env).stdout
    finally:
        script("stop", env)
