"""pipelines/mlflow_server.sh: a PostgreSQL-backed MLflow server with access control started by the script,
used by training runs of users with different roles, then stopped and restarted with nothing lost."""

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


def _train(tmp_path: Path, env: dict, uri: str, out: str, user: tuple[str, str] | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING_")}
    if user is not None:
        env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = user
    return subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "train.py"), "--out", str(tmp_path / out), "--no-report",
         "--tracking-uri", uri, "--steps", "4", "--set", "train.batch_size=4", "--set", "data.simulate.duration_s=2",
         "--set", "data.segment_length=1024", "--set", "train.eval_every=2", "--set", "train.log_every=1",
         "--set", "train.sample_every=4", "--set", "train.checkpoint_every=4", "--set", "train.progress=false",
         "--set", "train.threads=1", "--set", "model.widths=[24,16,8]", "--set", "model.d_channels=8",
         "--set", "model.variety=false",
         "--set", "tracking.register_name='vibgan-pg'", "--set", "tracking.champion_if='always'"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def _as(monkeypatch, user: str | None, password: str | None):
    """A block in which MlflowClient calls go as ``user`` (None: no credentials), without retries."""
    import contextlib

    @contextlib.contextmanager
    def block():
        with monkeypatch.context() as m:
            m.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            for k, v in (("MLFLOW_TRACKING_USERNAME", user), ("MLFLOW_TRACKING_PASSWORD", password)):
                if v is None:
                    m.delenv(k, raising=False)
                else:
                    m.setenv(k, v)
            yield
    return block()


def test_postgres_server_with_access_control_serves_trainers_refuses_others_and_keeps_all_across_restart(
        tmp_path, state_dir, monkeypatch):
    """The shared server as a team runs it: PostgreSQL behind MLflow's basic-auth app. No credentials, a wrong
    password and a viewer trying to register or move ``champion`` are refused; the trainer's job succeeds; a job
    whose registration is refused keeps everything it logged; it all survives a restart."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.tracking import MlflowClient

    state = state_dir
    env = {**os.environ, "VIBGAN_SERVER_DIR": str(state), "MLFLOW_PORT": str(_free_port()),
           "PG_PORT": str(_free_port()), "MLFLOW_WORKERS": "1", "PYTHON": sys.executable}
    env.pop("MLFLOW_AUTH", None)  # the default: authentication on
    uri = f"http://127.0.0.1:{env['MLFLOW_PORT']}"
    try:
        started = script("start", env)
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"export MLFLOW_TRACKING_URI={uri}" in started.stdout and "authentication: on" in started.stdout
        for secret in ("pgpass", "admin_password", "secret_key", "basic_auth.ini"):
            assert oct((state / secret).stat().st_mode & 0o777) == "0o600", secret
        admin_pw = (state / "admin_password").read_text().strip()
        assert len(admin_pw) >= 24
        logs = started.stdout + started.stderr + (state / "run" / "mlflow.log").read_text()
        assert admin_pw not in logs  # kept out of logs

        # no credentials, and a wrong password: refused, by the server and with a clear line from train.py
        for user, pw in ((None, None), ("admin", "not-the-password")):
            with _as(monkeypatch, user, pw), pytest.raises(MlflowException) as e:
                MlflowClient(uri, uri).search_experiments()
            assert e.value.error_code == "UNAUTHENTICATED"
        anon = _train(tmp_path, env, uri, "anon", None)
        assert anon.returncode != 0 and "MLFLOW_TRACKING_USERNAME" in anon.stdout + anon.stderr
        assert not (tmp_path / "anon" / "checkpoints").exists()  # refused before any work

        users = {}
        for name, role in (("trainer", "trainer"), ("viewer", "viewer"), ("partial", "trainer")):
            added = subprocess.run(["bash", str(SCRIPT), "add-user", name, role], env=env, capture_output=True,
                                   text=True, timeout=120)
            assert added.returncode == 0, added.stdout + added.stderr
            pw_file = state / "users" / f"{name}.password"
            assert oct(pw_file.stat().st_mode & 0o777) == "0o600"
            users[name] = (name, pw_file.read_text().strip())
            assert users[name][1] not in added.stdout + added.stderr  # never printed

        trained = _train(tmp_path, env, uri, "out", users["trainer"])
        assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
        assert "models:/vibgan-pg/1" in trained.stdout

        # the viewer reads, and is refused registering a version or moving champion
        with _as(monkeypatch, *users["viewer"]):
            client = MlflowClient(uri, uri)
            champion = client.get_model_version_by_alias("vibgan-pg", "champion")
            assert champion.version == "1"
            for attempt in (lambda: client.create_model_version("vibgan-pg", champion.source, run_id=champion.run_id),
                            lambda: client.set_registered_model_alias("vibgan-pg", "champion", "1"),
                            lambda: client.delete_registered_model_alias("vibgan-pg", "champion")):
                with pytest.raises(MlflowException) as e:
                    attempt()
                assert e.value.error_code == "PERMISSION_DENIED"
        viewer_job = _train(tmp_path, env, uri, "viewer_out", users["viewer"])
        assert viewer_job.returncode != 0 and "PERMISSION_DENIED" in viewer_job.stdout + viewer_job.stderr

        # a trainer whose right to the registered model is taken away: the run logs, registration is refused,
        # and nothing logged before the refusal is lost
        with _as(monkeypatch, "admin", admin_pw):
            AuthServiceClient(uri).revoke_user_permission("partial", "registered_model", "*")  # READ by default
        partial = _train(tmp_path, env, uri, "partial_out", users["partial"])
        assert partial.returncode == 0, partial.stdout[-2000:] + partial.stderr[-2000:]
        assert "NOT registered" in partial.stdout and "PERMISSION_DENIED" in partial.stdout
        assert (tmp_path / "partial_out" / "generator" / "generator.safetensors").is_file()

        assert script("stop", env).returncode == 0
        assert script("status", env).returncode == 3
        assert script("start", env).returncode == 0  # same data folder: runs, versions and users are still there
        with _as(monkeypatch, *users["viewer"]):
            client = MlflowClient(uri, uri)
            runs = client.search_runs([client.get_experiment_by_name("vibgan").experiment_id])
            assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
            for r in runs:
                assert len(client.get_metric_history(r.info.run_id, "loss/d")) == 4
            assert client.get_model_version_by_alias("vibgan-pg", "champion").version == "1"
            assert len(client.search_model_versions("name='vibgan-pg'")) == 1
        assert (state / "artifacts").is_dir() and any((state / "artifacts").rglob("generator.safetensors"))
        assert "postgresql" in script("uri", env).stdout  # the backend really is PostgreSQL
    finally:
        script("stop", env)
