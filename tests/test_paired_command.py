"""`paddle-llm-bench paired`: input checks and rendering a saved run, without measuring (the measuring
path is tested in test_paired_engine.py)."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from paddle_llm_bench.cli import SUBCOMMANDS
from paddle_llm_bench.cli import main as cli_main
from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.paired.processes import WorkerProcess, close_all, start_workers
from paddle_llm_bench.paired.protocol import PROTOCOL_VERSION
from paddle_llm_bench.paired.results import Block, CaseComparison, Pair, PairedRun, PairedSettings, SideInfo
from paddle_llm_bench.paired.sides import Side, SideError


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


def test_a_mode_against_eager_needs_no_reference_and_names_its_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["paired", "--candidate-mode", "jit"])
    assert exited.value.code == ExitStatus.USAGE_ERROR
    assert "argument --candidate-mode: invalid choice: 'jit'" in capsys.readouterr().err
    with pytest.raises(SideError, match="unknown execution mode 'jit' for candidate: allowed values are eager, "):
        Side("candidate", sys.executable, mode="jit")
    # Without --reference, this Python is the reference: bad settings are still refused before anything starts.
    assert cli_main(["paired", "--candidate-mode", "to_static", "--min-blocks", "5", "--max-blocks", "3"]) == 4
    assert "--reference PYTHON is needed" not in capsys.readouterr().err


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


def saved_paired_run(folder: Path) -> Path:
    """A paired run of one case, new ÷ old = 0.9 in every pair of three blocks, saved as paired.json."""
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
    path = folder / "paired.json"
    run.save(path)
    return path


def test_a_saved_run_is_rendered_again_in_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = saved_paired_run(tmp_path)
    for fmt, expected in (
        ("table", "0.900 [0.900, 0.900]"),
        ("markdown", "| tiny-float32"),
        ("csv", "decode_tokens_per_s_ratio"),
    ):
        assert cli_main(["paired", "--from", str(path), "--format", fmt]) == 0
        assert expected in capsys.readouterr().out
    assert cli_main(["paired", "--from", str(tmp_path / "missing.json")]) == 4
    assert "cannot read a paired run" in capsys.readouterr().err


def test_compare_renders_a_paired_run_alone_and_refuses_mixing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = saved_paired_run(tmp_path)
    for fmt, expected in (("table", "0.900 [0.900, 0.900]"), ("json", '"case_id": "tiny-float32-greedy-new32')):
        assert cli_main(["compare", str(path), "--format", fmt]) == 0
        assert expected in capsys.readouterr().out
    assert cli_main(["compare", str(path), "--plots", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "forest.png").read_bytes().startswith(b"\x89PNG")
    saved = tmp_path / "0001_saved.json"
    facts = {"hardware_fingerprint": "cpu:test", "paddle_version": "3.3.1"}
    benchmark = {"name": "test_generation[x]", "extra_info": {"format_version": 1, "case_id": "x", "samples": {}}}
    saved.write_text(json.dumps({"machine_info": {"paddle_llm_bench": facts}, "benchmarks": [benchmark]}))
    for runs in ([path, path], [saved, path]):  # a paired run first, or after a saved one
        assert cli_main(["compare", *map(str, runs)]) == 4
        assert "a paired run (paired.json) holds its own comparison" in capsys.readouterr().err
    assert cli_main(["compare", str(path), "--alpha", "0.05"]) == 4
    assert "--alpha judge saved runs; a paired run is judged by the settings it was measured with" in (
        capsys.readouterr().err
    )


GREETED_ALONE = "greeted alone"


def impostor_worker(folder: Path) -> Path:
    """A stand-in for a worker's Python that answers hello only once every side's worker has been greeted
    (the real ones import Paddle then): a start that greets one worker after another's import would stall it."""
    script = folder / "python"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        "from pathlib import Path\n"
        "sys.stdin.readline()\n"
        f"log = Path({str(folder / 'greeted')!r})\n"
        "with log.open('a') as f:\n"
        "    f.write(os.environ['SIDE'] + '\\n')\n"
        "deadline = time.monotonic() + 10\n"
        "while len(log.read_text().split()) < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "if len(log.read_text().split()) < 2:\n"
        f"    log.open('a').write({GREETED_ALONE!r} + '\\n')\n"
        f'print(json.dumps({{"ok": True, "protocol": {PROTOCOL_VERSION}, "paddle_version": "3.3.1"}}), flush=True)\n'
        "sys.stdin.read()\n"
    )
    script.chmod(0o755)
    return script


def test_workers_import_at_once_and_are_greeted_in_a_random_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    greeted: list[str] = []  # sides in the order their hello was sent
    real_send = WorkerProcess.send

    def send(self: WorkerProcess, message: dict[str, object], side: Side | None = None) -> None:
        greeted.append(self.side.name)
        real_send(self, message, side)

    monkeypatch.setattr(WorkerProcess, "send", send)
    for seed in range(6):
        folder = tmp_path / str(seed)
        folder.mkdir()
        python = str(impostor_worker(folder))
        sides = [Side("reference", python, {"SIDE": "reference"}), Side("candidate", python, {"SIDE": "candidate"})]
        close_all(start_workers(sides, random.Random(seed)))
        assert GREETED_ALONE not in (folder / "greeted").read_text()  # both were greeted before either answered
    # Which side imports first must not be the same in every block: it leaned A/A runs by about 1 %.
    assert set(greeted[0::2]) == {"reference", "candidate"}
