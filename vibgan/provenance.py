"""What a run records about where it came from: tags (user, host, git commit), environment, pip freeze, data fingerprints."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import vibgan
from vibgan.config import to_dict
from vibgan.device import pick_device
from vibgan.files import sha256_file


def _git(*args: str) -> str | None:

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



    tags = {"vibgan.version": vibgan.__version__, "torch.version": torch.__version__,
            "python.version": platform.python_version(), "host": socket.gethostname(),
            "data.source": cfg.data.source, "mlflow.source.type": "LOCAL",
            "mlflow.source.name": Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"}
    with contextlib.suppress(Exception):
        tags["mlflow.user"] = getpass.getuser()
    try:

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
    from importlib import metadata


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
    d = cfg.data
    test = max(0.0, 1.0 - d.train_fraction - d.val_fraction)
    prov: dict[str, Any] = {
        "source": d.source, "classes": list(data.classes), "fs_hz": float(data.fs), "channels": list(data.channels),
        "segment_length": int(data.length), "segment_length_why": getattr(data, "length_why", "") or None,
        "envelope_band_hz": list(data.envelope_band) if getattr(data, "envelope_band", None) else None,
        "envelope_band_why": (getattr(data, "envelope_band_info", {}) or {}).get("rule"),
        "normalize": d.normalize, "units": data.units, "geometry": data.geometry,
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
