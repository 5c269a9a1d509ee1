"""Shared fixtures: the real CWRU data beside the project, skipped with a reason where absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# the default local MLflow store lives in the project folder (vibgan.tracking.store_home); tests that do not name
# a store get a throwaway one, so the suite never writes runs into the developer's mlflow.db
os.environ["VIBGAN_HOME"] = tempfile.mkdtemp(prefix="vibgan-test-home-")

ROOT = Path(__file__).resolve().parents[1]
CWRU_DIR = Path(os.environ.get("VIBGAN_CWRU_DIR", ROOT.parent / "shared" / "data" / "cwru" / "1797rpm"))


@pytest.fixture(scope="session")
def cwru_dir() -> Path:
    """The CWRU 0 hp recordings (../shared/data/cwru/1797rpm); tests using it skip where it is absent."""
    if not CWRU_DIR.is_dir() or not any(CWRU_DIR.glob("*.npz")):
        pytest.skip(f"real CWRU data not found at {CWRU_DIR} (set VIBGAN_CWRU_DIR or place ../shared beside the project)")
    return CWRU_DIR


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch at most 2 threads so the suite behaves the same on the 2-core CI machine."""
    try:
        import torch

        torch.set_num_threads(min(2, torch.get_num_threads()))
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test (float summation order: the same result on any machine), given back after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
