"""Experiment tracking and model registry: the only module that imports mlflow (lazily).

Training takes a ``Tracker``; tests use ``MemoryTracker``; ``NullTracker`` discards everything;
``start_run`` opens an ``MlflowTracker`` on a local sqlite store or a tracking server.

Generators are logged as MLflow pyfunc models that load without unpickling anything: the
``python_function`` flavour names ``loader_module = "vibgan.tracking"`` (imported from the installed
package, never from the artifact) and its data is the generator directory (safetensors + JSON).
``load_generator`` refuses model directories that hold pickle-like or code files before reading them.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import posixpath
import re
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

DEFAULT_DB = "mlflow.db"  # the local store, in the working directory
DEFAULT_ARTIFACTS = "mlartifacts"  # artifacts of the local store, beside the database file
RUN_FILE = "mlflow_run.json"  # <out>/mlflow_run.json: the run id, for --resume
FAILURES_FILE = "tracking_failures.json"  # <out>/tracking_failures.json: what could not be logged
MODEL_ARTIFACT = "model"  # artifact path of the logged pyfunc model in a run, and <out>/mlflow_model locally
LOADER_MODULE = "vibgan.tracking"
CHAMPION_POLICIES = ("passed", "passed-or-first", "always", "never")
MAX_PREDICT_VALUES = 1 << 22  # samples per /invocations request (n x C x T): ~4 M floats, ~40 MB of JSON
# Suffixes never found in a vibgan model: pickles, torch/joblib archives, and code (.pth is also a site hook).
UNTRUSTED_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".dill", ".cloudpickle", ".bin",
                      ".py", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib")


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


# --------------------------------------------------------------------------------------------------
# The store: where runs go, and whether it answers
# --------------------------------------------------------------------------------------------------
def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db``."""
    uri = (uri or "").strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    return "sqlite:///" + str(Path.cwd().resolve() / DEFAULT_DB)


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
def _http_limits(retries: int, timeout_s: int):
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


def _reason(e: BaseException) -> str:
    """One short line for an exception; for network errors, the cause requests buries at the end."""
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
    from vibgan.errors import TrackingError

    db = _sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"tracking store {uri}: cannot create the folder {db.parent} ({e.strerror or e})") from None
    from mlflow.tracking import MlflowClient

    try:
        with _http_limits(0, timeout_s):
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
    except Exception as e:  # connection refused, DNS, timeouts, bad database: all mean "cannot track here"
        raise TrackingError(
            f"tracking store {redact(uri)} cannot be reached ({_reason(e)}); start the server, fix --tracking-uri / "
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


# --------------------------------------------------------------------------------------------------
# MlflowTracker
# --------------------------------------------------------------------------------------------------
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
            with _http_limits(self.io_retries, self.io_timeout_s):
                fn(*args, **kwargs)
        except MlflowException as e:
            if e.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"):
                self.rejected.append(f"{what}: {_reason(e)}")
                print(f"warning: MLflow refused {what}: {_reason(e)}", file=sys.stderr)
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
            print(f"warning: MLflow logging failed ({what}: {_reason(e)}); training goes on, metrics are held "
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


# --------------------------------------------------------------------------------------------------
# start_run: tags, environment, provenance
# --------------------------------------------------------------------------------------------------
def _git(*args: str) -> str | None:
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_tags(cfg) -> dict[str, str]:
    """Tags of a training run: vibgan and torch versions, git commit, host, device."""
    import getpass
    import platform
    import socket

    import torch

    import vibgan

    tags = {"vibgan.version": vibgan.__version__, "torch.version": torch.__version__,
            "python.version": platform.python_version(), "host": socket.gethostname(),
            "data.source": cfg.data.source, "mlflow.source.type": "LOCAL",
            "mlflow.source.name": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"}
    with contextlib.suppress(Exception):
        tags["mlflow.user"] = getpass.getuser()
    try:
        from vibgan.train import pick_device

        dev = pick_device(cfg.train.device)
        tags["device"] = str(dev)
        if dev.type == "cuda":
            tags["device.name"] = torch.cuda.get_device_name(dev)
    except Exception:  # an unavailable device is train()'s error to report, not the tracker's
        tags["device"] = str(cfg.train.device)
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["vibgan.git_commit"] = tags["mlflow.source.git.commit"] = commit
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        tags["vibgan.git_dirty"] = "true" if dirty else "false"
    if cfg.tracking.run_name:
        tags["mlflow.runName"] = cfg.tracking.run_name
    return tags


def environment() -> dict[str, Any]:
    """Python, platform, accelerator and key package versions."""
    import platform
    from importlib import metadata

    import torch

    pk = {}
    for name in ("vibgan", "torch", "numpy", "scipy", "pandas", "h5py", "matplotlib", "mlflow", "safetensors",
                 "tqdm", "pyarrow"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            pk[name] = metadata.version(name)
    return {"python": sys.version, "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(), "cuda": torch.version.cuda,
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], "packages": pk}


def pip_freeze() -> str:
    """``name==version`` of every installed distribution (from package metadata, no subprocess)."""
    from importlib import metadata

    seen = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name:
            seen[name.lower()] = f"{name}=={d.version}"
    return "\n".join(seen[k] for k in sorted(seen)) + "\n"




def data_provenance(cfg, data) -> dict[str, Any]:
    """Where the training data came from: source, files with sha256, split, classes, fs, conditions, and a
    sha256 fingerprint of the exact (normalised) training signals."""
    from vibgan.config import to_dict
    from vibgan.data import sha256_file

    d = cfg.data
    test = max(0.0, 1.0 - d.train_fraction - d.val_fraction)
    prov: dict[str, Any] = {
        "source": d.source, "classes": list(data.classes), "fs_hz": float(data.fs), "channels": list(data.channels),
        "segment_length": int(data.length), "units": data.units, "geometry": data.geometry,
        "split": {"method": "by time inside each recording (train, validation, test)",
                  "fractions": [round(d.train_fraction, 6), round(d.val_fraction, 6), round(test, 6)]},
        "conditions_rpm_load_hp": data.conditions,
    }
    if d.source == "simulated":
        prov["simulate"] = to_dict(cfg)["data"]["simulate"]
    if d.source == "files":
        prov["path"] = d.path
    recs, files = [], {}
    for p in data.train_parts:
        m = p.meta
        src = str(m.get("source", ""))
        recs.append({"label": p.label, "source": src, "rpm": m.get("rpm"), "load_hp": m.get("load_hp"),
                     "fault": m.get("fault"), "train_samples": int(p.samples), "seed": m.get("seed")})
        sp = Path(src)
        if src and src not in files and sp.is_file():
            files[src] = {"path": src, "bytes": sp.stat().st_size, "sha256": sha256_file(sp)}
    prov["recordings"] = recs
    if files:
        prov["files"] = list(files.values())
    sig = data.signals.detach().cpu().contiguous().numpy()
    prov["train_signals_sha256"] = hashlib.sha256(sig.tobytes()).hexdigest()
    prov["loader"] = json.loads(json.dumps(getattr(data, "provenance", {}) or {}, default=str))
    return prov


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

    The store is ``cfg.tracking.uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<cwd>/mlflow.db`` with
    artifacts in ``<cwd>/mlartifacts``: no server needed. Raises TrackingError, before any training,
    when the store does not answer. The run id goes to ``<out>/mlflow_run.json``; ``resume=True``
    reopens that run. ``data`` (a TrainData, or a dict) is logged as ``data/provenance.json``.
    """
    from vibgan.config import flatten, to_dict
    from vibgan.errors import TrackingError

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
        with _http_limits(2, 30):
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
                            f"{cfg.tracking.experiment!r} ({_reason(e)})") from None
    tmp = run_file.with_name(f".{RUN_FILE}.tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "experiment_id": exp_id, "tracking_uri": redact(uri)}, indent=2))
    os.replace(tmp, run_file)

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


# --------------------------------------------------------------------------------------------------
# The generator as an MLflow pyfunc model
# --------------------------------------------------------------------------------------------------
REQUEST_COLUMNS = ("label", "n", "rpm", "load_hp", "seed", "length")


def model_signature(generator):
    """Input: one request per row (label, n, optional rpm, load_hp, seed, length); output: one row per
    generated segment (request, label, index, rpm, load_hp, seed, signal as C lists of T floats)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema([ColSpec("string", "label"), ColSpec("long", "n"), ColSpec("double", "rpm", required=False),
                     ColSpec("double", "load_hp", required=False), ColSpec("long", "seed", required=False),
                     ColSpec("long", "length", required=False)])
    outputs = Schema([ColSpec("long", "request"), ColSpec("string", "label"), ColSpec("long", "index"),
                      ColSpec("double", "rpm"), ColSpec("double", "load_hp"), ColSpec("long", "seed"),
                      ColSpec(Array(Array("float")), "signal")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(generator):
    """Two segments of the first class at its first training condition, seed 0."""
    import pandas as pd

    label = generator.classes[0]
    rpm, load = (generator.conditions.get(label) or [[0.0, 0.0]])[0]
    return pd.DataFrame({"label": [label], "n": [2], "rpm": [float(rpm)], "load_hp": [float(load)], "seed": [0]})


def _request_error(message: str) -> Exception:
    """A VibganError that MLflow's scoring server answers with HTTP 400 and this message."""
    from vibgan.errors import VibganError

    try:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    except ImportError:  # pragma: no cover
        return VibganError(message)

    class RequestError(VibganError, MlflowException):
        pass

    return RequestError(message, error_code=INVALID_PARAMETER_VALUE)


class GeneratorModel:
    """The pyfunc wrapper ``mlflow.pyfunc.load_model`` returns for a vibgan model (through ``_load_pyfunc``)."""

    def __init__(self, generator) -> None:
        self.generator = generator

    def _requests(self, model_input) -> list[dict[str, Any]]:
        import numpy as np
        import pandas as pd

        try:
            if isinstance(model_input, dict):
                model_input = pd.DataFrame([model_input]) if all(np.ndim(v) == 0 for v in model_input.values()) \
                    else pd.DataFrame(model_input)
            elif isinstance(model_input, list):
                model_input = pd.DataFrame(model_input)
        except (ValueError, TypeError) as e:  # e.g. columns of different lengths
            raise _request_error(f"predict: the request is not a table of requests with columns "
                                 f"{list(REQUEST_COLUMNS)} ({e})") from None
        if not isinstance(model_input, pd.DataFrame):
            raise _request_error(f"predict: expected a DataFrame of requests with columns {list(REQUEST_COLUMNS)}, "
                                 f"got {type(model_input).__name__}")
        unknown = [c for c in model_input.columns if c not in REQUEST_COLUMNS]
        missing = [c for c in ("label", "n") if c not in model_input.columns]
        if unknown or missing:
            raise _request_error(f"predict: columns {list(model_input.columns)}: "
                                 + (f"missing {missing}" if missing else f"unknown {unknown}")
                                 + "; expected label, n and optionally rpm, load_hp, seed, length")
        if len(model_input) == 0:
            raise _request_error("predict: no requests (the DataFrame has no rows)")

        def opt(row, key, kind):
            v = row.get(key)
            if v is None or (np.ndim(v) == 0 and not isinstance(v, str) and pd.isna(v)):
                return None
            if isinstance(v, (bool, np.bool_, str, bytes)):
                raise TypeError(key)
            if kind is int:
                if not math.isfinite(float(v)) or not float(v).is_integer():
                    raise _request_error(f"predict: row {i}: {key} = {v!r}; expected a whole number")
                return int(v)
            return float(v)

        g = self.generator
        out, total = [], 0
        for i, row in enumerate(model_input.to_dict(orient="records")):
            label = row.get("label")
            try:
                n, rpm, load, seed, length = (opt(row, "n", int), opt(row, "rpm", float), opt(row, "load_hp", float),
                                              opt(row, "seed", int), opt(row, "length", int))
            except (TypeError, ValueError, OverflowError):
                raise _request_error(f"predict: row {i}: n, rpm, load_hp, seed and length must be numbers, got "
                                     f"{ {k: row.get(k) for k in REQUEST_COLUMNS if k in row} }") from None
            if not isinstance(label, str):
                raise _request_error(f"predict: row {i}: label = {label!r}; expected one of {g.classes}")
            if n is None:
                raise _request_error(f"predict: row {i}: n is missing; expected the number of segments")
            if seed is not None and not 0 <= seed < 2**63:
                raise _request_error(f"predict: row {i}: seed = {seed}; expected 0 <= seed < 2**63")
            try:
                n, rpm, load, length = g._check_request(label, n, rpm, load, length)
            except Exception as e:  # VibganError from the generator's own checks
                raise _request_error(f"predict: row {i}: {e}") from None
            total += n * length * len(g.channels)
            if total > MAX_PREDICT_VALUES:
                raise _request_error(f"predict: the request asks for more than {MAX_PREDICT_VALUES} samples in all "
                                     f"(n x channels x length); ask for fewer segments per request or use "
                                     f"pipelines/generate.py for bulk generation")
            if seed is None:
                seed = int(np.random.default_rng().integers(0, 2**31 - 1))
            out.append({"label": label, "n": n, "rpm": rpm, "load_hp": load, "seed": seed, "length": length})
        return out

    def predict(self, model_input, params: dict[str, Any] | None = None):
        """Generate segments for each request row; returns a DataFrame with one row per segment:
        request (row number), label, index (0..n-1), rpm, load_hp, seed, and ``signal`` (C lists of T floats,
        in the generator's physical units). A missing seed is drawn at random and reported."""
        import pandas as pd

        rows = []
        for r, q in enumerate(self._requests(model_input)):
            x = self.generator.sample(q["label"], q["n"], rpm=q["rpm"], load_hp=q["load_hp"], seed=q["seed"],
                                      length=q["length"])  # (n, C, T)
            for j in range(x.shape[0]):
                rows.append({"request": r, "label": q["label"], "index": j, "rpm": q["rpm"], "load_hp": q["load_hp"],
                             "seed": q["seed"], "signal": x[j].tolist()})
        return pd.DataFrame(rows, columns=["request", "label", "index", "rpm", "load_hp", "seed", "signal"])


def _load_pyfunc(data_path: str) -> GeneratorModel:
    """MLflow's entry point (``loader_module``): the generator directory inside a logged model, checked and
    loaded from safetensors + JSON; runs on the CPU unless ``VIBGAN_SERVE_DEVICE`` says otherwise."""
    gen_dir = Path(data_path).resolve()
    root = next((p for p in gen_dir.parents[:3] if (p / "MLmodel").is_file()), gen_dir)  # data/generator -> model
    return GeneratorModel(_load_checked(root, device=os.environ.get("VIBGAN_SERVE_DEVICE", "cpu")))


def model_card(result, cfg, report=None, provenance: dict[str, Any] | None = None, *, name: str = "",
               run_id: str | None = None) -> str:
    """A markdown model card: what the generator is for, its data, its measured fidelity and its limits."""
    g = result.generator
    lines = [f"# vibgan generator{f' `{name}`' if name else ''}", "",
             "A conditional 1D GAN that synthesises machine-vibration segments (bearing faults) in physical units.",
             "", "## Intended use",
             "- Augmenting small sets of fault recordings for training and testing condition-monitoring models.",
             "- Testing signal-processing pipelines (envelope analysis, indicators) on plausible signals.",
             "- Not a substitute for measurements when certifying a machine or a monitoring system.", "",
             "## Model",
             f"- classes: {', '.join(g.classes)}",
             f"- sampling rate: {g.fs:g} Hz; channels: {', '.join(g.channels)}; segment length: {g.length} "
             f"samples ({g.length / g.fs:.3f} s); units: {g.units}",
             f"- architecture: {g.meta.get('model', {}).get('kind', '?')}; loss {g.meta.get('loss', '?')}; "
             f"{result.steps} steps on {result.device} in {result.wall_s:.0f} s; seed {cfg.train.seed}",
             f"- training conditions (rpm, load hp) per class: {json.dumps(g.conditions)}",
             f"- vibgan {g.meta.get('vibgan_version', '?')}" + (f"; MLflow run {run_id}" if run_id else ""), "",
             "## Data provenance"]
    if provenance:
        lines += [f"- source: {provenance.get('source')}" + (f" ({provenance['path']})" if provenance.get('path') else ""),
                  f"- split: {provenance.get('split', {}).get('method', '')}, fractions "
                  f"{provenance.get('split', {}).get('fractions')}",
                  f"- training-signal fingerprint (sha256): {provenance.get('train_signals_sha256', '?')}"]
        for f in provenance.get("files", [])[:50]:
            lines.append(f"- file {f['path']}: {f['bytes']} bytes, sha256 {f['sha256']}")
        if provenance.get("simulate"):
            lines.append(f"- simulator settings: {json.dumps(provenance['simulate'])}")
    else:
        lines.append(f"- source: {cfg.data.source}" + (f" ({cfg.data.path})" if cfg.data.path else "")
                     + f"; split by time, train fraction {cfg.data.train_fraction}")
    lines += ["", "## Fidelity (generated vs held-out real segments)"]
    if report is None:
        lines.append("No fidelity report was computed for this run: judge it with pipelines/validate.py before use.")
    else:
        rd = report.to_dict()
        lines.append(f"Overall: **{'PASS' if rd.get('passed') else 'does not pass every check'}** "
                     f"(thresholds: {json.dumps(rd.get('thresholds', {}), default=str)})")
        lines += ["", "| class | lsd_db | floor_db | nearest class | envelope hit rate (gen / real) | "
                  "median kurtosis (gen / real) | spread ratio | C2ST accuracy | failed checks |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

        def fmt(v):
            return f"{v:.2f}" if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else "-"

        for label, c in rd.get("classes", {}).items():
            failed = [k for k, ok in (c.get("checks") or {}).items() if ok is False]
            lines.append(f"| {label} | {fmt(c.get('lsd_db'))} | {fmt(c.get('floor_db'))} | {c.get('nearest_class')} | "
                         f"{fmt(c.get('envelope_hit_rate'))} / {fmt(c.get('envelope_hit_rate_real'))} | "
                         f"{fmt(c.get('kurtosis_median'))} / {fmt(c.get('kurtosis_median_real'))} | "
                         f"{fmt(c.get('spread_ratio'))} | {fmt(c.get('c2st_accuracy'))} | "
                         f"{', '.join(failed) if failed else ('none' if c.get('passes') else '-')} |")
    lines += ["", "## Limits",
              "- Conditions (rpm, load) outside those seen in training are extrapolation: check spectra before use.",
              "- A generator trained on simulated bearings reproduces the simulator, not a real machine.",
              "- Fidelity is measured on spectra, envelope spectra and condition indicators of one segment length; "
              "longer segments and rare transients are not validated.",
              "- Generated data must never be mixed silently with measurements: keep the provenance attributes.", "",
              "## Loading", "```python",
              "import vibgan",
              f"g = vibgan.load_generator(\"models:/{name or 'NAME'}@champion\")",
              f"x = g.sample(\"{g.classes[0]}\", 16, seed=0)  # (16, {len(g.channels)}, {g.length}) in {g.units}",
              "```", ""]
    return "\n".join(lines)


def save_model(generator_dir: str | Path, path: str | Path, *, card: str | None = None) -> Path:
    """Write an MLflow pyfunc model directory at ``path`` (replaced atomically) around a generator directory:
    ``MLmodel`` (loader_module vibgan.tracking), ``generator/`` (safetensors + JSON), signature, input
    example, requirements and ``model_card.md``. Nothing is pickled."""
    import shutil

    import mlflow
    import mlflow.pyfunc

    from vibgan.networks import TrainedGenerator

    generator_dir, path = Path(generator_dir), Path(path)
    gen = TrainedGenerator.load(generator_dir)  # a broken generator must fail here, not at serving time
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    reqs = [f"mlflow=={mlflow.__version__}", "torch>=2.2", "numpy>=1.24", "scipy>=1.10", "pandas>=2.0",
            "safetensors>=0.4", "h5py>=3.8"]  # vibgan itself is not on an index: install it from its source tree
    mlflow.pyfunc.save_model(
        str(tmp), loader_module=LOADER_MODULE, data_path=str(generator_dir), signature=model_signature(gen),
        input_example=input_example(gen), pip_requirements=reqs,
        metadata={"vibgan_format": gen.meta.get("format"), "vibgan_version": gen.meta.get("vibgan_version"),
                  "classes": gen.classes, "fs": gen.fs, "length": gen.length, "units": gen.units})
    if card is not None:
        (tmp / "model_card.md").write_text(card, encoding="utf-8")
    _check_untrusted(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def _champion(policy: str, passed: bool | None, current: str | None) -> tuple[bool, str]:
    if policy == "always":
        return True, "champion_if=always"
    if policy == "never":
        return False, "champion_if=never"
    if passed:
        return True, "the fidelity report passes"
    if policy == "passed-or-first" and current is None:
        return True, ("no champion existed (champion_if=passed-or-first); the fidelity report "
                      + ("was not computed" if passed is None else "does not pass") + ": replace it when one passes")
    return False, "no fidelity report" if passed is None else "the fidelity report does not pass"


def log_generator(tracker, result, cfg, report=None, *, champion_if: str | None = None) -> str:
    """Log the trained generator as an MLflow pyfunc model, register it, and set aliases.

    Writes ``<out>/mlflow_model`` first (so nothing depends on the store), logs it as the run artifact
    ``model``, registers a new version of ``cfg.tracking.register_name``, sets alias ``candidate`` on it
    and ``champion`` as ``champion_if`` says: ``passed`` (default: only when ``report.passed``),
    ``passed-or-first`` (also when the model has no champion yet), ``always`` or ``never``; ``None``
    reads ``cfg.tracking.champion_if`` where the config has it. Returns a one-line summary such as
    ``models:/vibgan-sim/3 (aliases: candidate, champion)``; registry failures are reported in it,
    never raised: the generator stays in ``result.generator_dir``.
    """
    from vibgan.errors import ConfigError

    policy = champion_if or getattr(cfg.tracking, "champion_if", None) or "passed"
    if policy not in CHAMPION_POLICIES:
        raise ConfigError(f"champion_if = {policy!r}; expected one of {', '.join(CHAMPION_POLICIES)}")
    name = cfg.tracking.register_name
    is_mlflow = isinstance(tracker, MlflowTracker)
    run_id = tracker.run_id if is_mlflow else None
    prov = getattr(tracker, "dicts", {}).get("data/provenance.json")
    local = Path(result.out_dir) / "mlflow_model"
    try:
        save_model(result.generator_dir, local, card=model_card(result, cfg, report, prov, name=name, run_id=run_id))
    except Exception as e:
        return f"NOT logged as an MLflow model ({_reason(e)}); the generator is in {result.generator_dir}"
    if not is_mlflow:
        return f"MLflow model saved in {local} (not registered: no MLflow run)"
    if not name:
        tracker.log_artifact(local, MODEL_ARTIFACT)
        return f"runs:/{run_id}/{MODEL_ARTIFACT} (not registered: tracking.register_name is empty)"

    client = tracker.client
    from mlflow.exceptions import MlflowException

    passed = None if report is None else bool(report.passed)
    try:
        with _http_limits(2, 60):
            tracker._flush(force=True)
            client.log_artifacts(run_id, str(local), MODEL_ARTIFACT)
            try:
                client.create_registered_model(name, description="vibgan vibration-signal generators "
                                               "(pyfunc: DataFrame of label, n, rpm, load_hp, seed -> signals)")
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + MODEL_ARTIFACT
            worst = max(result.lsd_db.values()) if result.lsd_db else float("nan")
            tags = {"fidelity.passed": "unknown" if passed is None else str(passed).lower(),
                    "train.lsd_db_max": f"{worst:.3f}", "vibgan.version": str(result.generator.meta.get("vibgan_version")),
                    "classes": ",".join(result.generator.classes), "fs_hz": f"{result.generator.fs:g}"}
            mv = client.create_model_version(name, source, run_id=run_id, tags=tags,
                                             description=f"{cfg.data.source} data, {result.steps} steps; fidelity "
                                                         f"{'passes' if passed else 'not passed' if passed is False else 'not measured'}")
            version = str(mv.version)
            _wait_ready(client, name, version)
            client.set_registered_model_alias(name, "candidate", version)
            try:
                current = str(client.get_model_version_by_alias(name, "champion").version)
            except MlflowException:
                current = None
            crown, why = _champion(policy, passed, current)
            aliases = ["candidate"]
            if crown:
                client.set_registered_model_alias(name, "champion", version)
                client.set_model_version_tag(name, version, "champion_reason", why)
                aliases.append("champion")
    except Exception as e:
        tracker.failed_calls += 1
        return (f"NOT registered as {name!r} in {redact(tracker.tracking_uri)} ({_reason(e)}); the generator is safe "
                f"in {result.generator_dir} and {local}; register it later with "
                f"mlflow.register_model('runs:/{run_id}/{MODEL_ARTIFACT}', '{name}') once the artifact is logged")
    tracker.set_tags({"vibgan.registered_model": f"{name}/{version}"})
    summary = f"models:/{name}/{version} (aliases: {', '.join(aliases)})"
    if not crown:
        summary += f"; not champion: {why}" + (f"; champion stays version {current}" if current else "; no champion yet")
    elif why.startswith("no champion existed"):
        summary += f"; champion because {why}"
    return summary


def _wait_ready(client, name: str, version: str, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        status = str(client.get_model_version(name, version).status)
        if status in ("READY", "ModelVersionStatus.READY", "1"):
            return
        if "FAILED" in status:
            raise RuntimeError(f"model version {name}/{version}: registration failed ({status})")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------------
# Loading: models:/, runs:/, local directories; safetensors + JSON only
# --------------------------------------------------------------------------------------------------
def _check_untrusted(root: Path) -> None:
    """Raise ModelError naming the first file in ``root`` that is pickle-like, code, or a link leaving it."""
    from vibgan.errors import ModelError

    root = Path(root)
    real_root = root.resolve()
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            target = p.resolve()
            if target != real_root and real_root not in target.parents:
                raise ModelError(f"{p}: a link to {target}, outside the model directory; refused")
        if not p.is_file():
            continue
        name = p.name.lower()
        if name.endswith(UNTRUSTED_SUFFIXES) or name == "python_model.pkl":
            raise ModelError(f"{p}: a pickle-like or code file in a model directory; vibgan models hold only "
                             "safetensors weights and JSON/YAML/text, so this one was tampered with: refused, "
                             "nothing was loaded")
        if name == "generator.safetensors":
            continue
        with open(p, "rb") as fh:
            head = fh.read(4)
        if (len(head) >= 2 and head[0] == 0x80 and head[1] in (2, 3, 4, 5)) or head == b"PK\x03\x04":
            raise ModelError(f"{p}: holds pickle or zip (torch.save) data; refused, nothing was loaded")


def _generator_dir(root: Path) -> Path:
    """The generator directory of a local model: ``root`` itself, or the pyfunc data of an MLflow model."""
    import yaml

    from vibgan.errors import ModelError

    if (root / "generator.safetensors").exists() or (root / "generator.json").exists():
        return root
    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        raise ModelError(f"{root}: neither a vibgan generator directory (generator.safetensors + generator.json) "
                         "nor an MLflow model directory (MLmodel)")
    try:
        spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
        flavor = spec["flavors"]["python_function"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError) as e:
        raise ModelError(f"{mlmodel}: not a readable MLflow model description ({type(e).__name__}: {e})") from None
    if flavor.get("loader_module") != LOADER_MODULE or "python_model" in flavor or flavor.get("code"):
        raise ModelError(f"{mlmodel}: not a vibgan model (python_function loader_module "
                         f"{flavor.get('loader_module')!r}, expected {LOADER_MODULE!r} with no pickled python_model "
                         "or code); refused")
    data = (root / str(flavor.get("data", ""))).resolve()
    if data == root.resolve() or root.resolve() not in data.parents or not data.is_dir():
        raise ModelError(f"{mlmodel}: python_function data {flavor.get('data')!r} is not a folder inside {root}")
    return data


def _check_device(device) -> None:
    import torch

    from vibgan.errors import ModelError

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ModelError(f"device {device!r}: not a torch device ({e}); use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ModelError(f"device {device!r}: not available on this machine; use cpu")


def _load_checked(root: Path, device: str = "cpu"):
    from vibgan.networks import TrainedGenerator

    _check_device(device)
    root = Path(root)
    _check_untrusted(root)
    gen_dir = _generator_dir(root)
    if gen_dir != root:
        _check_untrusted(gen_dir)
    return TrainedGenerator.load(gen_dir, device=device)


def _resolve_models_uri(uri: str, tracking_uri: str) -> tuple[dict[str, Any], str]:
    """Registry facts (name, version, aliases, run) of ``models:/name/version|latest`` or ``models:/name@alias``,
    and where its files are. Resolved here with an explicit client: MLflow's own ``models:/`` download path
    consults the process-wide registry URI, not the one it is given."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST
    from mlflow.tracking import MlflowClient

    m = re.match(r"^models:/([^/@]+)(?:@([^/]+)|/([^/]+))/?$", uri)
    if not m:
        raise MlflowException(f"expected models:/NAME/VERSION or models:/NAME@ALIAS, got {uri!r}",
                              error_code=INVALID_PARAMETER_VALUE)
    name, alias, ver = m.groups()
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if alias:
        mv = client.get_model_version_by_alias(name, alias)
    elif ver == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise MlflowException(f"Registered Model with name={name} has no versions",
                                  error_code=RESOURCE_DOES_NOT_EXIST)
        mv = max(versions, key=lambda v: int(v.version))
    else:
        mv = client.get_model_version(name, ver)
    info = {"name": name, "version": str(mv.version), "alias": alias,
            "aliases": list(getattr(mv, "aliases", []) or []), "run_id": mv.run_id, "source": mv.source}
    return info, client.get_model_version_download_uri(name, str(mv.version))


def load_generator(uri: str | Path, device: str = "cpu", *, tracking_uri: str | None = None):
    """Load a generator from ``models:/name/version``, ``models:/name@alias``, ``runs:/<run_id>/model``, any
    MLflow artifact URI, or a local directory (a generator directory or an MLflow model directory).

    Artifacts are downloaded to a temporary folder, checked (no pickle-like or code files), and loaded
    from safetensors + JSON onto ``device`` (default CPU, whatever the training device was): nothing in
    the artifact is unpickled or imported. ``tracking_uri`` defaults as in ``start_run``. The returned
    ``TrainedGenerator`` has ``meta["source_uri"]`` and, for ``models:/`` URIs, ``meta["registry"]``.
    """
    from vibgan.errors import ModelError, TrackingError

    text = str(uri).strip()
    if text.startswith("file://"):
        from urllib.parse import unquote, urlparse

        text = unquote(urlparse(text).path)
    is_remote = bool(re.match(r"^[A-Za-z][\w+.-]*:/", text)) and not re.match(r"^[A-Za-z]:[\\/]", text)
    if not is_remote:
        p = Path(text).expanduser()
        if not p.is_dir():
            raise ModelError(f"{text}: no such model directory, and not a models:/ or runs:/ URI")
        gen = _load_checked(p, device=device)
        gen.meta["source_uri"] = str(p.resolve())
        return gen

    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    turi = resolve_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="vibgan-model-") as tmp:
        try:
            with _http_limits(3, 60):
                info, source = _resolve_models_uri(text, turi) if text.startswith("models:/") else ({}, text)
                local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=turi,
                                                            registry_uri=turi)
        except MlflowException as e:
            raise ModelError(f"{text}: not found in {redact(turi)} ({_reason(e)})") from None
        except OSError as e:
            raise ModelError(f"{text}: cannot be downloaded from {redact(turi)} ({_reason(e)})") from None
        except Exception as e:  # connection errors from requests and friends
            raise TrackingError(f"{text}: the tracking store {redact(turi)} cannot be reached ({_reason(e)})") from None
        local = Path(local)
        if local.is_file():
            raise ModelError(f"{text}: is a single file ({local.name}); expected a model directory")
        gen = _load_checked(local, device=device)
    gen.meta["source_uri"] = text
    if info:
        gen.meta["registry"] = info
    return gen
