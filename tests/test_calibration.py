"""`paddle-llm-bench calibrate`: its counts are whole numbers from 1, refused with the value before any run is read."""

from __future__ import annotations

import pytest

from paddle_llm_bench.cli import main as cli_main


@pytest.mark.parametrize(("option", "value"), [("--baseline-runs", "0"), ("--trials", "-3"), ("--trials", "many")])
def test_bad_counts_are_usage_errors_naming_the_value(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        cli_main(["calibrate", "run.json", option, value])
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert option in err and value in err
