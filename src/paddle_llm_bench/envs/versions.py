"""`paddle-llm-bench versions 3.0.0 3.3.1 [...]`: Paddle versions compared pair by pair, interleaved.

1. Check the input (two or more distinct versions, the checkout) and that the package index lists
   every version, so a typo fails in seconds; make or reuse one cached environment per version
   (``venvs``). An environment that cannot be made stops the command before anything is measured.
2. Measure the sweep with the paired engine: one worker process per version, loaded once per case,
   alternating single turns in random order, fresh processes for every block, until each case's
   interval is precise enough or its budget is spent (``paired.engine``). The first version is the
   reference: every other version gets a ratio against it with a 95 % interval and a verdict.
3. Everything lands in the output folder: ``paired.json`` (every pair, saved as it is measured),
   ``comparison.txt/.md/.csv/.json`` and ``forest.png``.

Exit status: 0 the comparison is complete; 1 a case failed (what was measured is still compared);
2 interrupted; 4 bad input or an environment that could not be made (nothing measured).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from paddle_llm_bench.core.config import ConfigError
from paddle_llm_bench.envs.venvs import (
    GPU_PACKAGE,
    PADDLE_INDEX,
    VersionsError,
    check_versions,
    child_environment,
    default_env_dir,
    env_python,
    find_repo,
    make_build,
    say,
    version_environments,
)
from paddle_llm_bench.paired.command import (
    USAGE_ERROR,
    add_output_arguments,
    add_sweep_arguments,
    measure_and_report,
    sweep_from_args,
)
from paddle_llm_bench.paired.options import add_engine_arguments, settings_from_args
from paddle_llm_bench.paired.sides import Side


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "versions", nargs="+", metavar="VERSION", help="Paddle versions, e.g. 3.0.0 3.3.1; the first is the reference"
    )
    parser.add_argument(
        "--env-dir",
        type=Path,
        metavar="DIR",
        help="where the cached environments live (default $PADDLE_LLM_BENCH_ENV_DIR, "
        "else <repo>/.cache/paddle-llm-bench/envs)",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        metavar="DIR",
        help="the paddle-llm-bench checkout installed into the environments (default: here or a parent)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help=f"{GPU_PACKAGE} from Paddle's CUDA index instead of the CPU build"
    )
    parser.add_argument(
        "--cuda",
        metavar="TAG",
        help=f"the CUDA build to take with --gpu, e.g. cu118, cu123, cu126 (index {PADDLE_INDEX.format(cuda='TAG')})",
    )
    parser.add_argument(
        "--index-url",
        metavar="URL",
        help="take Paddle's wheel from this index (pip --extra-index-url); overrides --cuda's index",
    )
    add_sweep_arguments(parser)
    add_engine_arguments(parser)
    add_output_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        versions = check_versions(args.versions)
        build = make_build(args.gpu, args.cuda, args.index_url)
        repo = find_repo(args.repo if args.repo is not None else Path.cwd())
        settings = settings_from_args(args, args.device, args.max_positions or None)
        env_dir = (args.env_dir or default_env_dir(repo)).resolve()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out_dir = (args.out_dir or repo / ".benchmarks" / "versions" / f"{stamp}_{'_'.join(versions)}").resolve()
        say(f"paddle {', '.join(versions)}: {build.describe()}; environments in {env_dir}")
        envs = version_environments(versions, build, env_dir, repo)
    except (VersionsError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    sides = [
        Side(f"paddle {version}", str(env_python(env)), child_environment(env), paddle_version=version)
        for version, env in envs.items()
    ]
    cache_dir = args.cache_dir or repo / ".cache" / "paddle-llm-bench"
    status = measure_and_report(
        sweep_from_args(args).cases(), sides, settings, cache_dir, out_dir, args.format, fail_on_regression=False
    )
    return status
