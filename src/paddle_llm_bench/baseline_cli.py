"""`paddle-llm-bench baseline update|check RUN.json ...`: baselines from and against saved runs.

``update`` merges saved runs into ``baselines/`` exactly as ``--llm-baseline-update`` does at the end
of a run. ``check`` gates a saved run (e.g. a merged nightly run) against ``baselines/``; it cannot
re-measure a suspect case, so it says so next to each regression.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.core.exit_status import ExitStatus
from paddle_llm_bench.core.gate_options import add_gate_arguments, gate_settings_from_args
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run
from paddle_llm_bench.results.regression import check_run, update_baselines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("update", "check"))
    parser.add_argument("runs", nargs="+", type=Path, help="pytest-benchmark saved runs (.benchmarks/.../NNNN_*.json)")
    parser.add_argument("--baseline-dir", type=Path, default=Path("baselines"))
    parser.add_argument("--require-baseline", action="store_true", help="check: a case without baseline fails")
    add_gate_arguments(parser)


def main(args: argparse.Namespace) -> int:
    if args.action == "check" and not args.baseline_dir.is_dir():
        print(
            f"error: --baseline-dir {args.baseline_dir} is not a folder: nothing could be compared. "
            "Name the folder that holds the baseline files (default: baselines)"
        )
        return ExitStatus.USAGE_ERROR
    try:
        settings = gate_settings_from_args(args)
    except ConfigError as error:
        print(f"error: {error}")
        return ExitStatus.USAGE_ERROR
    status = 0
    for path in args.runs:
        try:
            fingerprint, by_case, facts = load_saved_run(path)
            if not fingerprint or not by_case:
                raise BaselineError(f"{path} holds no paddle-llm-bench results (no machine_info.paddle_llm_bench)")
            if args.action == "update":
                update = update_baselines(list(by_case.values()), facts, args.baseline_dir, facts.commit)
                print(f"{path}: {update.message()}")
                continue
            report = check_run(
                list(by_case.values()),
                fingerprint,
                args.baseline_dir,
                settings=settings,
                started=facts.run_started,
            )
            report.require_baseline = args.require_baseline
            for finding in report.regressions:
                report.notes.append(f"{finding.case_id}: not re-measured (a saved run cannot be); judge with care")
            print(f"{path}:")
            print("\n".join(f"  {line}" for line in report.lines()))
            status = max(status, 1 if report.failed else 0)
        except BaselineError as error:
            print(f"error: {error}")
            status = ExitStatus.USAGE_ERROR
    return status
