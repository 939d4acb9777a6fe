"""The sweep: one pytest-benchmark benchmark per case (dtype x decoding x max_new_tokens x batch x prompt).

Select with --llm-* options (see `pytest benchmarks --help`); results go to pytest-benchmark's storage
with --benchmark-autosave.
"""

from collections.abc import Callable

from paddle_llm_bench.core.config import Case


def test_generation(llm_case: Case, llm_measure: Callable[[Case], None]) -> None:
    llm_measure(llm_case)
