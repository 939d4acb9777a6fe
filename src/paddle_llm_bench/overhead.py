"""`paddle-llm-bench overhead`: what measuring costs.

Alternates (A B A B ...) the suite's measured round (step clock, synchronization, token-count check)
with a bare ``model.generate`` call with the same inputs and settings, in the same process, and
reports the suite's throughput as a fraction of the bare loop's. Target: >= 0.97.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from .config import DECODINGS, DTYPES, Case
from .device import DEVICE_CHOICES, Device, detect_device, import_paddle
from .measure import CaseRunner
from .metrics import NS_PER_S, round_metrics
from .models import PRESETS, LoadedModel, default_cache_dir, load_model
from .report import aligned_table

HELP = "the suite's decode tok/s against a bare generate() loop in the same process"
TARGET_RATIO = 0.97


def bare_round_ns(runner: CaseRunner) -> int:
    """One plain generate() with the runner's inputs and settings: no step clock, no checks."""
    paddle = import_paddle()
    runner.device.synchronize()
    start_ns = time.perf_counter_ns()
    with paddle.no_grad():
        runner.loaded.model.generate(
            input_ids=runner.input_ids, attention_mask=runner.attention_mask, **runner.generate_kwargs
        )
    runner.device.synchronize()
    return time.perf_counter_ns() - start_ns


def overhead_ratio(
    loaded: LoadedModel, case: Case, device: Device, rounds: int, warmup_rounds: int = 2
) -> dict[str, float]:
    """Median e2e time of the bare loop over that of the suite's rounds (1.0 = no overhead)."""
    runner = CaseRunner(loaded, case, device)
    bare_ns: list[int] = []
    for _ in range(warmup_rounds):
        runner.generate_once()
        bare_round_ns(runner)
    for _ in range(rounds):
        runner.measured_round()
        bare_ns.append(bare_round_ns(runner))
    suite_ns = [t.end_ns - t.start_ns for t in runner.rounds]
    tokens = case.batch_size * case.max_new_tokens
    suite_median_ns = statistics.median(suite_ns)
    bare_median_ns = statistics.median(bare_ns)
    return {
        "suite_e2e_tokens_per_s": tokens * NS_PER_S / suite_median_ns,
        "bare_e2e_tokens_per_s": tokens * NS_PER_S / bare_median_ns,
        "suite_decode_tokens_per_s": statistics.median(
            round_metrics(t, case.batch_size, case.prompt_tokens).get("decode_tokens_per_s", float("nan"))
            for t in runner.rounds
        ),
        "ratio": bare_median_ns / suite_median_ns,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="tiny", help=f"a preset ({', '.join(PRESETS)}) or a checkpoint directory")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--decoding", default=",".join(DECODINGS), help="comma-separated decodings")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--cache-dir", type=Path, default=None)


def main(args: argparse.Namespace) -> int:
    decodings = [d.strip() for d in args.decoding.split(",") if d.strip()]
    unknown = [d for d in decodings if d not in DECODINGS]
    if unknown:
        print(f"error: invalid decoding {unknown[0]!r} from --decoding: allowed values are {', '.join(DECODINGS)}")
        return 2
    device = detect_device(args.device)
    loaded = load_model(args.model, args.dtype, args.cache_dir or default_cache_dir(), 4096)
    rows = []
    worst = 1.0
    for decoding in decodings:
        case = Case(args.model, args.dtype, decoding, args.max_new_tokens, args.batch_size, args.prompt_tokens)
        print(f"measuring {case.id}: {args.rounds} alternating rounds of the suite and of a bare generate() loop")
        figures = overhead_ratio(loaded, case, device, args.rounds)
        worst = min(worst, figures["ratio"])
        rows.append(
            [
                case.id,
                f"{figures['suite_e2e_tokens_per_s']:,.1f}",
                f"{figures['bare_e2e_tokens_per_s']:,.1f}",
                f"{figures['suite_decode_tokens_per_s']:,.1f}",
                f"{figures['ratio']:.3f}",
            ]
        )
    header = ["case", "suite e2e tok/s", "bare e2e tok/s", "suite decode tok/s", "suite/bare"]
    print("\n".join(aligned_table(header, rows)))
    verdict = "meets" if worst >= TARGET_RATIO else "misses"
    print(f"lowest suite/bare throughput ratio {worst:.3f}: {verdict} the >= {TARGET_RATIO} target")
    return 0
