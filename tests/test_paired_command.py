"""`paddle-llm-bench paired`: input checks and rendering a saved run, without measuring (the measuring
path is tested in test_paired_engine.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from paddle_llm_bench.cli import SUBCOMMANDS
from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.paired.results import Block, CaseComparison, Pair, PairedRun, PairedSettings, SideInfo


@pytest.mark.parametrize("argv", [["no-such-command"], *([name, "--no-such-option"] for name in SUBCOMMANDS)])
def test_bad_input_exits_4_in_every_subcommand(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """One exit-status vocabulary: argparse's own errors would exit 2, which here means "stopped"."""
    with pytest.raises(SystemExit) as exited:
        cli_main(argv)
    assert exited.value.code == ExitStatus.USAGE_ERROR
    assert "error:" in capsys.readouterr().err


def test_without_a_reference_it_says_what_is_needed(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["paired"]) == 4
    assert "--reference PYTHON is needed (or --from PAIRED_JSON" in capsys.readouterr().err


def test_a_reference_that_is_not_a_python_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["paired", "--reference", str(tmp_path / "nothing")]) == 4
    assert "from --reference is not an executable Python interpreter" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--min-blocks", "5", "--max-blocks", "3"], "--max-blocks 3 must be at least --min-blocks 5"),
        (["--rounds-per-turn", "2", "--dropped-per-turn", "2"], "--dropped-per-turn 2 must be below"),
    ],
)
def test_inconsistent_settings_are_refused(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["paired", "--reference", sys.executable, *arguments]) == 4
    assert message in capsys.readouterr().err


def test_an_out_dir_that_is_a_file_is_refused_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "results.txt"
    taken.write_text("a user's file")
    assert cli_main(["paired", "--reference", sys.executable, "--out-dir", str(taken)]) == 4
    err = capsys.readouterr().err
    assert f"cannot write the results into {taken}" in err and "give --out-dir a folder" in err
    assert taken.read_text() == "a user's file"


def test_bad_option_values_name_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["paired", "--reference", sys.executable, "--min-effect", "tpot_ms=5"])
    assert "invalid value 'tpot_ms=5' from --min-effect" in capsys.readouterr().err


def test_a_saved_run_is_rendered_again_in_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = Case("tiny", "float32", "greedy", 32, 1, 32)
    blocks = [
        Block(
            b,
            [10 + b, 20 + b],
            [Pair([0, 1], [{"decode_tokens_per_s": 100.0}, {"decode_tokens_per_s": r}]) for r in (90.0, 91.0, 89.0)],
            [{}, {}],
            [{}, {}],
        )
        for b in range(3)
    ]
    run = PairedRun([SideInfo("old", "a"), SideInfo("new", "b")], PairedSettings(), [CaseComparison(case, blocks)])
    path = tmp_path / "paired.json"
    run.save(path)
    for fmt, expected in (("table", "0.900 [0.900, 0.900]"), ("markdown", "| tiny-float32"), ("csv", "decode_ratio")):
        assert cli_main(["paired", "--from", str(path), "--format", fmt]) == 0
        assert expected in capsys.readouterr().out
    assert cli_main(["paired", "--from", str(tmp_path / "missing.json")]) == 4
    assert "cannot read a paired run" in capsys.readouterr().err
