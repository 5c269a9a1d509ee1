"""The one exception family of vibgan: every user mistake raises a VibganError."""

from __future__ import annotations

import sys


class VibganError(Exception):
    """Base class: a user-facing error whose message names the file, the field and what was expected."""


class DataError(VibganError):
    """A signal file or array is unreadable, corrupt, of the wrong shape, or holds non-finite values."""


class ConfigError(VibganError):
    """A configuration file or override is malformed, has an unknown key or a value of the wrong type."""


class ModelError(VibganError):
    """A model or checkpoint is missing, tampered with, or does not fit the request."""


class TrainingError(VibganError):
    """Training cannot go on (non-finite losses that rollback did not cure, unwritable output)."""


class TrackingError(VibganError):
    """The tracking store (MLflow) cannot be reached or refuses a request."""


def run_cli(fn, interrupted="interrupted") -> int:
    """Run a command line's body: a VibganError becomes one line ``error: ...`` on stderr and exit code 2,
    Ctrl-C the line ``interrupted`` (a string, or a function returning one when it happens) and exit code 130;
    anything else is a bug and keeps its traceback."""
    try:
        return fn()
    except VibganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted() if callable(interrupted) else interrupted, file=sys.stderr)
        return 130
