"""Experiment tracking: the only module that imports mlflow (lazily).

Training takes a ``Tracker``; tests use ``MemoryTracker``; ``NullTracker`` discards everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    """What training needs from a tracking backend."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

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

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass


class MemoryTracker:
    """Keeps everything in memory: params, metrics as (step, value) lists, artifact paths, tags."""

    run_id: str | None = "memory"

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: dict[str, list[tuple[int, float]]] = {}
        self.artifacts: list[tuple[str, str | None]] = []
        self.tags: dict[str, str] = {}
        self.status: str | None = None

    def log_params(self, params: dict[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((int(step), float(v)))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.artifacts.append((str(path), artifact_path))

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def finish(self, status: str = "FINISHED") -> None:
        self.status = status


def load_generator(uri: str, **kwargs):
    """Load a generator from a local directory (``models:/`` and ``runs:/`` URIs come with MLflow support)."""
    from vibgan.errors import ModelError
    from vibgan.networks import TrainedGenerator

    p = Path(uri)
    if p.is_dir():
        return TrainedGenerator.load(p, **kwargs)
    raise ModelError(f"load_generator: {uri!r} is not a generator directory")
