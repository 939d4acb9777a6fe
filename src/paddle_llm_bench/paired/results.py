"""The records of a paired comparison, its JSON document, and its verdicts.

A *block* is one worker process per side, fresh for that block; a *pair* is one turn of each side,
in random order (with three or more sides, a set: one turn of each). A turn's value of a metric is
the median over its kept rounds. Everything measured is kept raw (per pair and side), so every
figure can be recomputed from the saved file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.metrics import (
    MEMORY,
    metric_by_name,
    metric_names,
    paired_gated_metric_names,
    paired_metric_names,
    paired_min_effects,
)
from paddle_llm_bench.core.stats import VariancePrior, holm_adjust
from paddle_llm_bench.core.verdicts import INCONCLUSIVE, SLOWER, Verdict, memory_comparison, speed_verdict
from paddle_llm_bench.core.versioned import Document, Format, FormatError, describe_invalid
from paddle_llm_bench.paired.stats import PairedEstimate, paired_estimate, sweep_prior
from paddle_llm_bench.results.files import read_document, write_document

FORMAT = "paddle-llm-bench-paired"
GATED_MEMORY = ("peak_allocated_bytes", "peak_reserved_bytes")  # deterministic peaks: a bigger one fails


MIN_VERDICT_BLOCKS = 3
MIN_PAIRS_PER_BLOCK = 3


class PairedFileError(ValueError):
    """A paired-run file that cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class PairedSettings:
    """How long and how finely a paired comparison measures, and how it judges."""

    pairs_per_block: int = 20  # at most: a case whose rounds are long gets fewer, so min_blocks fit its budget
    min_blocks: int = 4  # blocks before a case may stop, and before any speed verdict
    max_blocks: int = 10
    target_half_width_percent: float = 2.0
    case_budget_s: float = 300.0
    # A case that stops as a suspect slowdown (its own interval on the slower side, beyond the minimum effect, but
    # not significant after Holm) gets this many blocks more, within one more case budget: a fixed second stage,
    # decided before it is measured, judged on all blocks (0: no follow-up).
    follow_up_blocks: int = 20
    rounds_per_turn: int = 1
    dropped_per_turn: int = 0
    warmup_rounds: int = 2
    confidence: float = 0.95
    alpha: float = 0.01  # family-wise false-alarm rate of the gate, Holm-corrected over the sweep
    min_effect_percent: dict[str, float] = field(default_factory=paired_min_effects)
    gated_metrics: tuple[str, ...] = field(default_factory=paired_gated_metric_names)
    device: str = "auto"
    max_positions: int | None = 4096
    seed: int = 0
    # Every side's runner in one worker process per block (sides of one Python only): the process-to-process
    # spread cancels; what only a process of its own shows (its imports, heap, threads) is not compared.
    same_process: bool = False

    def __post_init__(self) -> None:
        if self.dropped_per_turn >= self.rounds_per_turn:
            raise ValueError(
                f"dropped rounds per turn ({self.dropped_per_turn}) must be fewer than rounds per turn "
                f"({self.rounds_per_turn})"
            )
        if self.min_blocks < 2 or self.max_blocks < self.min_blocks:
            raise ValueError(f"need 2 <= min blocks ({self.min_blocks}) <= max blocks ({self.max_blocks})")
        if self.follow_up_blocks < 0:
            raise ValueError(f"follow-up blocks must be 0 or more, got {self.follow_up_blocks}")

    @property
    def verdict_blocks(self) -> int:
        """Blocks a case needs before any speed verdict: ``min_blocks``, and never fewer than 3 (an interval from
        two blocks of fresh processes, stopped early, covers far less than it claims)."""
        return max(self.min_blocks, MIN_VERDICT_BLOCKS)


@dataclass
class Pair:
    order: list[int]  # side indices in the order their turns ran
    values: list[dict[str, float]]  # per side index: metric -> the turn's value


@dataclass
class Block:
    index: int
    pids: list[int]
    pairs: list[Pair] = field(default_factory=list)
    memory_bytes: list[dict[str, int]] = field(default_factory=list)  # per side
    memory_absent: list[dict[str, str]] = field(default_factory=list)  # per side


@dataclass
class CaseComparison:
    case: Case
    blocks: list[Block] = field(default_factory=list)
    stop_reason: str = ""
    error: str | None = None
    seconds: float = 0.0
    pairs_per_block: int = 0  # chosen in the first block from the warm-up rounds' length (0: not yet)
    # The sweep's prior at the stop, per side index (as text, for JSON) and metric: [variance, dof]. The
    # interval a case stopped on is the interval it reports, whatever the other cases measured after it.
    priors: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # A suspect slowdown's second stage: why it was followed up, and its blocks and seconds when it was (0: none).
    follow_up: str = ""
    follow_up_from_block: int = 0
    follow_up_from_s: float = 0.0

    def prior(self, side: int, metric: str) -> VariancePrior | None:
        frozen = self.priors.get(str(side), {}).get(metric)
        return None if frozen is None else VariancePrior(frozen[0], frozen[1])

    def log_ratios(self, side: int, metric: str) -> list[list[float]]:
        """Per block, log(side's turn / reference's turn) of each pair where both have the metric."""
        return [
            [
                math.log(pair.values[side][metric] / pair.values[0][metric])
                for pair in block.pairs
                if metric in pair.values[side] and metric in pair.values[0]
            ]
            for block in self.blocks
        ]

    def estimate(
        self, side: int, metric: str, confidence: float, prior: VariancePrior | None = None
    ) -> PairedEstimate | None:
        return paired_estimate(self.log_ratios(side, metric), confidence, prior)

    def median(self, side: int, metric: str) -> float | None:
        values = [pair.values[side][metric] for b in self.blocks for pair in b.pairs if metric in pair.values[side]]
        return statistics.median(values) if values else None

    def memory(self, side: int, metric: str) -> int | None:
        values = [b.memory_bytes[side][metric] for b in self.blocks if metric in b.memory_bytes[side]]
        return int(statistics.median(values)) if values else None

    def memory_peaks(self, side: int, metric: str) -> list[int]:
        return [b.memory_bytes[side][metric] for b in self.blocks if metric in b.memory_bytes[side]]

    def memory_absent(self, side: int, metric: str) -> str | None:
        reasons = [b.memory_absent[side][metric] for b in self.blocks if metric in b.memory_absent[side]]
        return reasons[0] if reasons and self.memory(side, metric) is None else None


@dataclass
class SideInfo:
    name: str
    python: str
    paddle_version: str = ""
    paddlenlp_version: str = ""
    package_version: str = ""
    slowdown_fraction: float = 0.0
    runner: str = "suite"
    mode: str | None = None  # every case's execution mode on this side, when it is not the case's own


@dataclass
class PairedRun:
    sides: list[SideInfo]
    settings: PairedSettings
    cases: list[CaseComparison] = field(default_factory=list)
    started: str = ""
    machine: dict[str, str | int | None] = field(default_factory=dict)  # logical cores, host name
    interrupted: bool = False

    def as_dict(self) -> Document:
        return PAIRED_RUN.stamp(asdict(self))

    def save(self, path: Path) -> None:
        write_document(path, PAIRED_RUN, asdict(self))


def load_paired_run(path: Path) -> PairedRun:
    """Read a saved paired run; the format and version are checked, every error names the file."""
    try:
        document = read_document(path, PAIRED_RUN)
    except FormatError as error:
        raise PairedFileError(f"cannot read a paired run: {error}") from None
    try:
        return _PAIRED_RUN_TYPE.validate_python(document)
    except ValidationError as error:
        raise PairedFileError(f"{path}: malformed paired run: {describe_invalid(error)}") from None


def _upgrade_v1(document: Document) -> Document:
    """Format 1 moderated with a fixed weight (``pooled_spread_dof``); format 2 estimates the weight per decoding
    and freezes each case's prior at its stop. Old runs are judged anew with today's rules."""
    settings = {k: v for k, v in document["settings"].items() if k != "pooled_spread_dof"}
    return {**document, "settings": settings}


def _upgrade_v2(document: Document) -> Document:
    """Format 2 froze each case's prior with a weight not capped by the sweep's degrees of freedom, and moderated
    only upwards; format 3 caps it and moderates both ways. The frozen priors are dropped: the run is judged
    anew with today's rules, from the priors of its blocks as they ended."""
    return {**document, "cases": [{**case, "priors": {}} for case in document["cases"]]}


PAIRED_RUN = Format("paired run", 3, {1: _upgrade_v1, 2: _upgrade_v2}, tag=("format", FORMAT))


# Reads a saved run's document into the dataclasses above, checking every field's type on the way (pydantic
# validates standard dataclasses too; each one's __post_init__ still runs, and its defaults fill what older
# formats did not write).
_PAIRED_RUN_TYPE = TypeAdapter(PairedRun)


# Verdicts.


Priors = dict[tuple[str, str], VariancePrior | None]  # (decoding, metric) -> the sweep's prior


def current_priors(run: PairedRun) -> Priors:
    """Per decoding and metric, the prior from every comparison of the run as it stands: cases of one decoding
    are alike in noise (beam search scatters more than greedy search), so they lend each other their evidence."""
    groups: dict[tuple[str, str], list[list[list[float]]]] = {}
    for comparison in run.cases:
        for metric in paired_metric_names():
            key = (comparison.case.decoding, metric)
            for side in range(1, len(run.sides)):
                groups.setdefault(key, []).append(comparison.log_ratios(side, metric))
    return {key: sweep_prior(found) for key, found in groups.items()}


def prior_for(comparison: CaseComparison, side: int, metric: str, priors: Priors) -> VariancePrior | None:
    """The prior frozen at the case's stop, else the sweep's current one for its decoding."""
    if comparison.priors:
        return comparison.prior(side, metric)
    return priors.get((comparison.case.decoding, metric))


def estimates(run: PairedRun, priors: Priors | None = None) -> dict[tuple[int, int, str], PairedEstimate | None]:
    """(case index, side, metric) -> the estimate that is reported: with the prior frozen at the case's stop,
    else (a case still running, or interrupted) the run's current one (``priors``, where the caller has it)."""
    now = current_priors(run) if priors is None else priors
    found: dict[tuple[int, int, str], PairedEstimate | None] = {}
    for index, comparison in enumerate(run.cases):
        for side in range(1, len(run.sides)):
            for metric in paired_metric_names():
                prior = prior_for(comparison, side, metric, now)
                found[(index, side, metric)] = comparison.estimate(side, metric, run.settings.confidence, prior)
    return found


def judge(run: PairedRun, priors: Priors | None = None) -> list[Verdict]:
    """Every (case, side, metric) estimate with its verdict (``core.verdicts``): Holm over every speed test of
    the run decides faster/slower, so spurious ones stay under alpha per sweep; a slower gated metric is a
    regression. A case with fewer than ``min_blocks`` blocks gets no verdict (it says so)."""
    settings = run.settings
    found = estimates(run, priors)
    tested = [key for key, e in found.items() if e is not None and e.blocks >= settings.verdict_blocks]
    adjusted = dict(zip(tested, holm_adjust([found[k].p_value for k in tested]), strict=True))  # type: ignore[union-attr]
    verdicts = []
    for (index, side, metric), estimate in found.items():
        comparison = run.cases[index]
        verdicts.append(
            _speed_verdict(comparison, run, side, metric, estimate, adjusted.get((index, side, metric)), len(tested))
        )
    return verdicts


def _speed_verdict(
    comparison: CaseComparison,
    run: PairedRun,
    side: int,
    metric: str,
    estimate: PairedEstimate | None,
    p_adjusted: float | None,
    family: int,
) -> Verdict:
    settings = run.settings
    base = Verdict(
        comparison.case.id,
        metric,
        INCONCLUSIVE,
        comparison.median(0, metric),
        comparison.median(side, metric),
        side=run.sides[side].name,
    )
    if estimate is None:
        return replace(base, evidence=f"{len(comparison.blocks)} block(s): an interval needs 2")
    base = replace(
        base, ratio=estimate.ratio, ci_low=estimate.ci_low, ci_high=estimate.ci_high, p_value=estimate.p_value
    )
    moderation = "moderated by the sweep's noise" if estimate.moderated else "its own noise"
    evidence = f"{estimate.blocks} blocks / {estimate.pairs} pairs, t on {estimate.dof:.3g} dof ({moderation})"
    if p_adjusted is None:
        return replace(base, evidence=f"{evidence}; fewer than the {settings.verdict_blocks} blocks a verdict needs")
    verdict = speed_verdict(
        estimate.ratio,
        estimate.ci_low,
        estimate.ci_high,
        p_adjusted,
        settings.alpha,
        settings.min_effect_percent.get(metric, 0.0),
        metric_by_name(metric).higher_is_better,
    )
    return replace(
        base,
        verdict=verdict,
        p_adjusted=p_adjusted,
        regression=verdict == SLOWER and metric in settings.gated_metrics,
        evidence=f"{evidence}; Holm-adjusted p {p_adjusted:.2g} over {family} tests (alpha {settings.alpha:g})",
    )


def suspect_slowdowns(run: PairedRun, verdicts: Sequence[Verdict]) -> dict[str, str]:
    """case id -> why it is a suspect slowdown: a gated speed metric, judged (blocks enough for a verdict), whose
    own interval lies on the slower side (raw p below 1 - confidence) with an estimate beyond the metric's minimum
    effect, but not called slower after Holm. More blocks can settle it either way; the screen only decides
    whether to measure on."""
    screen = 1.0 - run.settings.confidence
    found: dict[str, str] = {}
    for v in verdicts:
        ratio, p_value = v.ratio, v.p_value
        if ratio is None or p_value is None or v.p_adjusted is None:  # no verdict yet: too few blocks
            continue
        if v.metric not in run.settings.gated_metrics or v.verdict == SLOWER:
            continue
        worse = ratio < 1.0 if metric_by_name(v.metric).higher_is_better else ratio > 1.0
        effect_percent = 100.0 * abs(ratio - 1.0)
        if worse and p_value < screen and effect_percent >= run.settings.min_effect_percent.get(v.metric, 0.0):
            found.setdefault(
                v.case_id, f"{v.metric} {ratio:.3f} [{v.ci_low:.3f}, {v.ci_high:.3f}], raw p {p_value:.2g}"
            )
    return found


def judge_memory(run: PairedRun, gate: GateSettings | None = None) -> list[Verdict]:
    """Each side's memory peaks against the reference's, with the gate's tolerances. Peaks of fixed shapes are
    deterministic: repeats (blocks) that disagree make the verdict inconclusive, with the spread."""
    tolerances = (gate or GateSettings()).memory_tolerance
    found: list[Verdict] = []
    for comparison in run.cases:
        for side in range(1, len(run.sides)):
            for metric in metric_names(MEMORY):
                found.append(_memory_verdict(comparison, run.sides[side].name, side, metric, tolerances[metric]))
    return found


def _memory_verdict(
    comparison: CaseComparison, name: str, side: int, metric: str, tolerance: tuple[float, int]
) -> Verdict:
    reference, candidate = comparison.memory_peaks(0, metric), comparison.memory_peaks(side, metric)
    if not reference or not candidate:
        why = comparison.memory_absent(0, metric) or comparison.memory_absent(side, metric) or "absent"
        return Verdict(comparison.case.id, metric, INCONCLUSIVE, side=name, evidence=why)
    return memory_comparison(comparison.case.id, metric, reference, candidate, tolerance, metric in GATED_MEMORY, name)


def failures(verdicts: Sequence[Verdict]) -> list[str]:
    """The lines that fail a gate: a confirmed slower speed, a bigger allocator peak."""
    return [v.message() for v in verdicts if v.regression]
