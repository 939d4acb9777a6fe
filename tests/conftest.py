"""Shared fixtures: one model cache for the whole session, so the tiny preset is built once."""

from __future__ import annotations

from pathlib import Path

import pytest

# pytester runs real pytest sessions in subprocesses for the plugin's end-to-end tests.
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def llm_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory for the integration tests and every pytester run."""
    return tmp_path_factory.mktemp("llm-cache")
