"""One exit-status vocabulary for every command: pytest's own (``pytest.ExitCode``), so a nightly reads
`pytest benchmarks`, `paired`, `versions`, `nightly` ... the same way."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # everything asked for was measured and judged
    FAILED = 1  # a confirmed regression, a failed case, a save that failed
    INTERRUPTED = 2  # stopped by Ctrl-C or SIGTERM: what was measured is kept
    USAGE_ERROR = 4  # bad input, found before anything was measured
