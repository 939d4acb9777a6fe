"""pytest glue: options, the ``llm_case`` parametrization, the measuring fixture, hooks.

Each hook is a few lines that hand off to plain code in the other modules.

The end of a run, in order (see docs/reliability.md):
1. pytest-benchmark saves the run (its ``pytest_sessionfinish`` wrapper runs before any plain
   implementation), through ``saving``'s atomic writers: the data is safe, or the error names where it went;
2. ``pytest_sessionfinish`` here gates and updates baselines; any error there is reported and fails
   the run, and the verdicts are added to the saved files afterwards;
3. ``pytest_terminal_summary`` prints the tables, the verdicts and the storage errors.
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.utils import get_commit_info

from paddle_llm_bench.analysis.report import summary_table
from paddle_llm_bench.core import stopping
from paddle_llm_bench.core.config import (
    DTYPES,
    MIN_ROUNDS,
    Case,
    ConfigError,
    Sweep,
    make_sweep,
    parse_positive_int,
    parse_sweep_dimension,
)
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.gate_options import GATE_OPTIONS, gate_settings
from paddle_llm_bench.envs.reference import ReferenceOutcome, compare_with_reference, reference_side, too_big_to_pair
from paddle_llm_bench.paired.engine import greet
from paddle_llm_bench.paired.options import PAIRED_OPTIONS
from paddle_llm_bench.paired.options import paired_settings as options_paired_settings
from paddle_llm_bench.paired.results import PairedSettings
from paddle_llm_bench.paired.sides import Side, SideError
from paddle_llm_bench.results.baselines import BaselineError, load_saved_run
from paddle_llm_bench.results.files import describe_os_error
from paddle_llm_bench.results.regression import GateReport, check_run, update_baselines
from paddle_llm_bench.results.saving import (
    SaveLog,
    SignalHandler,
    add_to_saved,
    install,
    keep_sigterm_handler,
    restore_sigterm,
    stop_on_sigterm,
)
from paddle_llm_bench.runtime.device import DEVICE_CHOICES, Device, detect_device, device_kind_without_paddle
from paddle_llm_bench.runtime.doctor import DoctorReport, self_check
from paddle_llm_bench.runtime.environment import collect_all
from paddle_llm_bench.runtime.models import PRESETS, ProbeError, default_cache_dir
from paddle_llm_bench.runtime.progress import SweepProgress
from paddle_llm_bench.runtime.shard import parse_shard, select_shard
from paddle_llm_bench.runtime.suite import CaseFailed, Suite

# (option suffix, Sweep field or setting, help). Each is --llm-<suffix> and ini llm_<suffix with _>.
SWEEP_OPTIONS: tuple[tuple[str, str, str], ...] = (
    ("model", "models", f"presets ({', '.join(PRESETS)}), local checkpoint directories, or hub:ORG/NAME"),
    ("dtype", "dtypes", f"{', '.join(DTYPES)} (those the device cannot run are skipped with the probed reason)"),
    ("decoding", "decodings", "greedy, sampling (the field report's settings), beam4"),
    (
        "mode",
        "modes",
        "how the forward runs: eager (default), to_static (AST), sot, cinn; a mode the build cannot run is skipped "
        "with the probed reason (docs/measuring.md)",
    ),
    ("max-new-tokens", "max_new_tokens", "exact number of new tokens per sequence, e.g. 32,128"),
    ("batch-size", "batch_sizes", "sequences per generate() call, e.g. 1,4"),
    ("prompt-tokens", "prompt_tokens", "prompt length in tokens, e.g. 32,256"),
)
SETTING_OPTIONS: tuple[tuple[str, str], ...] = (
    (
        "shard",
        "run only shard K of N, e.g. 2/4: the sweep split deterministically, balanced by expected cost, "
        "across N runners; combine their saved runs with `paddle-llm-bench merge`",
    ),
    ("rounds", "measured rounds per case (>= 5; default 10)"),
    ("warmup-rounds", "untimed rounds before measuring (default 2)"),
    ("device", f"{', '.join(DEVICE_CHOICES)} (default auto: the GPU if Paddle has CUDA and sees one)"),
    (
        "cache-dir",
        "where synthetic checkpoints are built (default ./.cache/paddle-llm-bench or $PADDLE_LLM_BENCH_CACHE)",
    ),
    (
        "max-positions",
        "cap on max_position_embeddings, i.e. on precomputed RoPE caches (default 4096; 0 keeps the model's)",
    ),
)
LIST_HELP = " Comma-separated; default: the device's sweep."
FLAG_OPTIONS: tuple[tuple[str, str], ...] = (
    ("profile", "after each case's timed rounds, profile one extra round per operator (saved in extra_info)"),
    ("baseline-update", "merge this run into baselines/ (the last 5 runs per case are kept); regressions do not fail"),
    ("require-baseline", "fail when a case has no baseline for this hardware (default: report it)"),
    ("no-gate", "do not compare against baselines"),
)
BASELINE_OPTIONS: tuple[tuple[str, str], ...] = (
    ("baseline-dir", "directory of baseline files, one per hardware fingerprint (default: baselines)"),
    ("baseline-from", "use this saved pytest-benchmark run (.benchmarks/.../NNNN_*.json) as the reference"),
    *((f"gate-{suffix}", option.help) for suffix, option in GATE_OPTIONS.items()),
    (
        "reference",
        "after the sweep, measure every case interleaved (paired, in fresh worker processes) against this reference: "
        "a Paddle version (its environment is made once, cached) or a Python with Paddle and this project; a case "
        "confirmed slower (Holm over the sweep) or bigger fails the run",
    ),
)

# The paired engine's options for the --llm-reference stage: --llm-paired-<the `paired` command's option>.
PAIRED_HELP: tuple[tuple[str, str], ...] = tuple(
    (f"paired-{suffix}", f"with --llm-reference: {option.help}") for suffix, option in PAIRED_OPTIONS.items()
)
PAIRED_DEFAULTS = PairedSettings()


@dataclass
class LLMBenchState:
    """Per-run state kept in ``config.stash``; the suite is created on first use."""

    chosen: dict[str, tuple[Any, ...]]
    settings: dict[str, str]
    gate: GateSettings
    sweep: Sweep | None = None
    device: Device | None = None
    suite: Suite | None = None
    facts: dict[str, Any] | None = None
    gate_report: GateReport | None = None
    self_check: DoctorReport | None = None
    # Written into the saved run's machine_info and every baseline run: merging one run twice counts once.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # When this run started: the stored-baseline gate groups runs into sessions by it.
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    saves: SaveLog = field(default_factory=SaveLog)
    interrupted_cases: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    empty_shard: str = ""  # why --llm-shard selected no case: the session stops after collection
    previous_sigterm: SignalHandler = None
    sigterm_installed: bool = False
    paired: PairedSettings = PAIRED_DEFAULTS
    reference: Side | None = None
    reference_outcome: ReferenceOutcome | None = None


STATE = pytest.StashKey[LLMBenchState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("paddle-llm-bench", "LLM generation benchmarks (paddle-llm-bench)")
    for suffix, _field, help_text in SWEEP_OPTIONS:
        group.addoption(f"--llm-{suffix}", dest=_dest(suffix), default=None, metavar="LIST", help=help_text + LIST_HELP)
        # "linelist": a TOML list (pyproject.toml) or comma-separated text over one or more lines.
        parser.addini(_ini(suffix), help_text + LIST_HELP, type="linelist", default=None)  # None: not set
    for suffix, help_text in SETTING_OPTIONS:
        group.addoption(f"--llm-{suffix}", dest=_dest(suffix), default=None, help=help_text)
        parser.addini(_ini(suffix), help_text, default=None)
    for suffix, help_text in FLAG_OPTIONS:
        group.addoption(f"--llm-{suffix}", dest=_dest(suffix), action="store_true", default=False, help=help_text)
    for suffix, help_text in (*BASELINE_OPTIONS, *PAIRED_HELP):
        group.addoption(f"--llm-{suffix}", dest=_dest(suffix), default=None, help=help_text)
        parser.addini(_ini(suffix), help_text, default=None)


def _dest(suffix: str) -> str:
    return "llm_" + suffix.replace("-", "_")


_ini = _dest


def _raw(config: pytest.Config, suffix: str) -> tuple[str | None, str]:
    """The option's text and where it came from: the command line wins over the ini file."""
    value = config.getoption(_dest(suffix))
    if value is not None:
        return str(value), f"--llm-{suffix}"
    ini_value = config.getini(_ini(suffix))
    if ini_value is None:  # not in the ini file
        return None, ""
    source = f"ini option {_ini(suffix)}"
    if isinstance(ini_value, list):  # a list option: TOML list items or ini lines, each may hold commas
        items = [str(item).strip().rstrip(",").strip() for item in ini_value]  # a line may end with a comma
        if "" in items:
            raise ConfigError(f"empty item in {ini_value!r} from {source}: remove it or put the value in")
        ini_value = ",".join(items)
    if not str(ini_value).strip():  # set to nothing: never read as "the defaults"
        raise ConfigError(f"empty value from {source}: give a value, or remove the line to use the default")
    return str(ini_value), source


def pytest_configure(config: pytest.Config) -> None:
    """Validate every --llm-* option up front, before Paddle is imported or anything is measured."""
    chosen: dict[str, tuple[Any, ...]] = {}
    settings: dict[str, str] = {}
    try:
        for suffix, field_name, _help in SWEEP_OPTIONS:
            text, source = _raw(config, suffix)
            if text is not None:
                chosen[field_name] = parse_sweep_dimension(field_name, text, source, tuple(PRESETS))
        for suffix, _help in SETTING_OPTIONS:
            text, source = _raw(config, suffix)
            if text is not None:
                settings[suffix] = text
                _check_setting(suffix, text, source)
        gate = gate_settings({suffix: _raw(config, f"gate-{suffix}") for suffix in GATE_OPTIONS})
        _check_reference_files(config)
        _check_benchmark_json(config.getoption("benchmark_json", None))
        paired = paired_settings(config)
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    state = config.stash[STATE] = LLMBenchState(chosen, settings, gate, paired=paired)
    try:
        state.previous_sigterm = stop_on_sigterm()
        state.sigterm_installed = True
    except ValueError:  # not the main thread: pytest run inside another program, which owns its signals
        state.sigterm_installed = False


def paired_settings(config: pytest.Config) -> PairedSettings:
    """The --llm-paired-* options (the paired engine's own table) over its defaults; errors name the option."""
    texts = {suffix: _raw(config, f"paired-{suffix}") for suffix in PAIRED_OPTIONS}
    return options_paired_settings(texts, prefix="--llm-paired-")


def _check_reference_files(config: pytest.Config) -> None:
    """--llm-baseline-from and --llm-baseline-dir are checked before the sweep, not after it."""
    reference, source = _raw(config, "baseline-from")
    if reference is not None:
        try:
            fingerprint, by_case, _facts = load_saved_run(Path(reference))
        except BaselineError as error:
            raise ConfigError(f"invalid value {reference!r} from {source}: {error}") from None
        if not fingerprint or not by_case:
            raise ConfigError(
                f"invalid value {reference!r} from {source}: it holds no paddle-llm-bench results "
                "(no machine_info.paddle_llm_bench or no case): name a run saved by this suite"
            )
    directory, source = _raw(config, "baseline-dir")
    if directory is not None and not Path(directory).is_dir() and not config.getoption("llm_baseline_update"):
        raise ConfigError(
            f"invalid value {directory!r} from {source}: no such folder, so nothing could be compared. "
            "Name the folder holding the baseline files (only --llm-baseline-update creates a new one)"
        )


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """pytest-benchmark's saves become atomic and report their errors (``saving``)."""
    state = session.config.stash.get(STATE, None)
    bench_session = getattr(session.config, "_benchmarksession", None)
    if state is not None and bench_session is not None:
        install(bench_session, state.saves)
    text, _source = _raw(session.config, "reference")
    if state is not None and text is not None:
        state.reference = _reference(session.config, text)


def _reference(config: pytest.Config, text: str) -> Side:
    """The --llm-reference side, made ready (or refused) before anything is measured."""
    device = get_suite(config).device.kind
    progress = _progress_writer(config)
    try:
        side = reference_side(text, Path(config.rootpath), device == "gpu", progress)
        progress(f"checking the reference {side.describe()} before the sweep (a worker's start)")
        greet(side)
    except (ConfigError, SideError) as error:
        raise pytest.UsageError(str(error)) from None
    return side


def pytest_runtest_setup(item: pytest.Item) -> None:
    _keep_sigterm(item.config)
    stopping.checkpoint()  # a SIGTERM between cases stops the run here


def _keep_sigterm(config: pytest.Config) -> None:
    """SIGTERM must still stop the run the way Ctrl-C does: importing Paddle installs its own handler and
    importing PaddleNLP resets it to the default (die at once, nothing saved)."""
    state = config.stash.get(STATE, None)
    if state is not None and state.sigterm_installed:
        keep_sigterm_handler()


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.sigterm_installed:
        restore_sigterm(state.previous_sigterm)


def _check_setting(suffix: str, text: str, source: str) -> None:
    if suffix == "rounds":
        parse_positive_int(text, source, minimum=MIN_ROUNDS)
    elif suffix in ("warmup-rounds", "max-positions"):
        parse_positive_int(text, source, minimum=0)
    elif suffix == "shard":
        parse_shard(text, source)
    elif suffix == "device" and text not in DEVICE_CHOICES:
        raise ConfigError(f"invalid value {text!r} from {source}: allowed values are {', '.join(DEVICE_CHOICES)}")
    elif suffix == "cache-dir":
        _check_writable_folder(Path(text).expanduser(), source)


def _check_benchmark_json(path: Path | None) -> None:
    """pytest-benchmark's --benchmark-json names a file: a folder there would fail only after the sweep."""
    if path is not None and Path(path).is_dir():
        raise ConfigError(
            f"invalid value {str(path)!r} from --benchmark-json: it is a folder; name the JSON file to write, "
            f"e.g. {Path(path) / 'run.json'}"
        )


def _check_writable_folder(folder: Path, source: str) -> None:
    """``folder`` exists (made if missing) and can be written, before anything is measured into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
    except OSError as error:
        raise ConfigError(
            f"invalid value {str(folder)!r} from {source}: cannot write there ({describe_os_error(error)}); "
            "name a folder you can write (it is made if missing)"
        ) from None


def measures(config: pytest.Config) -> bool:
    """False for runs that measure nothing (``--collect-only``, ``--benchmark-skip``): they never import Paddle."""
    return not (config.option.collectonly or config.getoption("benchmark_skip", False))


def get_sweep(config: pytest.Config) -> Sweep:
    """The session's sweep, for the device this run measures on (resolved once)."""
    state = config.stash[STATE]
    if state.sweep is None:
        settings = state.settings
        try:
            requested = settings.get("device", "auto")
            if measures(config):
                state.device = detect_device(requested)
                kind = state.device.kind
            else:
                kind = device_kind_without_paddle(requested)
            state.sweep = make_sweep(
                state.chosen,
                kind,
                rounds=int(settings.get("rounds", 10)),
                warmup_rounds=int(settings.get("warmup-rounds", 2)),
            )
        except ConfigError as error:
            # Reached during collection, where a UsageError would read as a collection error.
            pytest.exit(f"usage error: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    return state.sweep


def get_suite(config: pytest.Config) -> Suite:
    """The session's suite (the device, the GPU self-check, the model cache), made at the end of collection of a
    run that measures, before any case runs."""
    state = config.stash[STATE]
    if state.suite is None:
        sweep = get_sweep(config)
        settings = state.settings
        device = state.device
        if device is None:  # a run that measures after all (a test that asks for a case itself)
            device = state.device = detect_device(settings.get("device", "auto"))
        max_positions = int(settings.get("max-positions", 4096)) or None
        cache_dir = Path(settings["cache-dir"]) if "cache-dir" in settings else default_cache_dir()
        bandwidth = None
        if device.kind == "gpu":
            state.self_check = run_self_check(device)
            bandwidth = state.self_check.facts.get("gpu_memory_bandwidth_bytes_per_s")
        state.suite = Suite(
            sweep,
            device,
            cache_dir,
            max_positions,
            progress=_progress_writer(config),
            profile_operators=bool(config.getoption("llm_profile")),
            memory_bandwidth_bytes_per_s=bandwidth,
        )
    return state.suite


def run_self_check(device: Device) -> DoctorReport:
    """The GPU self-check (``paddle-llm-bench doctor``) before anything is measured; a FAIL stops the run."""
    report = self_check(device)
    if report.failed:
        failures = "\n".join(line for line in report.lines() if line.startswith("FAIL"))
        pytest.exit(
            f"the GPU self-check failed, so this run's numbers could not be trusted:\n{failures}\n"
            "(`paddle-llm-bench doctor` shows every check)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    return report


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
        shard = metafunc.config.stash[STATE].settings.get("shard")
        if shard is not None:
            k, n = parse_shard(shard, "--llm-shard")  # validated in pytest_configure
            selected = select_shard(cases, k, n, rounds=sweep.rounds + sweep.warmup_rounds)
            if not selected:  # an empty shard would pass having measured nothing
                metafunc.config.stash[STATE].empty_shard = (
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
            request.config.stash[STATE].interrupted_cases.append(case.id)
            raise
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        _keep_sigterm(request.config)
        benchmark.extra_info.update(result.as_extra_info())
        if result.measurement_error is not None and not disabled:  # saved for inspection, kept out of the gate
            pytest.fail(f"{case.id}: {result.measurement_error}", pytrace=False)

    return measure


def machine_facts(state: LLMBenchState) -> dict[str, Any]:
    assert state.suite is not None
    if state.facts is None:
        state.facts = {**collect_all(state.suite.device), "run_id": state.run_id, "run_started": state.started}
    return state.facts


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    state = config.stash.get(STATE, None)
    if state is not None and state.suite is not None:
        facts = machine_info["paddle_llm_bench"] = dict(machine_facts(state))
        if state.self_check is not None:
            facts["self_check"] = state.self_check.machine_info()
        if "shard" in state.settings:
            k, n = parse_shard(state.settings["shard"], "--llm-shard")
            facts["shard"] = f"{k}/{n}"  # merge checks that shards 1..N all arrived
        if state.interrupted_cases:
            facts["interrupted_cases"] = list(state.interrupted_cases)  # stopped mid-measurement, not saved


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None:
        return
    if state.empty_shard:
        pytest.exit(state.empty_shard, returncode=pytest.ExitCode.USAGE_ERROR)
    cases: dict[str, Case] = {}
    case_of_node: dict[str, str] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("llm_case") if callspec is not None else None
        if isinstance(case, Case):
            cases[case.id] = case
            case_of_node[item.nodeid] = case.id
    if cases and state.sweep is not None and measures(session.config):
        sweep, suite = state.sweep, get_suite(session.config)
        progress = SweepProgress(
            list(cases.values()), sweep.rounds + sweep.warmup_rounds, suite.device.kind, _cannot_run(suite, cases)
        )
        session.config.pluginmanager.register(_ProgressReporter(session.config, progress, case_of_node))
        _progress_writer(session.config)(progress.opening_line())


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

    def __init__(self, config: pytest.Config, progress: SweepProgress, case_of_node: dict[str, str]) -> None:
        self.write = _progress_writer(config)
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
    state = session.config.stash.get(STATE, None)
    if state is None:
        return
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or stopping.requested() is not None
    failed = finish_run(session.config, state, interrupted=interrupted)
    paired_stopped = state.reference_outcome is not None and state.reference_outcome.run.interrupted
    interrupted = interrupted or paired_stopped or stopping.requested() is not None  # a stop while judging
    if interrupted:  # also a SIGTERM after the last checkpoint: the job was stopped, whatever it completed
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    elif failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def finish_run(config: pytest.Config, state: LLMBenchState, interrupted: bool) -> bool:
    """Gate, update baselines and add the verdicts to the saved files; True if the run must fail.

    An exception in any of it is reported as an error: the saved run stays as it is."""
    suite = state.suite
    if suite is not None and suite.results and not interrupted:
        try:
            _gate_and_update(config, state)
        except Exception as error:  # noqa: BLE001 - reported and failing the run, never costing the saved data
            report = state.gate_report = state.gate_report or GateReport()
            report.errors.append(f"the gate or baseline update stopped: {type(error).__name__}: {error}")
        if state.gate_report is not None:
            add_to_saved(state.saves, "paddle_llm_bench_gate", [v.as_dict() for v in state.gate_report.verdicts])
        if state.reference is not None:
            state.reference_outcome = _compare_with_reference(config, state, state.reference)
            add_to_saved(state.saves, "paddle_llm_bench_paired", state.reference_outcome.summary())
    if interrupted and suite is not None and suite.results and config.getoption("llm_baseline_update"):
        state.notes.append(_unfinished_update_hint(state, _baseline_dir(config)))
    gate_failed = state.gate_report is not None and state.gate_report.failed
    paired_failed = state.reference_outcome is not None and bool(state.reference_outcome.failures)
    return gate_failed or paired_failed or bool(state.saves.errors)


def _compare_with_reference(config: pytest.Config, state: LLMBenchState, reference: Side) -> ReferenceOutcome:
    suite = state.suite
    assert suite is not None
    saved = [p for p in state.saves.saved if p.suffix == ".json"]
    # In a folder beside the saved run: pytest-benchmark's tools (which read <folder>/*.json) never take it for a run.
    folder = saved[0].parent / f"{saved[0].stem}.paired" if saved else Path(".benchmarks") / f"{state.run_id}.paired"
    path = folder / "paired.json"
    settings = replace(state.paired, device=suite.device.kind, max_positions=suite.max_positions)
    device_bytes = state.self_check.facts.get("gpu_memory_total_bytes") if state.self_check else None
    cases, skipped = [], []
    for result in suite.results:
        memory = result.memory.bytes_by_metric
        why = too_big_to_pair(memory.get("peak_nvml_process_bytes") or memory.get("peak_reserved_bytes"), device_bytes)
        if why:
            skipped.append(f"{result.case.id}: {why}")
        else:
            cases.append(result.case)
    suite.progress(f"paired comparison against {reference.describe()}: {len(cases)} case(s), saved to {path}")
    suite.release_model()  # the workers load their own copies
    return compare_with_reference(cases, reference, settings, suite.cache_dir, path, suite.progress, skipped)


def _baseline_dir(config: pytest.Config) -> Path:
    """--llm-baseline-dir (or the ini option), else ``baselines/`` beside the rootdir."""
    text, _source = _raw(config, "baseline-dir")
    return Path(text) if text is not None else Path(config.rootpath) / "baselines"


def _unfinished_update_hint(state: LLMBenchState, baseline_dir: Path) -> str:
    runs = [p for p in state.saves.saved if p.suffix == ".json"]
    where = f"--baseline-dir {shlex.quote(str(baseline_dir))}"
    if runs:
        return (
            "interrupted: baselines were not updated. `paddle-llm-bench baseline update "
            f"{shlex.quote(str(runs[0]))} {where}` merges the completed cases into them"
        )
    return (
        "interrupted: baselines were not updated, and no run was saved (add --benchmark-autosave to keep "
        f"completed cases, then `paddle-llm-bench baseline update RUN.json {where}` merges them)"
    )


def _gate_and_update(config: pytest.Config, state: LLMBenchState) -> None:
    suite = state.suite
    assert suite is not None
    facts = machine_facts(state)
    results = [result.as_extra_info() for result in suite.results]
    baseline_dir = _baseline_dir(config)
    if not config.getoption("llm_no_gate"):
        cases = {result.case.id: result.case for result in suite.results}

        def remeasure(case_id: str) -> dict[str, Any]:
            suite.progress(f"re-measuring {case_id}: a suspect regression must repeat before the run fails")
            return suite.run(cases[case_id], record=False).as_extra_info()

        reference = config.getoption("llm_baseline_from")
        state.gate_report = check_run(
            results,
            str(facts["hardware_fingerprint"]),
            baseline_dir,
            reference_run=Path(reference) if reference else None,
            settings=state.gate,
            remeasure=None if config.getoption("llm_baseline_update") else remeasure,
            require_baseline=bool(config.getoption("llm_require_baseline")),
            started=state.started,
        )
    if config.getoption("llm_baseline_update"):
        report = state.gate_report or GateReport()
        try:
            update = update_baselines(results, facts, baseline_dir, commit=get_commit_info().get("id"))  # type: ignore[no-untyped-call]
            report.notes.append(update.message())
            report.verdicts = [
                replace(v, regression=False, evidence=v.evidence + "; accepted by --llm-baseline-update")
                if v.regression
                else v
                for v in report.verdicts
            ]
        except BaselineError as error:
            report.errors.append(f"baseline not updated: {error}")
        state.gate_report = report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    if state.suite is not None and state.suite.results:
        terminalreporter.section("paddle-llm-bench: LLM generation (medians across rounds)")
        for line in summary_table([result.as_extra_info() for result in state.suite.results]):
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            "decode tok/s = B·(N-1)/(E2E-TTFT); TPOT = (E2E-TTFT)/(N-1); ITL over all steps of all rounds; "
            "CV of decode tok/s across rounds. Raw per-round samples are in the saved run's extra_info."
        )
    if state.reference_outcome is not None:
        terminalreporter.section(f"paddle-llm-bench: paired against {state.reference_outcome.run.sides[0].name}")
        for line in state.reference_outcome.lines():
            terminalreporter.write_line(line, red=line.startswith("REGRESSION"), bold=line.startswith("REGRESSION"))
    if state.gate_report is not None:
        terminalreporter.section("paddle-llm-bench: regression gate")
        for line in state.gate_report.lines():
            terminalreporter.write_line(
                line, red=line.startswith(("REGRESSION", "error")), bold=line.startswith("REGRESSION")
            )
    if config.getoption("benchmark_compare_fail", None):
        terminalreporter.section("paddle-llm-bench: --benchmark-compare-fail")
        terminalreporter.write_line(
            "--benchmark-compare-fail is pytest-benchmark's own gate: one statistic of whole generate() round "
            "times against one earlier run, with no noise model, TTFT/decode split or re-measurement; the "
            "regression gate above is this suite's (docs/gate.md)"
        )
    bench_session = getattr(config, "_benchmarksession", None)
    if bench_session is not None and bench_session.disabled:
        terminalreporter.section("paddle-llm-bench")
        terminalreporter.write_line(
            "benchmarks disabled (--benchmark-disable): each case generated once as a smoke test; nothing was "
            "measured, gated or merged into baselines"
        )
    _write_saved_data_section(terminalreporter, state)


def _write_saved_data_section(terminalreporter: Any, state: LLMBenchState) -> None:
    lines = state.saves.lines()
    if state.interrupted_cases:
        lines.append(f"stopped mid-measurement, not saved: {', '.join(state.interrupted_cases)}")
    lines += [f"note: {n}" for n in state.notes]
    if not lines:
        return
    terminalreporter.section("paddle-llm-bench: saved data")
    for line in lines:
        terminalreporter.write_line(line, red=line.startswith("error"), bold=line.startswith("error"))
