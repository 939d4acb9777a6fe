"""Every command the README and docs/ show parses: its subcommand and options exist (a renamed option breaks
this test, not a reader's first try)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from paddle_llm_bench.cli import SUBCOMMANDS, parse_subcommand

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAMS = ("paddle-llm-bench", "pytest")
PLACEHOLDERS = ("SUBCOMMAND", "STEP", "...", "\\|")  # prose about commands, not a command


def shown_commands() -> list[tuple[str, str, bool]]:
    """(page, command, whole) for every command in a code block (whole: it must parse as it stands) or in
    inline code (prose such as `--inject-slowdown P`: its subcommand and option names must exist)."""
    found = []
    for page in PAGES:
        text = page.read_text("utf-8")
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        whole = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
        inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line, is_whole in [*((line, True) for line in whole), *((line, False) for line in inline)]:
            if any(mark in line for mark in PLACEHOLDERS):
                continue
            for part in re.split(r"&&|;|\|", line.split(" # ")[0]):
                words = part.split()
                while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value before the command
                    words = words[1:]
                if words and words[0].rsplit("/", 1)[-1] in PROGRAMS and len(words) > 1:
                    found.append((page.name, " ".join(words), is_whole))
    return found


COMMANDS = shown_commands()


@pytest.fixture(scope="module")
def pytest_options() -> set[str]:
    """Every option `pytest --help` lists with this project's plugins (it measures nothing, imports no Paddle)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", done.stdout))


def test_the_pages_show_commands_of_every_kind() -> None:
    programs = {command.split()[0].rsplit("/", 1)[-1] for _page, command, _whole in COMMANDS}
    subcommands = {c.split()[1] for _page, c, _whole in COMMANDS if "paddle-llm-bench" in c.split()[0]}
    assert programs == set(PROGRAMS)
    assert subcommands >= {"paired", "versions", "compare", "nightly", "overhead", "simulate", "baseline"}
    assert sum(whole for _page, _command, whole in COMMANDS) >= 30  # the code blocks are read, not only prose


@pytest.mark.parametrize(
    ("page", "command", "whole"), COMMANDS, ids=[f"{page}: {command[:60]}" for page, command, _whole in COMMANDS]
)
def test_a_shown_command_parses(page: str, command: str, whole: bool, pytest_options: set[str]) -> None:
    words = shlex.split(command, posix=False)
    options = [word.split("=")[0] for word in words[1:] if word.startswith("--")]
    if words[0].endswith("pytest"):
        unknown = [option for option in options if option not in pytest_options]
        assert not unknown, f"{page}: `{command}` uses options pytest does not know: {unknown}"
        return
    name = words[1]
    assert name in SUBCOMMANDS, f"{page}: `{command}`: no subcommand {name!r}"
    if "--help" in words:
        return
    if whole:
        try:
            parse_subcommand(name, [word.strip("'\"") for word in words[2:]])
        except SystemExit as error:
            pytest.fail(f"{page}: `{command}` does not parse (exit {error.code})")
    else:
        known = set(re.findall(r"(--[a-z][a-z0-9-]*)", subcommand_help(name)))
        assert not set(options) - known, f"{page}: `{command}`: unknown options {sorted(set(options) - known)}"


def subcommand_help(name: str) -> str:
    """The subcommand's --help text (for `nightly` and `baseline`, every step's too)."""
    steps = {"nightly": ["plan", "shard", "judge", "record"], "baseline": ["update", "check"]}.get(name, [])
    text = io.StringIO()
    for rest in [["--help"], *([step, "--help"] for step in steps)]:
        with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
            parse_subcommand(name, rest)
    return text.getvalue()
