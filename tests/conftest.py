"""Shared fixtures (one model cache for the whole session, so the tiny preset is built once) and the test tiers.

Tiers: ``pytest tests`` runs the fast tier (pure logic, the real tiny model in this process); ``--e2e`` adds
the end-to-end tier (``e2e``: pytest sessions and worker processes in subprocesses, each paying Paddle's
import), ``--slow`` the slow one (``slow``: environments from the package index, the 1.5B architecture).
CI (``.ci/run``) runs every tier.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytester runs real pytest sessions in subprocesses for the plugin's end-to-end tests.
pytest_plugins = ["pytester"]
TIERS = {"e2e": "e2e", "slow": "slow"}  # marker -> the option (--e2e, --slow) that runs it


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("paddle-llm-bench test tiers")
    group.addoption("--e2e", action="store_true", help="also run the end-to-end tier (subprocess sessions, workers)")
    group.addoption("--slow", action="store_true", help="also run the slow tier (environments from the index, 1.5B)")


def _tiers_left_out(config: pytest.Config) -> list[str]:
    return [marker for marker, option in TIERS.items() if not config.getoption(option)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the tiers not asked for."""
    left_out = set(_tiers_left_out(config))
    deselected = [item for item in items if any(mark.name in left_out for mark in item.iter_markers())]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


def pytest_report_header(config: pytest.Config) -> str:
    left_out = _tiers_left_out(config)
    if not left_out:
        return "test tiers: all"
    return f"test tiers: {', '.join(left_out)} left out (run with {' '.join('--' + TIERS[m] for m in left_out)})"


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
