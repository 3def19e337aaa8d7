"""Shared test fixtures: locations of ../shared, a real cluster when OPENSEARCH_URL is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("CIR_SHARED_DIR", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """`../shared/data` (read-only); tests that need it skip when it is absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path}")
    return path


@pytest.fixture(scope="session")
def api_spec_dir() -> Path:
    """`../shared/opensearch-api-spec`; spec-validation tests skip when it is absent."""
    path = SHARED / "opensearch-api-spec"
    if not path.is_dir():
        pytest.skip(f"OpenSearch API spec not found at {path}")
    return path


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    """A real cluster's URL from OPENSEARCH_URL; tests that need one skip otherwise."""
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip("OPENSEARCH_URL is not set")
    return url
