"""`paddle-llm-bench doctor`: the checks of ``runtime.doctor``, printed as lines or one JSON object.

Exit status: 1 if any check FAILs (numbers from this setup cannot be trusted), else 0.
"""

from __future__ import annotations

import argparse
import json

from paddle_llm_bench.runtime.device import DEVICE_CHOICES
from paddle_llm_bench.runtime.doctor import run_doctor
from paddle_llm_bench.runtime.doctor_checks import SKIP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto", help="which device to check (default auto: the GPU if any)"
    )
    parser.add_argument("--json", action="store_true", help="print the checks and facts as one JSON object")


def main(args: argparse.Namespace) -> int:
    report = run_doctor(args.device)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        for line in report.lines():
            print(line)
        skipped = [c.name for c in report.checks if c.status == SKIP and c.message.startswith("needs a GPU")]
        if skipped:
            print(f"skipped: needs a GPU: {', '.join(skipped)}")
        print("FAIL: numbers from this setup cannot be trusted" if report.failed else "doctor: no check failed")
    return 1 if report.failed else 0
