"""Shared fixtures: the real data directory (../shared/data) and a temporary cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real data: $RECFORGE_TEST_DATA_DIR, else $RECFORGE_DATA_DIR, else ../shared/data beside the clone.
SHARED_DATA = Path(
    os.environ.get("RECFORGE_TEST_DATA_DIR") or os.environ.get("RECFORGE_DATA_DIR") or REPO.parent / "shared" / "data"
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caches go to a temp dir: tests never write into ~/.cache or the read-only data dir."""
    monkeypatch.setenv("RECFORGE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets; CI has them beside the repository."""
    if not (SHARED_DATA / "ml-1m-ncf").is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}; set RECFORGE_TEST_DATA_DIR to the folder holding ml-1m-ncf/")
    return SHARED_DATA
