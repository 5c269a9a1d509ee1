"""The generator as an MLflow pyfunc model, and the safe loading of model directories.

Generators are logged as pyfunc models that load without unpickling anything: the ``python_function`` flavour
names ``loader_module = "vibgan.serving"`` (imported from the installed package, never from the artifact) and
its data is the generator directory (safetensors + JSON). Model directories that hold pickle-like or code files
are refused before anything is read."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from vibgan.device import check_device
from vibgan.errors import ModelError, VibganError
from vibgan.generator import TrainedGenerator

LOADER_MODULE = "vibgan.serving"
#: What models logged before the serving module existed name (``vibgan.tracking`` re-exports ``_load_pyfunc``).
LEGACY_LOADER_MODULES = ("vibgan.tracking",)


MAX_PREDICT_VALUES = 1 << 22  # samples per /invocations request (n x C x T): ~4 M floats, ~40 MB of JSON


# Suffixes never found in a vibgan model: pickles, torch/joblib archives, and code (.pth is also a site hook).
UNTRUSTED_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".dill", ".cloudpickle", ".bin",
                      ".py", ".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib")


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
    return GeneratorModel(load_checked(root, device=os.environ.get("VIBGAN_SERVE_DEVICE", "cpu")))


def check_untrusted(root: Path) -> None:
    """Raise ModelError naming the first file in ``root`` that is pickle-like, code, or a link leaving it."""
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
    if flavor.get("loader_module") not in (LOADER_MODULE, *LEGACY_LOADER_MODULES) or "python_model" in flavor or flavor.get("code"):
        raise ModelError(f"{mlmodel}: not a vibgan model (python_function loader_module "
                         f"{flavor.get('loader_module')!r}, expected {LOADER_MODULE!r} with no pickled python_model "
                         "or code); refused")
    data = (root / str(flavor.get("data", ""))).resolve()
    if data == root.resolve() or root.resolve() not in data.parents or not data.is_dir():
        raise ModelError(f"{mlmodel}: python_function data {flavor.get('data')!r} is not a folder inside {root}")
    return data


def load_checked(root: Path, device: str = "cpu"):

    check_device(device)
    root = Path(root)
    check_untrusted(root)
    gen_dir = _generator_dir(root)
    if gen_dir != root:
        check_untrusted(gen_dir)
    return TrainedGenerator.load(gen_dir, device=device)
