"""The private parts of pytest-benchmark this suite uses (docs/development.md, "Where this reaches into
pytest-benchmark"): if an upgrade within the pinned range moves one, this fails here rather than a run
silently writing its results non-atomically."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest_benchmark.plugin
import pytest_benchmark.session
from pytest_benchmark.storage.file import FileStorage

from paddle_llm_bench.results.saving import SaveLog, install


def test_the_session_is_where_the_plugin_looks_for_it() -> None:
    assert "config._benchmarksession = " in inspect.getsource(pytest_benchmark.plugin)
    assert "self.json = " in inspect.getsource(pytest_benchmark.session.BenchmarkSession.__init__)
    assert callable(pytest_benchmark.session.BenchmarkSession.save_json)


def test_file_storage_has_what_the_atomic_save_replaces_and_reads(tmp_path: Path) -> None:
    storage = FileStorage(str(tmp_path), default_machine_id="m", logger=None)
    assert isinstance(storage._next_num, str) and callable(storage.get) and callable(storage.save)

    class Session:  # only the attributes ``install`` touches, on a real FileStorage
        json = str(tmp_path / "run.json")

    session = Session()
    session.storage = storage  # type: ignore[attr-defined]
    original_save = storage.save
    install(session, SaveLog(rescue_dir=tmp_path / "rescue"))
    assert storage.save is not original_save  # replaced by the atomic writer
