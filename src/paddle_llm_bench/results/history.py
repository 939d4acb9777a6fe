"""The nightly's own history: the merged runs of passing nights, per hardware, in a baseline folder.

It is an ordinary baseline folder (``results.baselines``: one file per hardware fingerprint, locked
atomic writes) that keeps the last ``HISTORY_NIGHTS`` runs per case instead of 5. The stored-baseline
gate judges tonight against it; until it holds ``MIN_NIGHTS`` nights speed is not gated and the summary
says so. Only a night that passed enters it; a deliberate change is
accepted by recording that night with a reason, which starts the history afresh from it (the nights
before it measured other code and say nothing about tonight's noise around the new level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from paddle_llm_bench.core.record import CaseRecord, MachineFacts
from paddle_llm_bench.results.baselines import BaselineError, baseline_path, find_for_hardware
from paddle_llm_bench.results.regression import BaselineUpdate, update_baselines

HISTORY_NIGHTS = 10  # kept per case
MIN_NIGHTS = 5  # before speed is gated


@dataclass(frozen=True)
class HistoryState:
    path: Path
    nights: int  # recorded runs of the case with the most

    def gated(self, min_nights: int = MIN_NIGHTS) -> bool:
        return self.nights >= min_nights

    def line(self, min_nights: int = MIN_NIGHTS) -> str:
        if self.gated(min_nights):
            return f"history: {self.nights} nights ({self.path}): speed and memory gated"
        return (
            f"history: {self.nights} of {min_nights} nights ({self.path}), speed not gated yet "
            "(memory is: its peaks are deterministic)"
        )


def history_state(directory: Path, fingerprint: str) -> HistoryState:
    """How many nights of this hardware the history holds (0 without a file): its recorded runs, one per night.
    (The gate's noise model still groups them by time: nights recorded minutes apart are one session.)"""
    store, _notes = find_for_hardware(directory, fingerprint) if directory.is_dir() else (None, [])
    if store is None:
        return HistoryState(baseline_path(directory, fingerprint), 0)
    return HistoryState(store.path, max((len(entry.runs) for entry in store.cases.values()), default=0))


def record_night(
    results: Sequence[CaseRecord],
    facts: MachineFacts,
    directory: Path,
    commit: str | None,
    accepted: str = "",
) -> BaselineUpdate:
    """Add a night's merged run to the history; ``accepted`` (a reason) records a night that failed on purpose
    and drops the nights before it."""
    if not results:
        raise BaselineError("the merged run holds no case: nothing to record")
    if accepted:
        facts = facts.model_copy(update={"accepted": accepted})
    return update_baselines(results, facts, directory, commit, keep=HISTORY_NIGHTS, restart=bool(accepted))
