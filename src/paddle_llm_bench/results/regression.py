"""The end-of-run regression check: find the reference, judge, re-measure suspects, update baselines.

Glue between ``baselines`` (files) and ``gate`` (verdicts); the pytest plugin calls ``check_run``
and ``update_baselines`` and only prints the returned report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from paddle_llm_bench.core.gate import CaseMeasurement, GateSettings, confirm_suspects, judge, suspects
from paddle_llm_bench.core.record import CaseRecord, MachineFacts
from paddle_llm_bench.core.verdicts import BETTER, INCONCLUSIVE, NO_BASELINE, Verdict
from paddle_llm_bench.results.baselines import (
    MAX_RUNS_PER_CASE,
    BaselineError,
    BaselineStore,
    baseline_path,
    find_for_hardware,
    load,
    load_saved_run,
    measurement_from_record,
    merge,
    save_atomic,
)
from paddle_llm_bench.results.files import describe_os_error, exclusive_lock

MAX_INCONCLUSIVE_LINES = 5


@dataclass
class GateReport:
    verdicts: list[Verdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    require_baseline: bool = False
    unmeasured: list[str] = field(default_factory=list)  # cases of this run without a sample of any gated metric
    # What the verdicts were judged on, kept for confirming suspects (``confirm``).
    settings: GateSettings = field(default_factory=GateSettings)
    current: dict[str, CaseMeasurement] = field(default_factory=dict)
    reference: dict[str, list[CaseMeasurement]] = field(default_factory=dict)
    started: str = ""

    @property
    def suspects(self) -> list[str]:
        """Cases whose speed regression must repeat on a fresh measurement before the run fails."""
        return suspects(self.verdicts, self.settings)

    def confirm(self, remeasured: Mapping[str, CaseRecord]) -> None:
        """Re-judge the suspects on their fresh measurements (saved records by case id): a regression stays one
        only if it repeats."""
        fresh = {case_id: measurement_from_record(record, self.started) for case_id, record in remeasured.items()}
        self.verdicts = confirm_suspects(self.verdicts, self.current, self.reference, self.settings, fresh)

    def with_verdict(self, *words: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.verdict in words]

    @property
    def regressions(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.regression]

    @property
    def unjudged(self) -> list[Verdict]:
        """Speed verdicts that could not be judged because the baseline cannot show the run-to-run noise."""
        return [v for v in self.verdicts if v.verdict == INCONCLUSIVE and v.p_value is None and v.ratio is not None]

    @property
    def failed(self) -> bool:
        missing = self.require_baseline and bool(self.with_verdict(NO_BASELINE) or self.unmeasured)
        return bool(self.errors or self.regressions or missing)

    def _fails_when_required(self) -> str:
        return "" if self.require_baseline else "; --llm-require-baseline makes this fail"

    def lines(self) -> list[str]:
        improvements = [v for v in self.verdicts if v.verdict in BETTER]
        inconclusive = [v for v in self.with_verdict(INCONCLUSIVE) if v not in self.unjudged]
        missing = self.with_verdict(NO_BASELINE)
        compared = len({v.case_id for v in self.verdicts if v.verdict != NO_BASELINE})
        lines = [f"error: {e}" for e in self.errors]
        lines.append(
            f"{compared} case(s) compared: {len(self.regressions)} regression(s), {len(improvements)} improvement(s), "
            f"{len(inconclusive)} inconclusive, {len(missing)} without baseline"
        )
        lines += [f"REGRESSION: {v.message()}" for v in self.regressions]
        lines += [f"IMPROVEMENT: {v.message()}" for v in improvements]
        lines += [f"INCONCLUSIVE: {v.message()}" for v in inconclusive[:MAX_INCONCLUSIVE_LINES]]
        if len(inconclusive) > MAX_INCONCLUSIVE_LINES:
            lines.append(
                f"... and {len(inconclusive) - MAX_INCONCLUSIVE_LINES} more inconclusive "
                "(every verdict is in the saved run, under paddle_llm_bench_gate)"
            )
        if self.unjudged:
            lines.append(
                f"speed NOT judged for {len({v.case_id for v in self.unjudged})} case(s): {self.unjudged[0].evidence}"
            )
        if improvements:
            lines.append("improvements found: record them with --llm-baseline-update so later runs are held to them")
        if missing:
            lines.append(
                "cases without baseline: "
                + ", ".join(v.case_id for v in missing)
                + f" (record with --llm-baseline-update{self._fails_when_required()})"
            )
        if self.unmeasured:
            lines.append(
                f"speed NOT judged for {len(self.unmeasured)} case(s) that hold no samples in this run: "
                + ", ".join(self.unmeasured)
                + f" (a case that failed, or a damaged run file: measure again{self._fails_when_required()})"
            )
        lines += [f"note: {n}" for n in self.notes]
        return lines


def reference_measurements(
    fingerprint: str, baseline_dir: Path, reference_run: Path | None
) -> tuple[dict[str, list[CaseMeasurement]], list[str]]:
    """The baseline runs per case, from ``baselines/`` or a saved pytest-benchmark run."""
    if reference_run is not None:
        run_fingerprint, by_case, facts = load_saved_run(reference_run)
        if run_fingerprint != fingerprint:
            raise BaselineError(
                f"saved run {reference_run} was measured on {run_fingerprint!r}, this machine is {fingerprint!r}: "
                "results from other hardware are not compared"
            )
        measurements = {case_id: [measurement_from_record(r, facts.run_started)] for case_id, r in by_case.items()}
        return measurements, [f"reference: saved run {reference_run} (one run per case)"]
    store, notes = find_for_hardware(baseline_dir, fingerprint)
    if store is None:
        return {}, [*notes, f"no baseline file for this hardware yet ({baseline_path(baseline_dir, fingerprint)})"]
    return store.measurements(), [*notes, f"reference: {store.path}"]


def check_run(
    results: Sequence[CaseRecord],
    fingerprint: str,
    baseline_dir: Path,
    reference_run: Path | None = None,
    settings: GateSettings | None = None,
    require_baseline: bool = False,
    started: str = "",
) -> GateReport:
    """Judge this run's records (measured at ``started``) against the reference. A speed
    regression is a suspect (``GateReport.suspects``) until ``GateReport.confirm`` sees it repeat: re-measuring is
    the measuring session's job, not the gate's."""
    settings = settings or GateSettings()
    report = GateReport(require_baseline=require_baseline, settings=settings, started=started)
    try:
        reference, report.notes = reference_measurements(fingerprint, baseline_dir, reference_run)
    except BaselineError as error:
        report.errors.append(str(error))
        return report
    current = {r.case_id: measurement_from_record(r, started) for r in results}
    gated = settings.min_effect_percent
    report.unmeasured = [case_id for case_id, m in current.items() if not any(m.samples.get(k) for k in gated)]
    report.current, report.reference = current, {case_id: list(runs) for case_id, runs in reference.items()}
    report.verdicts = judge(current, reference, settings)
    return report


@dataclass
class BaselineUpdate:
    """Where a run was merged, and which of its cases were added or were already there (the same run)."""

    path: Path
    added: list[str]
    already_there: list[str]

    def message(self) -> str:
        text = f"baseline updated: {self.path} now holds this run ({len(self.added)} case(s) added"
        if self.already_there:
            text += f"; {len(self.already_there)} already held this run and were not added again"
        return text + ")"


def update_baselines(
    results: Sequence[CaseRecord],
    facts: MachineFacts,
    baseline_dir: Path,
    commit: str | None,
    keep: int = MAX_RUNS_PER_CASE,
    restart: bool = False,
) -> BaselineUpdate:
    """Merge this run into this hardware's baseline file (created if missing), keeping the last ``keep`` runs per
    case (``restart``: this run alone).

    Load, merge and write happen under an exclusive lock on ``baseline_dir``, so concurrent updates (shards
    of one nightly) all land. A broken file, or one that says it is for other hardware, is never written
    into; a failed write names its cause. All of these raise ``BaselineError``.
    """
    fingerprint = facts.hardware_fingerprint
    if not fingerprint:
        raise BaselineError("the run names no hardware fingerprint (it was not measured by paddle-llm-bench)")
    path = baseline_path(baseline_dir, fingerprint)
    try:
        with exclusive_lock(baseline_dir):
            store = load(path) if path.exists() else BaselineStore(path, fingerprint)
            if store.hardware_fingerprint != fingerprint:
                raise BaselineError(
                    f"baseline {path} says it is for {store.hardware_fingerprint!r} but this run was measured on "
                    f"{fingerprint!r}: not written into; rename or delete the file"
                )
            count = merge(store, results, facts, commit, keep=keep, restart=restart)
            if count.added:
                save_atomic(store)
    except OSError as error:
        raise BaselineError(
            f"cannot write baseline {path}: {describe_os_error(error)}; the baseline is unchanged. Fix the folder, "
            "then merge the saved run with `paddle-llm-bench baseline update RUN.json`"
        ) from None
    return BaselineUpdate(path, count.added, count.already_there)
