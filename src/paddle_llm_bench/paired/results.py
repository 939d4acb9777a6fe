"""The records of a paired comparison, its JSON document, and its verdicts.

A *block* is one worker process per side, fresh for that block; a *pair* is one turn of each side,
in random order (with three or more sides, a set: one turn of each). A turn's value of a metric is
the median over its kept rounds. Everything measured is kept raw (per pair and side), so every
figure can be recomputed from the saved file.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.gate import GateSettings
from paddle_llm_bench.core.metrics import (
    HIGHER_IS_BETTER,
    MEMORY_METRICS,
    PAIRED_GATED_METRICS,
    PAIRED_METRICS,
    PAIRED_MIN_EFFECT_PERCENT,
)
from paddle_llm_bench.core.stats import holm_adjust
from paddle_llm_bench.paired.stats import (
    SLOWER,
    PairedEstimate,
    block_estimates,
    memory_verdict,
    paired_estimate,
    prior_spreads,
    speed_verdict,
)
from paddle_llm_bench.results.files import write_atomic

FORMAT = "paddle-llm-bench-paired"
FORMAT_VERSION = 1
# The metrics compared pair by pair; the first decides when a case is precise enough.


class PairedFileError(ValueError):
    """A paired-run file that cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class PairedSettings:
    """How long and how finely a paired comparison measures, and how it judges."""

    pairs_per_block: int = 20
    min_blocks: int = 4
    max_blocks: int = 10
    target_half_width_percent: float = 2.0
    case_budget_s: float = 300.0
    rounds_per_turn: int = 1
    dropped_per_turn: int = 0
    warmup_rounds: int = 2
    confidence: float = 0.95
    alpha: float = 0.01  # family-wise false-alarm rate of the gate, Holm-corrected over the sweep
    min_effect_percent: dict[str, float] = field(default_factory=lambda: dict(PAIRED_MIN_EFFECT_PERCENT))
    gated_metrics: tuple[str, ...] = PAIRED_GATED_METRICS
    # Weight, in degrees of freedom, of the spread pooled over the sweep's other comparisons when judging one
    # (as the stored-baseline gate's pooled noise): a case's own 4-10 blocks say little about its noise.
    pooled_spread_dof: float = 4.0
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

    def estimate(self, side: int, metric: str, confidence: float) -> PairedEstimate | None:
        return paired_estimate(self.log_ratios(side, metric), confidence)

    def median(self, side: int, metric: str) -> float | None:
        values = [pair.values[side][metric] for b in self.blocks for pair in b.pairs if metric in pair.values[side]]
        return statistics.median(values) if values else None

    def memory(self, side: int, metric: str) -> int | None:
        values = [b.memory_bytes[side][metric] for b in self.blocks if metric in b.memory_bytes[side]]
        return int(statistics.median(values)) if values else None

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


@dataclass
class PairedRun:
    sides: list[SideInfo]
    settings: PairedSettings
    cases: list[CaseComparison] = field(default_factory=list)
    started: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.as_dict(), indent=1) + "\n")


def load_paired_run(path: Path) -> PairedRun:
    """Read a saved paired run; the format and version are checked, every error names the file."""
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PairedFileError(f"{path}: cannot read a paired run ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise PairedFileError(f'{path}: not a paired run (no "format": "{FORMAT}")')
    version = document.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise PairedFileError(
            f"{path}: format_version {version!r} is not {FORMAT_VERSION}, the one this version reads; "
            "re-run the comparison with this version"
        )
    try:
        settings = document["settings"]
        settings["gated_metrics"] = tuple(settings["gated_metrics"])
        return PairedRun(
            sides=[SideInfo(**side) for side in document["sides"]],
            settings=PairedSettings(**settings),
            cases=[_case_comparison(item) for item in document["cases"]],
            started=document.get("started", ""),
            machine=document.get("machine", {}),
            interrupted=bool(document.get("interrupted", False)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise PairedFileError(f"{path}: malformed paired run ({type(error).__name__}: {error})") from None


def _case_comparison(item: dict[str, Any]) -> CaseComparison:
    blocks = [
        Block(
            index=block["index"],
            pids=block["pids"],
            pairs=[Pair(**pair) for pair in block["pairs"]],
            memory_bytes=block["memory_bytes"],
            memory_absent=block["memory_absent"],
        )
        for block in item["blocks"]
    ]
    return CaseComparison(Case(**item["case"]), blocks, item["stop_reason"], item["error"], item["seconds"])


# Verdicts.


@dataclass(frozen=True)
class Judgement:
    """One side against the reference, for one case and one metric."""

    case_id: str
    side: int
    metric: str
    estimate: PairedEstimate | None
    verdict: str
    regression: bool = False  # slower, and significant after Holm over the sweep (gated metrics only)

    @property
    def ratio_text(self) -> str:
        e = self.estimate
        return "n/a" if e is None else f"{e.ratio:.3f} [{e.ci_low:.3f}, {e.ci_high:.3f}]"


@dataclass(frozen=True)
class MemoryJudgement:
    case_id: str
    side: int
    metric: str
    reference_bytes: int | None
    candidate_bytes: int | None
    verdict: str  # bigger / smaller / same, or why it is absent


def judge(run: PairedRun) -> list[Judgement]:
    """Every (case, side, metric) estimate with its verdict; Holm over the gated ones marks regressions.

    Each estimate's noise is moderated by the spread of the sweep's other comparisons of the same metric.
    """
    settings = run.settings
    keys = [(c, side) for c in run.cases for side in range(1, len(run.sides))]
    estimates: dict[tuple[int, int, str], PairedEstimate | None] = {}
    for metric in PAIRED_METRICS:
        blocks = [comparison.log_ratios(side, metric) for comparison, side in keys]
        priors = prior_spreads([block_estimates(b) for b in blocks], settings.pooled_spread_dof)
        for (comparison, side), block, prior in zip(keys, blocks, priors, strict=True):
            estimates[(id(comparison), side, metric)] = paired_estimate(block, settings.confidence, prior)
    judgements: list[Judgement] = []
    for comparison, side in keys:
        for metric in PAIRED_METRICS:
            estimate = estimates[(id(comparison), side, metric)]
            verdict = speed_verdict(estimate, settings.min_effect_percent.get(metric, 0.0), metric in HIGHER_IS_BETTER)
            judgements.append(Judgement(comparison.case.id, side, metric, estimate, verdict))
    gated = [j for j in judgements if j.metric in settings.gated_metrics and j.estimate is not None]
    adjusted = holm_adjust([j.estimate.p_value for j in gated if j.estimate is not None])
    flagged = {id(j) for j, p in zip(gated, adjusted, strict=True) if j.verdict == SLOWER and p <= settings.alpha}
    return [
        Judgement(j.case_id, j.side, j.metric, j.estimate, j.verdict, regression=True) if id(j) in flagged else j
        for j in judgements
    ]


def judge_memory(run: PairedRun, gate: GateSettings | None = None) -> list[MemoryJudgement]:
    """Each side's memory peaks against the reference's, with the gate's tolerances (peaks are deterministic)."""
    tolerances = (gate or GateSettings()).memory_tolerance
    found: list[MemoryJudgement] = []
    for comparison in run.cases:
        for side in range(1, len(run.sides)):
            for metric in MEMORY_METRICS:
                reference, candidate = comparison.memory(0, metric), comparison.memory(side, metric)
                if reference is None or candidate is None:
                    why = comparison.memory_absent(0, metric) or comparison.memory_absent(side, metric) or "absent"
                    found.append(MemoryJudgement(comparison.case.id, side, metric, reference, candidate, why))
                    continue
                percent, slack = tolerances[metric]
                verdict = memory_verdict(reference, candidate, percent, slack)
                found.append(MemoryJudgement(comparison.case.id, side, metric, reference, candidate, verdict))
    return found


def failures(judgements: Sequence[Judgement], memory: Sequence[MemoryJudgement]) -> list[str]:
    """The lines that fail a gate: confirmed slower speed, bigger memory."""
    lines = [
        f"{j.case_id}: {j.metric} slower, ratio {j.ratio_text} (p = {j.estimate.p_value:.2g}, Holm-corrected)"
        for j in judgements
        if j.regression and j.estimate is not None
    ]
    lines += [
        f"{m.case_id}: {m.metric} bigger, {m.reference_bytes} -> {m.candidate_bytes} bytes"
        for m in memory
        if m.verdict == "bigger" and m.metric in ("peak_allocated_bytes", "peak_reserved_bytes")
    ]
    return lines
