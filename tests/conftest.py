"""Shared test fixtures."""
from pathlib import Path

import pytest

# CI checks out shared/ (external models and reference data) beside the repository.
SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data directory {SHARED_DIR} is absent (expected beside the repository checkout)")
    return SHARED_DIR
