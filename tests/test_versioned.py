"""The one versioning of every document the suite writes (core/versioned.py, results/files.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paddle_llm_bench.core.versioned import Format, FormatError, NewerFormatError
from paddle_llm_bench.results.files import read_document, write_document


def step(version: int) -> Any:
    """Upgrade step from ``version``: records that it ran, in order."""
    return lambda document: {**document, "steps": [*document.get("steps", []), version]}


def chain(current: int) -> Format:
    return Format("test document", current, {v: step(v) for v in range(1, current)}, tag=("format", "test"))


@given(st.integers(1, 6), st.data())
def test_every_older_version_is_upgraded_one_step_at_a_time(current: int, data: st.DataObject) -> None:
    kind = chain(current)
    version = data.draw(st.integers(1, current))
    document = {"format": "test", "format_version": version, "payload": [1, 2]}
    upgraded = kind.upgrade(document)
    assert upgraded.get("steps", []) == list(range(version, current)) and upgraded["payload"] == [1, 2]
    assert upgraded["format_version"] == current and document["format_version"] == version  # input unchanged
    assert kind.upgrade(upgraded) == upgraded  # upgrading the current format changes nothing


@pytest.mark.parametrize(
    ("document", "error", "words"),
    [
        ({"format": "test", "format_version": 4}, NewerFormatError, "written by a newer paddle-llm-bench"),
        ({"format": "test", "format_version": 0}, FormatError, "format_version 0: it must be a whole number from 1"),
        ({"format": "test", "format_version": True}, FormatError, "format_version True"),
        ({"format": "test", "format_version": "2"}, FormatError, "format_version '2'"),
        ({"format": "test"}, FormatError, "has no format_version"),
        ({"format_version": 1}, FormatError, 'no "format": "test": it is not a test document'),
        ([1, 2], FormatError, "is list, not a JSON object"),
    ],
)
def test_what_cannot_be_read_is_refused_saying_why(document: object, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        chain(3).upgrade(document)


def test_a_missing_step_is_a_programming_error_caught_at_definition() -> None:
    with pytest.raises(ValueError, match="no upgrade step from format 2"):
        Format("gappy", 3, {1: step(1)})


def test_an_unversioned_document_is_read_as_its_declared_version() -> None:
    kind = Format("record", 2, {1: step(1)}, unversioned=1)
    assert kind.upgrade({"x": 1}) == {"x": 1, "steps": [1], "format_version": 2}


def test_files_are_stamped_on_write_and_named_in_every_error(tmp_path: Path) -> None:
    kind = chain(2)
    path = tmp_path / "doc.json"
    write_document(path, kind, {"payload": "é"})
    assert json.loads(path.read_text("utf-8")) == {"format": "test", "format_version": 2, "payload": "é"}
    assert read_document(path, kind)["payload"] == "é"
    path.write_text('{"format": "test", "format_version": 9}')
    with pytest.raises(NewerFormatError, match=rf"test document {path} has format_version 9"):
        read_document(path, kind)
    path.write_text("{half")
    with pytest.raises(FormatError, match=rf"cannot read test document {path}: not valid JSON"):
        read_document(path, kind)
    with pytest.raises(FormatError, match=r"cannot read test document .*missing\.json"):
        read_document(tmp_path / "missing.json", kind)
