"""vibgan: synthetic industrial vibration signals from generative adversarial networks."""

from vibgan.errors import (
    ConfigError,
    DataError,
    ModelError,
    TrackingError,
    TrainingError,
    VibganError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ModelError",
    "TrackingError",
    "TrainingError",
    "VibganError",
    "load_generator",
    "__version__",
]


def load_generator(uri: str, **kwargs):
    """Load a registered or saved generator (``models:/name@alias``, ``runs:/...``, a directory); see vibgan.registry."""
    from vibgan.registry import load_generator as _load  # lazily: `import vibgan` stays light (no torch, no mlflow)

    return _load(uri, **kwargs)
