"""The saved record of one measured case: pytest-benchmark's ``extra_info``, its format checked and
older formats upgraded on read. Pure.

Written by ``runtime.measure.CaseResult.as_extra_info``; read back (through ``upgrade_record``) by every
reader of saved runs: baselines, compare, calibrate, ``baseline check``.

Format 2 (current): a value that could not be measured is absent from ``metrics``/``samples``/
``memory_bytes`` and named in ``absent`` with the reason, never stored as 0. Format 1 also had a top-level
``bandwidth_ceiling_absent``; it moves into ``absent["bandwidth_ceiling"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RECORD_FORMAT = 2


class RecordError(ValueError):
    """A record this version cannot read (a newer format, or no format at all)."""


def upgrade_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record in the current format (a new dict); RecordError if it is newer or malformed."""
    version = record.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RecordError(f"format_version {version!r} is not a whole number >= 1")
    if version > RECORD_FORMAT:
        raise RecordError(
            f"format_version {version} was written by a newer paddle-llm-bench (this one reads up to "
            f"{RECORD_FORMAT}): upgrade paddle-llm-bench to read it"
        )
    upgraded = dict(record)
    if version < 2:
        absent = dict(upgraded.get("absent", {}))
        if "bandwidth_ceiling_absent" in upgraded:
            absent["bandwidth_ceiling"] = upgraded.pop("bandwidth_ceiling_absent")
        upgraded["absent"] = absent
    upgraded["format_version"] = RECORD_FORMAT
    return upgraded
