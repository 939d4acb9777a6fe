"""One way every document the suite writes is versioned (asv's ``update_json``, in small). Pure: files are read
and written by ``results.files.read_json`` / ``write_json``.

A document is a JSON object carrying ``format_version``, a whole number. Reading checks it, refuses a newer one
(naming the fix: upgrade paddle-llm-bench), and upgrades an older one one step at a time, each step a pure
function from version ``v`` to ``v + 1``; writing stamps the current version. The documents: the case record
(``core.record``), baselines (``results.baselines``), paired runs (``paired.results``), the per-version
environments' markers (``envs.venvs``), the comparison JSON of ``compare`` and the nightly plan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

Document = dict[str, Any]  # a JSON object, before a typed model reads it
Upgrade = Callable[[Document], Document]


class FormatError(ValueError):
    """A document this version cannot read: not one of its kind, no or a bad version, or an upgrade step that
    found the document malformed. The message says which."""


class NewerFormatError(FormatError):
    """Written by a newer paddle-llm-bench: nothing is wrong with the file, this version is too old for it."""


@dataclass(frozen=True)
class Format:
    """A kind of document: its name in messages, its current version and the steps up to it."""

    name: str  # "baseline", "paired run", ...
    current: int
    upgrades: Mapping[int, Upgrade] = field(default_factory=dict)  # version v -> its step to v + 1
    tag: tuple[str, str] | None = None  # a (key, value) every document of the kind carries
    unversioned: int | None = None  # the version of a document without ``format_version`` (None: refused)

    def __post_init__(self) -> None:
        missing = [v for v in range(self.oldest, self.current) if v not in self.upgrades]
        if missing:
            raise ValueError(f"{self.name}: no upgrade step from format {', '.join(map(str, missing))}")

    @property
    def oldest(self) -> int:
        return min([*self.upgrades, self.current])

    def stamp(self, document: Mapping[str, Any]) -> Document:
        """``document`` as written: the tag and the current version first."""
        tag = dict([self.tag]) if self.tag else {}
        return {**tag, "format_version": self.current, **document}

    def version_of(self, document: object) -> int:
        """The document's version, checked: a FormatError says what is wrong."""
        if not isinstance(document, dict):
            raise FormatError(f"is {type(document).__name__}, not a JSON object: it is not a {self.name}")
        if self.tag and document.get(self.tag[0]) != self.tag[1]:
            raise FormatError(f'has no "{self.tag[0]}": "{self.tag[1]}": it is not a {self.name}')
        if "format_version" not in document and self.unversioned is None:
            raise FormatError(f"has no format_version: it is not a paddle-llm-bench {self.name}")
        version = document.get("format_version", self.unversioned)
        if type(version) is not int or version < 1:
            raise FormatError(
                f"has format_version {version!r}: it must be a whole number from {self.oldest} to {self.current}"
            )
        if version > self.current:
            raise NewerFormatError(
                f"has format_version {version}, written by a newer paddle-llm-bench (this one reads up to "
                f"{self.current}): upgrade paddle-llm-bench to read it; the file was left untouched"
            )
        if version < self.oldest:
            raise FormatError(f"has format_version {version}, older than this paddle-llm-bench reads ({self.oldest})")
        return version

    def upgrade(self, document: object) -> Document:
        """The document in the current format (a new object; the input is not changed)."""
        version = self.version_of(document)
        assert isinstance(document, dict)
        upgraded = dict(document)
        while version < self.current:
            upgraded = self.upgrades[version](upgraded)
            version += 1
            upgraded["format_version"] = version
        upgraded["format_version"] = self.current
        return upgraded


def _where(location: tuple[int | str, ...], prefix: str = "") -> str:
    """pydantic's location of a field as this suite's messages name fields: ``cases['tiny-a'].runs[0]``."""
    text = prefix
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def describe_invalid(error: ValidationError, prefix: str = "") -> str:
    """A typed model's first bad field, as one line: ``field <where> is <value>: <what it must be>``
    (``prefix``: where the model sits in its file, e.g. ``benchmarks[0].extra_info``)."""
    first = error.errors(include_url=False)[0]
    where = _where(first["loc"], prefix)
    message = str(first["msg"]).removeprefix("Value error, ")
    if not where:  # the document as a whole
        return f"{first['input']!r}: {message}"
    if first["type"] == "missing":
        return f"field {where} is missing"
    if first["type"] == "value_error" and isinstance(first["input"], dict):
        return f"field {where} {message}"  # a rule about the whole object: "... runs[0] holds neither ..."
    return f"field {where} is {first['input']!r}: {message}"
