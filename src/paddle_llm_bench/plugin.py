"""pytest glue: options, the ``llm_case`` parametrization, the measuring fixture, hooks.

Each hook is a few lines that hand off to the run's ``BenchSession`` (``session.py``), which holds the state and
makes the decisions; the options are declared and checked in ``plugin_options.py``.

The end of a run, in order (see docs/reliability.md):
1. pytest-benchmark saves the run (its ``pytest_sessionfinish`` wrapper runs before any plain
   implementation), through ``saving``'s atomic writers: the data is safe, or the error names where it went;
2. ``pytest_sessionfinish`` here has the session gate and update baselines; any error there is reported and
   fails the run, and the verdicts are added to the saved files afterwards;
3. ``pytest_terminal_summary`` prints the tables, the verdicts and the storage errors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paddle_llm_bench.core import stopping
from paddle_llm_bench.core.config import Case, ConfigError, Sweep
from paddle_llm_bench.envs.reference import reference_side
from paddle_llm_bench.paired.processes import greet
from paddle_llm_bench.paired.sides import SideError
from paddle_llm_bench.plugin_options import add_options, raw, run_options
from paddle_llm_bench.results.saving import install, keep_sigterm_handler, restore_sigterm, stop_on_sigterm
from paddle_llm_bench.runtime.device import device_kind_without_paddle
from paddle_llm_bench.runtime.models import ProbeError
from paddle_llm_bench.runtime.progress import SweepProgress
from paddle_llm_bench.runtime.shard import select_shard
from paddle_llm_bench.runtime.suite import CaseFailed, Suite
from paddle_llm_bench.session import BenchSession, SelfCheckFailed

SESSION = pytest.StashKey[BenchSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Check every --llm-* option up front, before Paddle is imported or anything is measured."""
    try:
        options = run_options(config)
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    bench = config.stash[SESSION] = BenchSession(options, progress=_progress_writer(config))
    try:
        bench.previous_sigterm = stop_on_sigterm()
        bench.sigterm_installed = True
    except ValueError:  # not the main thread: pytest run inside another program, which owns its signals
        bench.sigterm_installed = False


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """pytest-benchmark's saves become atomic and report their errors (``saving``); the reference is checked."""
    bench = session.config.stash.get(SESSION, None)
    benchmark_session = getattr(session.config, "_benchmarksession", None)
    if bench is not None and benchmark_session is not None:
        install(benchmark_session, bench.saves)
    text, _source = raw(session.config, "reference")
    if bench is not None and text is not None:
        # Which Paddle build the reference needs, from the installed build and NVML: a refused reference costs
        # no Paddle import (and an in-process session that imported Paddle could not import it again).
        gpu = device_kind_without_paddle(bench.options.settings.get("device", "auto")) == "gpu"
        try:
            bench.reference = reference_side(text, Path(session.config.rootpath), gpu, bench.progress)
            bench.progress(f"checking the reference {bench.reference.describe()} before the sweep (a worker's start)")
            greet(bench.reference)
        except (ConfigError, SideError) as error:
            raise pytest.UsageError(str(error)) from None


def pytest_runtest_setup(item: pytest.Item) -> None:
    _keep_sigterm(item.config)
    stopping.checkpoint()  # a SIGTERM between cases stops the run here


def _keep_sigterm(config: pytest.Config) -> None:
    """SIGTERM must still stop the run the way Ctrl-C does: importing Paddle installs its own handler and
    importing PaddleNLP resets it to the default (die at once, nothing saved)."""
    bench = config.stash.get(SESSION, None)
    if bench is not None and bench.sigterm_installed:
        keep_sigterm_handler()


def pytest_unconfigure(config: pytest.Config) -> None:
    bench = config.stash.get(SESSION, None)
    if bench is not None and bench.sigterm_installed:
        restore_sigterm(bench.previous_sigterm)


def measures(config: pytest.Config) -> bool:
    """False for runs that measure nothing (``--collect-only``, ``--benchmark-skip``): they never import Paddle."""
    return not (config.option.collectonly or config.getoption("benchmark_skip", False))


def get_sweep(config: pytest.Config) -> Sweep:
    try:
        return config.stash[SESSION].resolve_sweep(measures(config))
    except ConfigError as error:  # reached during collection, where a UsageError would read as a collection error
        pytest.exit(f"usage error: {error}", returncode=pytest.ExitCode.USAGE_ERROR)


def get_suite(config: pytest.Config) -> Suite:
    try:
        return config.stash[SESSION].get_suite()
    except ConfigError as error:
        pytest.exit(f"usage error: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    except SelfCheckFailed as error:  # a FAIL stops the run before anything is measured
        pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)


def _progress_writer(config: pytest.Config) -> Callable[[str], None]:
    """Progress lines that reach the terminal even while pytest captures output."""

    def write(message: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[paddle-llm-bench] {message}")

    return write


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "llm_case" in metafunc.fixturenames:
        sweep = get_sweep(metafunc.config)
        cases = sweep.cases()
        bench = metafunc.config.stash[SESSION]
        if bench.options.shard is not None:
            k, n = bench.options.shard
            selected = select_shard(cases, k, n, rounds=sweep.rounds + sweep.warmup_rounds)
            if not selected:  # an empty shard would pass having measured nothing
                bench.empty_shard = (
                    f"--llm-shard {k}/{n} holds no case: the sweep has {len(cases)} case(s), so use at most "
                    f"{len(cases)} shard(s) (or a larger sweep)"
                )
            cases = selected
        metafunc.parametrize("llm_case", cases, ids=[case.id for case in cases])


@pytest.fixture
def llm_measure(request: pytest.FixtureRequest, benchmark: Any) -> Callable[[Any], None]:
    """``llm_measure(case)``: measure one case as a pytest-benchmark benchmark; skip or fail it with the reason."""
    suite = get_suite(request.config)

    def measure(case: Any) -> None:
        try:
            reason = suite.unsupported_reason(case)
        except ProbeError as error:  # the probe's own failure: never a reason to skip
            pytest.fail(str(error), pytrace=False)
        if reason is not None:
            pytest.skip(reason)
        benchmark.group = f"{case.model}-{case.dtype}"
        disabled = bool(getattr(benchmark, "disabled", False))  # --benchmark-disable (or xdist)

        def timed_rounds(one_round: Callable[[], None], after_each_round: Callable[[], None], rounds: int) -> None:
            _keep_sigterm(request.config)  # the model's load may have imported code that replaced it
            if disabled:  # as pytest-benchmark runs a disabled benchmark: once, as a smoke test
                one_round()
                after_each_round()
                return
            benchmark.pedantic(one_round, teardown=after_each_round, rounds=rounds, warmup_rounds=0, iterations=1)

        failure: str | None = None
        try:
            result = suite.run(case, timed_rounds, record=not disabled)  # a smoke test is never gated or kept
        except (CaseFailed, ConfigError) as error:
            failure = str(error)  # failed below, outside the handler: one message, no chained traceback
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM mid-case: pytest-benchmark leaves a benchmark with an error out of the saved
            # run, so a partial set of rounds is never saved as a result; machine_info names the case.
            benchmark.has_error = True
            request.config.stash[SESSION].interrupted_cases.append(case.id)
            raise
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        _keep_sigterm(request.config)
        benchmark.extra_info.update(result.as_extra_info())
        if result.measurement_error is not None and not disabled:  # saved for inspection, kept out of the gate
            pytest.fail(f"{case.id}: {result.measurement_error}", pytrace=False)

    return measure


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    bench = config.stash.get(SESSION, None)
    if bench is not None and bench.suite is not None:
        machine_info["paddle_llm_bench"] = bench.machine_info()


def pytest_collection_finish(session: pytest.Session) -> None:
    bench = session.config.stash.get(SESSION, None)
    if bench is None:
        return
    if bench.empty_shard:
        pytest.exit(bench.empty_shard, returncode=pytest.ExitCode.USAGE_ERROR)
    cases: dict[str, Case] = {}
    case_of_node: dict[str, str] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("llm_case") if callspec is not None else None
        if isinstance(case, Case):
            cases[case.id] = case
            case_of_node[item.nodeid] = case.id
    if cases and bench.sweep is not None and measures(session.config):
        sweep, suite = bench.sweep, get_suite(session.config)
        progress = SweepProgress(
            list(cases.values()), sweep.rounds + sweep.warmup_rounds, suite.device.kind, _cannot_run(suite, cases)
        )
        session.config.pluginmanager.register(_ProgressReporter(bench.progress, progress, case_of_node))
        bench.progress(progress.opening_line())


def _cannot_run(suite: Suite, cases: dict[str, Case]) -> frozenset[str]:
    """The cases the device cannot run (their dtype or mode, probed now rather than at their turn): they take
    no time in the estimate. A probe that cannot run at all leaves the question to the cases themselves."""
    reasons: dict[tuple[str, str, str], bool] = {}
    for case in cases.values():
        key = (case.model, case.dtype, case.mode)
        if key not in reasons:
            try:
                reasons[key] = suite.unsupported_reason(case) is not None
            except ProbeError:
                reasons[key] = False
    return frozenset(case.id for case in cases.values() if reasons[(case.model, case.dtype, case.mode)])


class _ProgressReporter:
    """A progress line (cases done, about how long is left) as sweep cases finish, at most every 30 s."""

    def __init__(self, write: Callable[[str], None], progress: SweepProgress, case_of_node: dict[str, str]) -> None:
        self.write = write
        self.progress = progress
        self.case_of_node = case_of_node
        self.seconds: dict[str, float] = {}
        self.skipped: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.case_of_node:
            return
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration
        if report.skipped:
            self.skipped.add(report.nodeid)
        if report.when == "teardown":
            seconds = self.seconds.pop(report.nodeid)
            line = self.progress.finished(self.case_of_node[report.nodeid], seconds, report.nodeid in self.skipped)
            if line is not None:
                self.write(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the save: pytest-benchmark's hook wraps this one and saves before it runs, so the measured data is
    on disk before the gate and the baseline update start, and nothing here can lose it."""
    bench = session.config.stash.get(SESSION, None)
    if bench is None:
        return
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or stopping.requested() is not None
    failed = bench.finish(interrupted=interrupted)
    if interrupted or bench.paired_stopped or stopping.requested() is not None:  # also a stop while judging
        session.exitstatus = pytest.ExitCode.INTERRUPTED  # the job was stopped, whatever it completed
    elif failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    bench = config.stash.get(SESSION, None)
    if bench is None:
        return
    for title, lines in bench.sections():
        terminalreporter.section(f"paddle-llm-bench: {title}")
        for line in lines:
            alarm = line.startswith(("REGRESSION", "error"))
            terminalreporter.write_line(line, red=alarm, bold=line.startswith("REGRESSION"))
    if config.getoption("benchmark_compare_fail", None):
        terminalreporter.section("paddle-llm-bench: --benchmark-compare-fail")
        terminalreporter.write_line(
            "--benchmark-compare-fail is pytest-benchmark's own gate: one statistic of whole generate() round "
            "times against one earlier run, with no noise model, TTFT/decode split or re-measurement; the "
            "regression gate above is this suite's (docs/gate.md)"
        )
    benchmark_session = getattr(config, "_benchmarksession", None)
    if benchmark_session is not None and benchmark_session.disabled:
        terminalreporter.section("paddle-llm-bench")
        terminalreporter.write_line(
            "benchmarks disabled (--benchmark-disable): each case generated once as a smoke test; nothing was "
            "measured, gated or merged into baselines"
        )
    saved = bench.saved_data_lines()
    if saved:
        terminalreporter.section("paddle-llm-bench: saved data")
        for line in saved:
            terminalreporter.write_line(line, red=line.startswith("error"), bold=line.startswith("error"))
