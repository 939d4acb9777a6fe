"""Shared fixtures: one model cache for the whole session, so the tiny preset is built once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytester runs real pytest sessions in subprocesses for the plugin's end-to-end tests.
pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def llm_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache directory for the integration tests and every pytester run."""
    return tmp_path_factory.mktemp("llm-cache")


@pytest.fixture(scope="session")
def python_without_this_project() -> str:
    """The interpreter this virtual environment was made from: a Python without paddle-llm-bench (or Paddle)."""
    base = getattr(sys, "_base_executable", None)
    if sys.prefix == sys.base_prefix or not base:  # a venv's python is often a symlink to it: compare prefixes
        pytest.skip("no interpreter without this project at hand (not running in a virtual environment)")
    return str(base)
