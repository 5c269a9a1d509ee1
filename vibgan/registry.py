"""The model registry and the public loading API: ``log_generator`` (save, log, register, set aliases),
the model card, and ``load_generator`` for ``models:/``, ``runs:/`` and local directories."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from vibgan.champion import CHAMPION_POLICIES, decide
from vibgan.errors import ConfigError, ModelError, TrackingError
from vibgan.generator import TrainedGenerator
from vibgan.progress import Callback, callback
from vibgan.serving import LOADER_MODULE, check_untrusted, input_example, load_checked, model_signature
from vibgan.tracking import (
    MlflowTracker,
    http_limits,
    redact,
    require_existing_store,
    resolve_tracking_uri,
    short_reason,
)

MODEL_ARTIFACT = "model"  # artifact path of the logged pyfunc model in a run, and <out>/mlflow_model locally


def _distilled_line(meta: dict) -> list[str]:
    """The model card's line on distillation: the student's body, its teacher's and the residual (none if not)."""
    d = meta.get("distilled_from")
    if not d:
        return []
    m, t, final = meta.get("model", {}), d.get("model", {}), d.get("final") or {}
    return [f"- distilled (vibgan.distill, {d.get('steps')} steps) from a body of widths {t.get('widths')}, kernel "
            f"{t.get('kernel')} into widths {m.get('widths')}, kernel {m.get('kernel')}; impulse path, equaliser and "
            f"variety knobs copied; residual L1 {final.get('waveform_l1_rel', float('nan')):.3f} of the signal. "
            "The fidelity below is this distilled generator's."]


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
             *_distilled_line(g.meta),
             f"- training conditions (rpm, load hp) per class: {json.dumps(g.conditions)}",
             f"- vibgan {g.meta.get('vibgan_version', '?')}" + (f"; MLflow run {run_id}" if run_id else ""), "",
             "## Conditions: seen and extrapolated",
             "Each class at the conditions (rpm, load) of the training data. Sampling a class where it was not "
             "recorded is extrapolation (the generator warns); judge such output against real recordings there "
             "where they exist, else by the physics checks (envelope peak at that speed's fault frequency).",
             *[f"- {line}" for line in g.coverage_lines()], "",
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
    ``MLmodel`` (loader_module vibgan.serving), ``generator/`` (safetensors + JSON), signature, input
    example, requirements and ``model_card.md``. Nothing is pickled."""
    import mlflow
    import mlflow.pyfunc


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
    check_untrusted(tmp)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def log_generator(tracker, result, cfg, report=None, *, champion_if: str | None = None,
                  progress: Callback | None = None) -> str:
    """Log the trained generator as an MLflow pyfunc model, register it, and set aliases.

    Writes ``<out>/mlflow_model`` first (so nothing depends on the store), logs it as the run artifact
    ``model``, registers a new version of ``cfg.tracking.register_name``, sets alias ``candidate`` on it
    and ``champion`` as ``champion_if`` says: ``passed`` (default: only when ``report.passed``),
    ``passed-or-first`` (also when the model has no champion yet), ``always`` or ``never``; ``None``
    reads ``cfg.tracking.champion_if`` where the config has it. Returns a one-line summary such as
    ``models:/vibgan-sim/3 (aliases: candidate, champion)``; registry failures are reported in it,
    never raised: the generator stays in ``result.generator_dir``. ``progress(done, total, what)`` hears of
    each of the four stages (save, upload, register, aliases).
    """
    tell = callback(progress)
    policy = champion_if or getattr(cfg.tracking, "champion_if", None) or "passed"
    if policy not in CHAMPION_POLICIES:
        raise ConfigError(f"champion_if = {policy!r}; expected one of {', '.join(CHAMPION_POLICIES)}")
    name = cfg.tracking.register_name
    is_mlflow = isinstance(tracker, MlflowTracker)
    run_id = tracker.run_id if is_mlflow else None
    prov = getattr(tracker, "dicts", {}).get("data/provenance.json")
    local = Path(result.out_dir) / "mlflow_model"
    tell(0, 4, f"saving the MLflow model to {local}")
    try:
        save_model(result.generator_dir, local, card=model_card(result, cfg, report, prov, name=name, run_id=run_id))
    except Exception as e:
        return f"NOT logged as an MLflow model ({short_reason(e)}); the generator is in {result.generator_dir}"
    if not is_mlflow:
        return f"MLflow model saved in {local} (not registered: no MLflow run)"
    if not name:
        tracker.log_artifact(local, MODEL_ARTIFACT)
        return f"runs:/{run_id}/{MODEL_ARTIFACT} (not registered: tracking.register_name is empty)"

    client = tracker.client
    from mlflow.exceptions import MlflowException

    passed = None if report is None else bool(report.passed)
    try:
        with http_limits(2, 60):
            tell(1, 4, "uploading the model to the run's artifacts")
            tracker._flush(force=True)
            client.log_artifacts(run_id, str(local), MODEL_ARTIFACT)
            tell(2, 4, f"registering a new version of {name!r}")
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
            tell(3, 4, f"version {version}: waiting until it is ready, then setting the aliases")
            _wait_ready(client, name, version)
            client.set_registered_model_alias(name, "candidate", version)
            try:
                current = str(client.get_model_version_by_alias(name, "champion").version)
            except MlflowException:
                current = None
            crown, why = decide(policy, passed, current)
            aliases = ["candidate"]
            if crown:
                client.set_registered_model_alias(name, "champion", version)
                client.set_model_version_tag(name, version, "champion_reason", why)
                aliases.append("champion")
    except Exception as e:
        tracker.failed_calls += 1
        return (f"NOT registered as {name!r} in {redact(tracker.tracking_uri)} ({short_reason(e)}); the generator is safe "
                f"in {result.generator_dir} and {local}; register it later with "
                f"mlflow.register_model('runs:/{run_id}/{MODEL_ARTIFACT}', '{name}') once the artifact is logged")
    tracker.set_tags({"vibgan.registered_model": f"{name}/{version}"})
    tell(4, 4, f"registered version {version}")
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
    text = str(uri).strip()
    if text.startswith("file://"):

        text = unquote(urlparse(text).path)
    is_remote = bool(re.match(r"^[A-Za-z][\w+.-]*:/", text)) and not re.match(r"^[A-Za-z]:[\\/]", text)
    if not is_remote:
        p = Path(text).expanduser()
        if not p.is_dir():
            raise ModelError(f"{text}: no such model directory, and not a models:/ or runs:/ URI")
        gen = load_checked(p, device=device)
        gen.meta["source_uri"] = str(p.resolve())
        return gen

    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    turi = resolve_tracking_uri(tracking_uri)
    require_existing_store(turi, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="vibgan-model-") as tmp:
        try:
            with http_limits(3, 60):
                info, source = _resolve_models_uri(text, turi) if text.startswith("models:/") else ({}, text)
                local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp, tracking_uri=turi,
                                                            registry_uri=turi)
        except MlflowException as e:
            raise ModelError(f"{text}: not found in {redact(turi)} ({short_reason(e)})") from None
        except OSError as e:
            raise ModelError(f"{text}: cannot be downloaded from {redact(turi)} ({short_reason(e)})") from None
        except Exception as e:  # connection errors from requests and friends
            raise TrackingError(f"{text}: the tracking store {redact(turi)} cannot be reached ({short_reason(e)})") from None
        local = Path(local)
        if local.is_file():
            raise ModelError(f"{text}: is a single file ({local.name}); expected a model directory")
        gen = load_checked(local, device=device)
    gen.meta["source_uri"] = text
    if info:
        gen.meta["registry"] = info
    return gen
