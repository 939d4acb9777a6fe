"""One benchmark run's state and end-of-run policy, apart from pytest (as pytest-benchmark's ``BenchmarkSession``).

The plugin declares options and hooks and hands every decision here: which sweep and device, the suite (with
the GPU self-check), the machine facts written into the saved run, and the end of the run in order: the
stored-baseline gate (a suspect regression re-measured before it counts), the baseline update, the paired
comparison against ``--llm-reference``, the verdicts added to the saved files, and what the terminal shows.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_benchmark.utils import get_commit_info

from paddle_llm_bench.analysis.report import summary_table
from paddle_llm_bench.core.config import Sweep, make_sweep
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.record import CaseRecord, MachineFacts
from paddle_llm_bench.envs.reference import ReferenceOutcome, compare_with_reference, too_big_to_pair
from paddle_llm_bench.paired.results import PairedSettings
from paddle_llm_bench.paired.sides import Side
from paddle_llm_bench.results.baselines import BaselineError
from paddle_llm_bench.results.regression import GateReport, check_run, update_baselines
from paddle_llm_bench.results.saving import SaveLog, SignalHandler, add_to_saved
from paddle_llm_bench.runtime.device import Device, detect_device, device_kind_without_paddle
from paddle_llm_bench.runtime.doctor import self_check
from paddle_llm_bench.runtime.doctor_checks import DoctorReport, number
from paddle_llm_bench.runtime.environment import collect_all
from paddle_llm_bench.runtime.models import default_cache_dir
from paddle_llm_bench.runtime.progress import say
from paddle_llm_bench.runtime.shard import parse_shard
from paddle_llm_bench.runtime.suite import Suite

Section = tuple[str, list[str]]  # a titled block of output lines


class SelfCheckFailed(Exception):
    """The GPU self-check failed: this run's numbers could not be trusted (the message lists the failures)."""


@dataclass(frozen=True)
class RunOptions:
    """What the run was asked for beyond pytest's own options, checked before anything is measured."""

    chosen: dict[str, tuple[Any, ...]]  # sweep dimensions given (Sweep field -> values)
    settings: dict[str, str]  # --llm-rounds, --llm-device, ... as given (validated)
    gate: GateSettings
    paired: PairedSettings
    baseline_dir: Path
    baseline_from: Path | None = None
    no_gate: bool = False
    baseline_update: bool = False
    require_baseline: bool = False
    profile: bool = False

    @property
    def shard(self) -> tuple[int, int] | None:
        return parse_shard(self.settings["shard"], "--llm-shard") if "shard" in self.settings else None


@dataclass
class BenchSession:
    """One run: made when pytest is configured; the suite is made when the run first needs it."""

    options: RunOptions
    progress: Callable[[str], None] = say
    sweep: Sweep | None = None
    device: Device | None = None
    suite: Suite | None = None
    facts: MachineFacts | None = None
    gate_report: GateReport | None = None
    self_check: DoctorReport | None = None
    # Written into the saved run's machine_info and every baseline run: merging one run twice counts once.
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # When this run started: the stored-baseline gate groups runs into sessions by it.
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    saves: SaveLog = field(default_factory=SaveLog)
    interrupted_cases: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    empty_shard: str = ""  # why --llm-shard selected no case: the run stops after collection
    previous_sigterm: SignalHandler = None
    sigterm_installed: bool = False
    reference: Side | None = None
    reference_outcome: ReferenceOutcome | None = None

    def resolve_sweep(self, measures: bool) -> Sweep:
        """The sweep for the device this run measures on (resolved once). A run that measures nothing
        (``measures`` False) never imports Paddle: its device kind comes from the installed build and NVML."""
        if self.sweep is None:
            requested = self.options.settings.get("device", "auto")
            if measures:
                self.device = detect_device(requested)
                kind = self.device.kind
            else:
                kind = device_kind_without_paddle(requested)
            self.sweep = make_sweep(
                self.options.chosen,
                kind,
                rounds=int(self.options.settings.get("rounds", 10)),
                warmup_rounds=int(self.options.settings.get("warmup-rounds", 2)),
            )
        return self.sweep

    def get_suite(self) -> Suite:
        """The suite (the device, the GPU self-check, the model cache); raises SelfCheckFailed on a GPU that fails
        its self-check, ConfigError for a bad sweep."""
        if self.suite is None:
            sweep = self.resolve_sweep(measures=True)
            settings = self.options.settings
            device = self.device = self.device or detect_device(settings.get("device", "auto"))
            bandwidth = None
            if device.kind == "gpu":
                self.self_check = _self_check(device)
                bandwidth = number(self.self_check.facts, "gpu_memory_bandwidth_bytes_per_s")
            self.suite = Suite(
                sweep,
                device,
                Path(settings["cache-dir"]) if "cache-dir" in settings else default_cache_dir(),
                int(settings.get("max-positions", 4096)) or None,
                progress=self.progress,
                profile_operators=self.options.profile,
                memory_bandwidth_bytes_per_s=bandwidth,
            )
        return self.suite

    def machine_facts(self) -> MachineFacts:
        assert self.suite is not None
        if self.facts is None:
            collected = collect_all(self.suite.device)
            self.facts = collected.model_copy(update={"run_id": self.run_id, "run_started": self.started})
        return self.facts

    def machine_info(self) -> dict[str, Any]:
        """What the saved run's ``machine_info.paddle_llm_bench`` holds."""
        update: dict[str, object] = {"interrupted_cases": list(self.interrupted_cases)}  # stopped, not saved
        if self.self_check is not None:
            update["self_check"] = self.self_check.machine_info()
        if self.options.shard is not None:
            k, n = self.options.shard
            update["shard"] = f"{k}/{n}"  # merge checks that shards 1..N all arrived
        return self.machine_facts().model_copy(update=update).document()

    def finish(self, interrupted: bool) -> bool:
        """After the run was saved: gate, update baselines, compare with the reference and add the verdicts to
        the saved files; True if the run must fail. An exception in the gate is reported as an error: the saved
        run stays as it is."""
        suite = self.suite
        if suite is not None and suite.results and not interrupted:
            try:
                self._gate_and_update()
            except Exception as error:  # noqa: BLE001 - reported and failing the run, never costing the saved data
                report = self.gate_report = self.gate_report or GateReport()
                report.errors.append(f"the gate or baseline update stopped: {type(error).__name__}: {error}")
            if self.gate_report is not None:
                add_to_saved(self.saves, "paddle_llm_bench_gate", [v.as_dict() for v in self.gate_report.verdicts])
            if self.reference is not None:
                self.reference_outcome = self._compare_with_reference(self.reference)
                add_to_saved(self.saves, "paddle_llm_bench_paired", self.reference_outcome.summary())
        if interrupted and suite is not None and suite.results and self.options.baseline_update:
            self.notes.append(self._unfinished_update_hint())
        gate_failed = self.gate_report is not None and self.gate_report.failed
        paired_failed = self.reference_outcome is not None and bool(self.reference_outcome.failures)
        return gate_failed or paired_failed or bool(self.saves.errors)

    @property
    def paired_stopped(self) -> bool:
        return self.reference_outcome is not None and self.reference_outcome.run.interrupted

    def _gate_and_update(self) -> None:
        suite = self.suite
        assert suite is not None
        options = self.options
        facts = self.machine_facts()
        results = [result.record() for result in suite.results]
        if not options.no_gate:
            self.gate_report = check_run(
                results,
                str(facts.hardware_fingerprint),
                options.baseline_dir,
                reference_run=options.baseline_from,
                settings=options.gate,
                require_baseline=options.require_baseline,
                started=self.started,
            )
            if not options.baseline_update:  # an update accepts this run as it is
                self.gate_report.confirm({case_id: self._remeasure(case_id) for case_id in self.gate_report.suspects})
        if options.baseline_update:
            report = self.gate_report or GateReport()
            try:
                commit = get_commit_info().get("id")  # type: ignore[no-untyped-call]
                report.notes.append(update_baselines(results, facts, options.baseline_dir, commit=commit).message())
                report.verdicts = [
                    replace(v, regression=False, evidence=v.evidence + "; accepted by --llm-baseline-update")
                    if v.regression
                    else v
                    for v in report.verdicts
                ]
            except BaselineError as error:
                report.errors.append(f"baseline not updated: {error}")
            self.gate_report = report

    def _remeasure(self, case_id: str) -> CaseRecord:
        """A suspect case measured again (not recorded: the saved run keeps its first measurement)."""
        suite = self.suite
        assert suite is not None
        case = next(result.case for result in suite.results if result.case.id == case_id)
        suite.progress(f"re-measuring {case_id}: a suspect regression must repeat before the run fails")
        return suite.run(case, record=False).record()

    def _compare_with_reference(self, reference: Side) -> ReferenceOutcome:
        suite = self.suite
        assert suite is not None
        saved = [p for p in self.saves.saved if p.suffix == ".json"]
        # In a folder beside the saved run: pytest-benchmark's tools (which read <folder>/*.json) never take it
        # for a run.
        folder = saved[0].parent / f"{saved[0].stem}.paired" if saved else Path(".benchmarks") / f"{self.run_id}.paired"
        path = folder / "paired.json"
        settings = replace(self.options.paired, device=suite.device.kind, max_positions=suite.max_positions)
        total = number(self.self_check.facts, "gpu_memory_total_bytes") if self.self_check else None
        device_bytes = None if total is None else int(total)
        cases, skipped = [], []
        for result in suite.results:
            memory = result.memory.bytes_by_metric
            peak = memory.get("peak_nvml_process_bytes") or memory.get("peak_reserved_bytes")
            why = too_big_to_pair(peak, device_bytes)
            if why:
                skipped.append(f"{result.case.id}: {why}")
            else:
                cases.append(result.case)
        suite.progress(f"paired comparison against {reference.describe()}: {len(cases)} case(s), saved to {path}")
        suite.release_model()  # the workers load their own copies
        return compare_with_reference(cases, reference, settings, suite.cache_dir, path, suite.progress, skipped)

    def _unfinished_update_hint(self) -> str:
        runs = [p for p in self.saves.saved if p.suffix == ".json"]
        where = f"--baseline-dir {shlex.quote(str(self.options.baseline_dir))}"
        if runs:
            return (
                "interrupted: baselines were not updated. `paddle-llm-bench baseline update "
                f"{shlex.quote(str(runs[0]))} {where}` merges the completed cases into them"
            )
        return (
            "interrupted: baselines were not updated, and no run was saved (add --benchmark-autosave to keep "
            f"completed cases, then `paddle-llm-bench baseline update RUN.json {where}` merges them)"
        )

    def sections(self) -> list[Section]:
        """The end-of-run output: the medians table, the paired comparison, the gate (titles without the
        ``paddle-llm-bench:`` prefix)."""
        found: list[Section] = []
        if self.suite is not None and self.suite.results:
            table = summary_table([result.record() for result in self.suite.results])
            note = (
                "decode tok/s = B·(N-1)/(E2E-TTFT); TPOT = (E2E-TTFT)/(N-1); ITL over all steps of all rounds; "
                "CV of decode tok/s across rounds. Raw per-round samples are in the saved run's extra_info."
            )
            found.append(("LLM generation (medians across rounds)", [*table, note]))
        if self.reference_outcome is not None:
            found.append((f"paired against {self.reference_outcome.run.sides[0].name}", self.reference_outcome.lines()))
        if self.gate_report is not None:
            found.append(("regression gate", self.gate_report.lines()))
        return found

    def saved_data_lines(self) -> list[str]:
        lines = self.saves.lines()
        if self.interrupted_cases:
            lines.append(f"stopped mid-measurement, not saved: {', '.join(self.interrupted_cases)}")
        return lines + [f"note: {n}" for n in self.notes]


def _self_check(device: Device) -> DoctorReport:
    """The GPU self-check (``paddle-llm-bench doctor``) before anything is measured."""
    report = self_check(device)
    if report.failed:
        failures = "\n".join(line for line in report.lines() if line.startswith("FAIL"))
        raise SelfCheckFailed(
            f"the GPU self-check failed, so this run's numbers could not be trusted:\n{failures}\n"
            "(`paddle-llm-bench doctor` shows every check)"
        )
    return report
