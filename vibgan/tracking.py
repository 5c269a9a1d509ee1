"""Experiment tracking: the ``Tracker`` protocol training logs through, and its backends.

``NullTracker`` discards everything; ``MemoryTracker`` keeps it (tests); ``MlflowTracker`` logs one MLflow run
and never raises once the run is open (buffered, retried, failures reported). ``start_run`` opens one on a local
sqlite store or a tracking server. mlflow is imported only here, in ``vibgan.registry`` and in ``vibgan.serving``."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import posixpath
import re
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

from vibgan.config import flatten, to_dict
from vibgan.errors import TrackingError
from vibgan.files import write_text_atomic
from vibgan.provenance import data_provenance, environment, pip_freeze, run_tags
from vibgan.serving import _load_pyfunc  # noqa: F401  (models logged before vibgan.serving name loader_module vibgan.tracking)

DEFAULT_DB = "mlflow.db"  # the local store's database file, in store_home()


DEFAULT_ARTIFACTS = "mlartifacts"  # artifacts of the local store, beside the database file


RUN_FILE = "mlflow_run.json"  # <out>/mlflow_run.json: the run id, for --resume


FAILURES_FILE = "tracking_failures.json"  # <out>/tracking_failures.json: what could not be logged


class Tracker(Protocol):
    """What training needs from a tracking backend."""
    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_dict(self, d: dict[str, Any], artifact_file: str) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def finish(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Discards everything."""
    run_id: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_dict(self, d: dict[str, Any], artifact_file: str) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


class MemoryTracker:
    """Keeps everything in memory: params, metrics as (step, value) lists, artifact paths, dicts, tags."""
    run_id: str | None = "memory"

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.dicts: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, str] = {}
        self.status: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((int(step), float(v)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(path), artifact_path))

    def log_dict(self, d: dict[str, Any], artifact_file: str) -> None:
        self.dicts[artifact_file] = json.loads(json.dumps(d, default=str))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def finish(self, status: str = "FINISHED") -> None:
        self.status = status


def store_home() -> Path:
    """The folder of the default local store, the same from any working directory: ``VIBGAN_HOME`` if set,
    else the project folder this vibgan was installed from (a clone: ``pyproject.toml`` beside the package),
    else ``$XDG_DATA_HOME/vibgan`` (``~/.local/share/vibgan``) for a plain ``pip install``."""
    env = os.environ.get("VIBGAN_HOME", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    project = Path(__file__).resolve().parents[1]
    if (project / "pyproject.toml").is_file() and (project / "vibgan" / "__init__.py").is_file():
        return project
    data_home = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(data_home).expanduser().resolve() / "vibgan"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<store_home()>/mlflow.db``."""
    uri = (uri or "").strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    return "sqlite:///" + str(store_home() / DEFAULT_DB)


def where_looked(uri: str | None = None) -> str:
    """How ``resolve_tracking_uri(uri)`` chose its store, for messages: which setting it came from."""
    if (uri or "").strip():
        return "given explicitly (--tracking-uri / tracking.uri)"
    if os.environ.get("MLFLOW_TRACKING_URI", "").strip():
        return "from MLFLOW_TRACKING_URI"
    src = "VIBGAN_HOME" if os.environ.get("VIBGAN_HOME", "").strip() else "the project folder"
    return f"the default local store in {src} (no --tracking-uri, tracking.uri or MLFLOW_TRACKING_URI set)"


def require_existing_store(uri: str, given: str | None = None) -> None:
    """For reading (``models:/``, ``runs:/``): a local sqlite store must exist; MLflow would create an empty one
    and then report the model missing. Raises TrackingError saying where it looked."""
    db = _sqlite_path(uri)
    if db is not None and not db.is_file():
        raise TrackingError(f"no MLflow store at {db} ({where_looked(given)}); train there first, or point "
                            "--tracking-uri / MLFLOW_TRACKING_URI / VIBGAN_HOME at the store that holds the model")


def redact(uri: str) -> str:
    """``uri`` without a password (``http://user:***@host``), for messages and tags."""
    return re.sub(r"(://[^/:@]+):[^/@]*@", r"\1:***@", uri)


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest) if rest.startswith("/") else Path.cwd() / rest


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a sqlite store live beside its database file, in ``mlartifacts``; servers decide themselves."""
    db = _sqlite_path(uri)
    return (db.resolve().parent / DEFAULT_ARTIFACTS).as_uri() if db is not None else None


@contextlib.contextmanager
def http_limits(retries: int, timeout_s: int):
    """Bound MLflow's HTTP retries and timeout (defaults: 7 retries with backoff, 120 s) within the block,
    and keep its artifact progress bars out of training logs."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(int(retries)), "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout_s)),
             "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    old = {k: os.environ.get(k) for k in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def short_reason(e: BaseException) -> str:
    """One short line for an exception; for network errors, the cause requests buries at the end; for a server
    with authentication, who was refused and what to set."""
    code = getattr(e, "error_code", None)
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        if code == "PERMISSION_DENIED":
            return (f"PERMISSION_DENIED: the server's access control refuses this to user {user!r} (a viewer, or "
                    "no EDIT on this experiment or model: ask the server's admin for the trainer role)")
        if not user:
            return ("UNAUTHENTICATED: the server asks for a user and password; set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials)")
        return f"UNAUTHENTICATED: the server rejected the password of user {user!r} (MLFLOW_TRACKING_PASSWORD)"
    full = str(getattr(e, "message", None) or e)
    for cause in ("Connection refused", "Name or service not known", "Temporary failure in name resolution",
                  "No route to host", "Network is unreachable", "timed out", "Connection reset",
                  "Remote end closed connection"):
        if cause in full:
            return f"{type(e).__name__}: {cause}"
    lines = full.strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300] if lines else ''}"


def check_store(uri: str, timeout_s: int = 5) -> None:
    """Raise TrackingError naming ``uri`` unless the tracking store answers within about ``timeout_s``."""
    db = _sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"tracking store {uri}: cannot create the folder {db.parent} ({e.strerror or e})") from None
    from mlflow.tracking import MlflowClient

    try:
        with http_limits(0, timeout_s):
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
    except Exception as e:  # connection refused, DNS, timeouts, bad database: all mean "cannot track here"
        if getattr(e, "error_code", None) in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            raise TrackingError(f"tracking store {redact(uri)} refused this job ({short_reason(e)}), before any "
                                "work; or run with --no-tracking") from None
        raise TrackingError(
            f"tracking store {redact(uri)} cannot be reached ({short_reason(e)}); start the server, fix --tracking-uri / "
            "MLFLOW_TRACKING_URI / tracking.uri, or run with --no-tracking") from None


def metric_name(name: str) -> str:
    """A valid MLflow metric or param name: '@' -> '_at_', other characters outside [A-Za-z0-9_ ./:-] -> '_'.

    Slashes are kept (``fid/lsd_db/OR@6_7`` -> ``fid/lsd_db/OR_at_6_7``); empty path parts are dropped.
    """
    s = re.sub(r"[^/\w.\- :]", "_", str(name).replace("@", "_at_"), flags=re.ASCII)
    parts = [p for p in s.split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or "_"


def _param_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s if len(s) <= 6000 else s[:5990] + "...[cut]"


class MlflowTracker:
    """Logs one MLflow run through ``MlflowClient``; never raises once the run is open.

    When the store fails (server gone, database locked), training goes on: metrics wait in a bounded
    buffer and are retried on later calls (at most every ``retry_interval_s``) and at ``finish``;
    artifacts, params and tags are retried at recovery and at ``finish``. One warning is printed.
    ``finish`` reports what could not be logged, as the tag ``vibgan.tracking_failures`` where the store
    answers again and always in ``<out>/tracking_failures.json``.
    """
    def __init__(self, tracking_uri: str, run_id: str, out_dir: str | Path | None = None, *, client=None,
                 retry_interval_s: float = 10.0, max_buffer: int = 100_000, io_retries: int = 1,
                 io_timeout_s: int = 10) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.client = client or MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.retry_interval_s = retry_interval_s
        self.io_retries, self.io_timeout_s = io_retries, io_timeout_s
        self.dicts: dict[str, dict[str, Any]] = {}  # what log_dict was given, for the model card
        self.failed_calls = 0  # store calls that failed (each retry counts)
        self.rejected: list[str] = []  # requests the store refused as invalid: not retried
        self.dropped_metrics = 0  # metric points pushed out of the full buffer
        self._pending: deque = deque(maxlen=max_buffer)  # mlflow Metric entities not yet logged
        self._pending_params: dict[str, str] = {}
        self._pending_tags: dict[str, str] = {}
        self._pending_artifacts: list[tuple[str, str | None]] = []
        self._logged_params: dict[str, str] = {}
        self._down_since: float | None = None
        self._next_try = 0.0
        self._warned = False
        self._finished = False
        self.status: str | None = None

    # ---- plumbing -----------------------------------------------------------------------------
    def _may_try(self, force: bool) -> bool:
        return force or self._down_since is None or time.monotonic() >= self._next_try

    def _call(self, what: str, fn, *args, **kwargs) -> bool:
        """Run one store call; on failure count it, warn once, back off, and return False."""
        from mlflow.exceptions import MlflowException

        try:
            with http_limits(self.io_retries, self.io_timeout_s):
                fn(*args, **kwargs)
        except MlflowException as e:
            if e.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"):
                self.rejected.append(f"{what}: {short_reason(e)}")
                print(f"warning: MLflow refused {what}: {short_reason(e)}", file=sys.stderr)
                return True  # the request is wrong, not the store: retrying would not help
            return self._failed(what, e)
        except Exception as e:  # requests/sqlalchemy/OS errors: the store is away
            return self._failed(what, e)
        if self._down_since is not None:  # the caller's _flush goes on with everything held back
            self._down_since = None
            print(f"tracking: the MLflow store {redact(self.tracking_uri)} answers again; logging what was held back",
                  file=sys.stderr)
        return True

    def _failed(self, what: str, e: BaseException) -> bool:
        self.failed_calls += 1
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        self._next_try = now + self.retry_interval_s
        if not self._warned:
            self._warned = True
            print(f"warning: MLflow logging failed ({what}: {short_reason(e)}); training goes on, metrics are held "
                  f"(up to {self._pending.maxlen} points) and retried every {self.retry_interval_s:g} s and at the "
                  f"end, which reports what could not be logged", file=sys.stderr)
        return False

    def _flush(self, force: bool = False) -> None:
        """Send what is held back: params, tags, metrics (batches of 1000), artifacts."""
        from mlflow.entities import Param, RunTag

        if not self._may_try(force):
            return
        while self._pending_params:
            chunk = dict(list(self._pending_params.items())[:100])
            if not self._call("params", self.client.log_batch, self.run_id,
                              params=[Param(k, v) for k, v in chunk.items()]):
                return
            for k in chunk:
                self._logged_params[k] = self._pending_params.pop(k)
        while self._pending_tags:
            chunk = dict(list(self._pending_tags.items())[:100])
            if not self._call("tags", self.client.log_batch, self.run_id,
                              tags=[RunTag(k, v) for k, v in chunk.items()]):
                return
            for k in chunk:
                self._pending_tags.pop(k, None)
        while self._pending:
            chunk = list(itertools.islice(self._pending, 1000))
            if not self._call("metrics", self.client.log_batch, self.run_id, metrics=chunk):
                return
            for _ in chunk:
                self._pending.popleft()
        while self._pending_artifacts:
            path, apath = self._pending_artifacts[0]
            if not Path(path).exists():
                self.rejected.append(f"artifact {path}: the file is gone")
            elif not self._call(f"artifact {Path(path).name}", self._log_path, path, apath):
                return
            self._pending_artifacts.pop(0)

    def _log_path(self, path: str, artifact_path: str | None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(self.run_id, path, artifact_path)
        else:
            self.client.log_artifact(self.run_id, path, artifact_path)

    # ---- the Tracker protocol -------------------------------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        """Log params (names sanitised, values as strings); a changed value on resume becomes a tag."""
        for k, v in params.items():
            key, val = metric_name(k), _param_value(v)
            old = self._logged_params.get(key)
            if old is None:
                self._pending_params[key] = val
            elif old != val:  # MLflow forbids changing a param: keep the new value visible as a tag
                self._pending_tags[f"param_changed/{key}"] = val
        self._flush()

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log scalar metrics at ``step`` in one batch; non-numeric values are skipped."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        for k, v in metrics.items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            if len(self._pending) == self._pending.maxlen:
                self.dropped_metrics += 1
            self._pending.append(Metric(metric_name(k), value, ts, int(step)))
        self._flush()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory; held back and retried when the store is away."""
        self._pending_artifacts.append((str(path), artifact_path))
        self._flush()

    def log_dict(self, d: dict[str, Any], artifact_file: str) -> None:
        """Log ``d`` as a JSON artifact ``artifact_file`` (e.g. ``data/provenance.json``); a copy stays in
        ``<out>/logged/<artifact_file>`` so nothing depends on the store answering."""
        clean = json.loads(json.dumps(d, default=str))
        self.dicts[artifact_file] = clean
        root = self.out_dir / "logged" if self.out_dir is not None else Path(tempfile.mkdtemp(prefix="vibgan-dict-"))
        local = root / artifact_file
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
        apath = posixpath.dirname(artifact_file) or None
        self.log_artifact(local, apath)

    def set_tags(self, tags: dict[str, str]) -> None:
        self._pending_tags.update({metric_name(k): str(v)[:5000] for k, v in tags.items()})
        self._flush()

    @property
    def unlogged(self) -> dict[str, Any]:
        """What is still held back: counts, and the names of artifacts."""
        return {"metric_points": len(self._pending), "metric_points_dropped": self.dropped_metrics,
                "params": sorted(self._pending_params), "tags": sorted(self._pending_tags),
                "artifacts": [p for p, _ in self._pending_artifacts], "rejected": list(self.rejected)}

    def finish(self, status: str = "FINISHED") -> None:
        """Flush what is held back, mark the run ``status`` and report anything that could not be logged."""
        from mlflow.entities import RunTag

        if self._finished:
            return
        self._finished = True
        self.status = status
        for attempt in range(2):  # the store may have come back; give it two chances
            if attempt:
                time.sleep(min(2.0, self.retry_interval_s))
            self._flush(force=True)
            if self._down_since is None:
                break
        un = self.unlogged
        lost = un["metric_points"] + un["metric_points_dropped"] + len(un["params"]) + len(un["tags"]) + \
            len(un["artifacts"])
        up = self._down_since is None
        if self.failed_calls or lost or self.rejected:
            if up:  # a store that is still away would only fail (and time out) again
                self._call("tags", self.client.log_batch, self.run_id,
                           tags=[RunTag("vibgan.tracking_failures", str(self.failed_calls)),
                                 RunTag("vibgan.tracking_unlogged", str(lost))])
            report = {"run_id": self.run_id, "tracking_uri": redact(self.tracking_uri), "status": status,
                      "store_answers_at_end": up, "failed_calls": self.failed_calls, "unlogged": un,
                      "metrics_unlogged": [{"key": m.key, "step": m.step, "value": m.value}
                                           for m in itertools.islice(self._pending, 10_000)]}
            where = ""
            if self.out_dir is not None:
                path = self.out_dir / FAILURES_FILE
                with contextlib.suppress(OSError):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
                    where = f"; details in {path}"
            if lost:
                print(f"warning: tracking: {lost} items could not be logged to {redact(self.tracking_uri)} "
                      f"({un['metric_points'] + un['metric_points_dropped']} metric points, {len(un['artifacts'])} "
                      f"artifacts, {len(un['params'])} params, {len(un['tags'])} tags) after {self.failed_calls} "
                      f"failed calls{where}. Files and checkpoints on disk are complete.", file=sys.stderr)
            else:
                print(f"tracking: {self.failed_calls} store calls failed during the run; everything held back "
                      f"was logged later{where}", file=sys.stderr)
        if not (up and self._call("run status", self.client.set_terminated, self.run_id, status)):
            print(f"warning: tracking: run {self.run_id} could not be marked {status}; it shows as RUNNING in "
                  f"{redact(self.tracking_uri)}", file=sys.stderr)


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri))
        except MlflowException as e:  # created meanwhile by another process
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise e from None
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
        print(f"tracking: experiment {name!r} was deleted; restored it", file=sys.stderr)
    return exp.experiment_id


def start_run(cfg, resume: bool = False, out_dir: str | Path | None = None, data=None) -> Tracker:
    """Open an MLflow run for a training run and log its config, tags and environment.

    The store is ``cfg.tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<home>/mlflow.db`` with
    artifacts in ``<home>/mlartifacts``, ``<home>`` being ``store_home()`` (the project folder): no server needed. Raises TrackingError, before any training,
    when the store does not answer. The run id goes to ``<out>/mlflow_run.json``; ``resume=True``
    reopens that run. ``data`` (a TrainData, or a dict) is logged as ``data/provenance.json``.
    """
    uri = resolve_tracking_uri(cfg.tracking.uri)
    check_store(uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    out = Path(out_dir if out_dir is not None else cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrackingError(f"output directory {out}: cannot be created ({e.strerror or e})") from None
    run_file = out / RUN_FILE
    try:
        with http_limits(2, 30):
            exp_id = _experiment_id(client, cfg.tracking.experiment, uri)
            run_id, logged_params = None, {}
            if resume and run_file.is_file():
                run_id, logged_params = _reopen(client, run_file, uri)
            reopened = run_id is not None
            tags = run_tags(cfg)
            if run_id is None:
                if resume:
                    tags["vibgan.resumed"] = "true (new run: the previous one was not found)"
                run = client.create_run(exp_id, run_name=cfg.tracking.run_name or None, tags=tags)
                run_id = run.info.run_id
            else:
                client.update_run(run_id, status="RUNNING")
    except TrackingError:
        raise
    except Exception as e:
        raise TrackingError(f"tracking store {redact(uri)}: cannot open a run in experiment "
                            f"{cfg.tracking.experiment!r} ({short_reason(e)})") from None
    write_text_atomic(run_file, json.dumps({"run_id": run_id, "experiment_id": exp_id, "tracking_uri": redact(uri)},
                                           indent=2))

    tracker = MlflowTracker(uri, run_id, out, client=client)
    tracker._logged_params = dict(logged_params)
    if reopened:  # refresh the tags that may have changed (device, commit)
        tracker.set_tags({k: v for k, v in tags.items() if not k.startswith("mlflow.source")})
    tracker.log_params(flatten(to_dict(cfg)))
    tracker.log_dict(environment(), "environment/versions.json")
    freeze = out / "logged" / "environment" / "requirements.txt"
    freeze.parent.mkdir(parents=True, exist_ok=True)
    freeze.write_text(pip_freeze(), encoding="utf-8")
    tracker.log_artifact(freeze, "environment")
    if data is not None:
        tracker.log_dict(data if isinstance(data, dict) else data_provenance(cfg, data), "data/provenance.json")
    hint = f"; browse with: mlflow ui --backend-store-uri {uri}" if uri.startswith("sqlite") else ""
    print(f"tracking: {'reopened' if reopened else 'started'} MLflow run {run_id} in {redact(uri)} "
          f"(experiment {cfg.tracking.experiment!r}){hint}")
    return tracker


def _reopen(client, run_file: Path, uri: str) -> tuple[str | None, dict[str, str]]:
    """The run recorded in ``run_file`` and its params, or (None, {}) when this store does not have it."""
    from mlflow.exceptions import MlflowException

    try:
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        run_id = str(saved["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        print(f"warning: {run_file} is unreadable; starting a new MLflow run", file=sys.stderr)
        return None, {}
    try:
        run = client.get_run(run_id)
    except MlflowException:
        print(f"warning: MLflow run {run_id} (from {run_file}) is not in {redact(uri)}; starting a new run",
              file=sys.stderr)
        return None, {}
    if run.info.lifecycle_stage == "deleted":
        print(f"warning: MLflow run {run_id} was deleted; starting a new run", file=sys.stderr)
        return None, {}
    return run_id, dict(run.data.params)
