"""Seeded Monte Carlo of the paired engine's statistics: coverage, false alarms and power, measured by
running the real stop rule (``engine.end_of_round``) and the real verdicts (``results.judge``) on synthetic
pairs whose noise and true effect are known. No workers, no Paddle: only the measuring is simulated.

A scenario says, per case, how noisy a single pair's log ratio is (pair noise, with occasional wild
pairs: a regime change between the two turns), how much two fresh processes differ for their life
(process luck, drawn once per side and block) and how long a round takes (for the time budget).
``paddle-llm-bench simulate`` prints the tables docs/verdicts.md quotes; tests/test_simulation.py checks them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from paddle_llm_bench.core.config import Case
from paddle_llm_bench.core.verdicts import FASTER, SLOWER
from paddle_llm_bench.paired.engine import end_of_round, pairs_per_block
from paddle_llm_bench.paired.results import Block, CaseComparison, Pair, PairedRun, PairedSettings, SideInfo, judge

DECODE, TTFT, E2E = "decode_tokens_per_s", "ttft_ms", "e2e_tokens_per_s"


@dataclass(frozen=True)
class CaseNoise:
    """One case's noise: sd of a pair's log ratio (decode tok/s; TTFT is ``ttft_factor`` times noisier),
    the share of wild pairs and how wild, process luck per process, and a round's length in seconds."""

    pair_sd: float
    luck_sd: float = 0.015
    wild_share: float = 0.05
    wild_factor: float = 5.0
    ttft_factor: float = 1.5
    round_s: float = 0.3
    # Busy days: each block draws its pair sd from these (neighbours come and go between blocks); () = pair_sd.
    block_pair_sds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    cases: tuple[CaseNoise, ...]
    decodings: tuple[str, ...] = ()  # per case (default greedy): the sweep's prior is pooled per decoding
    settings: PairedSettings = field(default_factory=PairedSettings)
    prepare_s: float = 5.0  # worker start and case preparation, per block


def vm(cases: int = 24) -> Scenario:
    """This project's 2-core VM: single-round pairs scatter by ~14 %, process luck 1.5 % per process."""
    return Scenario(f"this VM, {cases} like cases (pair noise 14 %)", (CaseNoise(0.14),) * cases)


def vm_quiet(cases: int = 24) -> Scenario:
    """This VM on a quiet day, as its A/A runs of 2026-12-02 measured it (tiny greedy case): single-round pairs
    scatter by 2.4-3.2 % in decode tok/s and 7-9 % in TTFT, blocks by 1.0-1.7 % (process luck ~1 % per process)."""
    noise = CaseNoise(0.03, luck_sd=0.01, ttft_factor=3.0)
    return Scenario(f"this VM on a quiet day, {cases} like cases (pair noise 3 %)", (noise,) * cases)


# A busy day's blocks, as an A/A run measured them (tiny greedy case, 10 blocks of 20 pairs, 2026-12-03, while the
# test suite ran beside it on the VM's 2 cores): the robust (MAD) sd of each block's pair log ratios, decode tok/s.
BUSY_DAY_BLOCK_PAIR_SDS = (0.033, 0.040, 0.055, 0.120, 0.113, 0.048, 0.035, 0.196, 0.231, 0.060)


def vm_busy(cases: int = 24) -> Scenario:
    """This VM on a busy day: each block's pairs scatter by one of the measured blocks' sds (3-23 %), process luck
    ~1 % per process, TTFT 2.5 times noisier."""
    noise = CaseNoise(0.1, luck_sd=0.01, ttft_factor=2.5, block_pair_sds=BUSY_DAY_BLOCK_PAIR_SDS)
    return Scenario(f"this VM on a busy day, {cases} like cases (pair noise 3-23 % by block)", (noise,) * cases)


def vm_mixed() -> Scenario:
    """A 24-case sweep of unlike noise: greedy 9 %, sampling 14 %, beam4 21 % pair noise, and one case 4x noisier
    whose long rounds let its budget hold only 5 blocks."""
    cases = (CaseNoise(0.09),) * 8 + (CaseNoise(0.14),) * 8 + (CaseNoise(0.21),) * 7
    noisy = CaseNoise(0.56, round_s=1.5)
    decodings = ("greedy",) * 8 + ("sampling",) * 8 + ("beam4",) * 8
    return Scenario("this VM, 24 unlike cases (9/14/21 % and one 56 %, budget-cut)", (*cases, noisy), decodings)


def dedicated(cases: int = 24) -> Scenario:
    """Dedicated hardware: pairs scatter by 2 %, process luck 0.5 % (cases stop early on precision)."""
    return Scenario(f"dedicated hardware, {cases} cases (pair noise 2 %)", (CaseNoise(0.02, luck_sd=0.005),) * cases)


def one_case() -> Scenario:
    return Scenario("this VM, one case (no sweep to lend its noise)", (CaseNoise(0.14),))


SCENARIOS = {
    "vm": vm,
    "vm-quiet": vm_quiet,
    "vm-busy": vm_busy,
    "vm-mixed": vm_mixed,
    "dedicated": dedicated,
    "one-case": one_case,
}


def _block(rng: random.Random, noise: CaseNoise, effect: float, pairs: int, index: int) -> Block:
    luck = rng.gauss(0.0, noise.luck_sd) - rng.gauss(0.0, noise.luck_sd)
    pair_sd = rng.choice(noise.block_pair_sds) if noise.block_pair_sds else noise.pair_sd
    block = Block(index, [0, 0])
    for _ in range(pairs):
        draw = rng.gauss(0.0, pair_sd)
        if rng.random() < noise.wild_share:
            draw *= noise.wild_factor
        decode = math.exp(effect + luck + draw)  # candidate ÷ reference
        ttft = math.exp(-effect - luck + noise.ttft_factor * rng.gauss(0.0, pair_sd))
        values = {DECODE: decode, E2E: decode, TTFT: ttft}
        block.pairs.append(Pair([0, 1], [{DECODE: 1.0, E2E: 1.0, TTFT: 1.0}, values]))
    block.memory_bytes = [{}, {}]
    block.memory_absent = [{}, {}]
    return block


@dataclass
class Outcome:
    """What one simulated sweep gave."""

    covered: list[bool]  # per case: the reported decode interval holds the true ratio
    spurious: bool  # a faster/slower verdict on a case with no true change
    false_regression: bool
    caught: bool  # the slowed case (if any) was called a regression on decode tok/s
    blocks: list[int]
    seconds: float  # simulated measuring time of the sweep


def simulate_sweep(scenario: Scenario, rng: random.Random, slowed_case: int | None, slowdown: float) -> Outcome:
    """One sweep through the real stop rule and verdicts; ``slowed_case`` runs ``slowdown`` (0.05: 5 %) slower."""
    effects = [math.log1p(-slowdown) if index == slowed_case else 0.0 for index in range(len(scenario.cases))]
    run = simulate_run(scenario, rng, effects)
    verdicts = {v.case_id: v for v in judge(run) if v.metric == DECODE}
    covered, spurious, false_regression = [], False, False
    for case_index, comparison in enumerate(run.cases):
        verdict = verdicts[comparison.case.id]
        truth = math.exp(effects[case_index])
        low, high = verdict.ci_low, verdict.ci_high
        covered.append(low is not None and high is not None and low <= truth <= high)
        if case_index != slowed_case:
            spurious |= verdict.verdict in (FASTER, SLOWER)
            false_regression |= verdict.regression
    caught = slowed_case is not None and verdicts[run.cases[slowed_case].case.id].regression
    return Outcome(
        covered,
        spurious,
        false_regression,
        caught,
        [len(c.blocks) for c in run.cases],
        sum(c.seconds for c in run.cases),
    )


def simulate_run(scenario: Scenario, rng: random.Random, effects: list[float]) -> PairedRun:
    """A paired run measured by the real stop rule on synthetic blocks; ``effects``: each case's true log ratio."""
    settings = scenario.settings
    decodings = scenario.decodings or ("greedy",) * len(scenario.cases)
    run = PairedRun(
        sides=[SideInfo("reference", "sim"), SideInfo("candidate", "sim")],
        settings=settings,
        cases=[CaseComparison(_case(i, decoding)) for i, decoding in enumerate(decodings)],
    )
    for comparison, noise in zip(run.cases, scenario.cases, strict=True):
        comparison.pairs_per_block = pairs_per_block(settings, noise.round_s)
    active = list(run.cases)
    index = 0
    while active:
        for comparison in active:
            case_index = run.cases.index(comparison)
            noise = scenario.cases[case_index]
            pairs = comparison.pairs_per_block
            comparison.blocks.append(_block(rng, noise, effects[case_index], pairs, index))
            comparison.seconds += scenario.prepare_s + pairs * 2 * settings.rounds_per_turn * noise.round_s
        end_of_round(run, active)
        active = [comparison for comparison in active if not comparison.stop_reason]
        index += 1
    return run


def _case(index: int, decoding: str) -> Case:
    return Case("tiny", "float32", decoding, 32, 1, 32 + index)


@dataclass(frozen=True)
class Rates:
    """Rates over ``sweeps`` simulated sweeps of one scenario."""

    scenario: str
    sweeps: int
    coverage: float  # share of no-change cases whose reported interval held the truth
    worst_case_coverage: float  # the same, for the case (position) that covered least
    spurious_sweeps: float  # share of no-change sweeps with any faster/slower verdict
    false_regression_sweeps: float
    power: float | None  # share of sweeps in which the slowed case was a regression
    mean_blocks: float
    mean_minutes: float
    mean_minutes_slowed: float | None  # the same for the sweeps with a slowed case (its follow-up included)


def rates(scenario: Scenario, sweeps: int, seed: int = 0, slowdown: float = 0.05, slowed_case: int | None = 0) -> Rates:
    """Coverage and false alarms from ``sweeps`` no-change sweeps; power from as many with ``slowed_case`` slowed
    by ``slowdown`` (None: no power runs)."""
    rng = random.Random(seed)
    null = [simulate_sweep(scenario, rng, None, 0.0) for _ in range(sweeps)]
    slowed = (
        [simulate_sweep(scenario, rng, slowed_case, slowdown) for _ in range(sweeps)] if slowed_case is not None else []
    )
    by_case = [sum(o.covered[i] for o in null) / sweeps for i in range(len(scenario.cases))]
    return Rates(
        scenario.name,
        sweeps,
        coverage=sum(by_case) / len(by_case),
        worst_case_coverage=min(by_case),
        spurious_sweeps=sum(o.spurious for o in null) / sweeps,
        false_regression_sweeps=sum(o.false_regression for o in null) / sweeps,
        power=sum(o.caught for o in slowed) / sweeps if slowed else None,
        mean_blocks=sum(sum(o.blocks) / len(o.blocks) for o in null) / sweeps,
        mean_minutes=sum(o.seconds for o in null) / sweeps / 60.0,
        mean_minutes_slowed=sum(o.seconds for o in slowed) / sweeps / 60.0 if slowed else None,
    )
