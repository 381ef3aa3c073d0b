"""How operations are counted: by outcome, and timed (metrics.py,
docs/operations.md "Metrics")."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from synapse.module_api.errors import SynapseError

from synapse_breakout.matrix.errors import BREAKOUT_ACTIVE
from synapse_breakout.metrics import OPERATION_SECONDS, OPERATIONS


def outcome_of(error: BaseException | None) -> str:
    """``ok``, ``conflict`` (a 409) or ``error``."""
    if error is None:
        return "ok"
    if isinstance(error, SynapseError) and error.errcode == BREAKOUT_ACTIVE:
        return "conflict"
    return "error"


def count(kind: str, started: float, error: BaseException | None) -> None:
    """Count one ``kind`` operation that began at ``started`` (monotonic)."""
    OPERATIONS.labels(kind, outcome_of(error)).inc()
    OPERATION_SECONDS.labels(kind).observe(time.monotonic() - started)


@contextlib.contextmanager
def measured(kind: str, started: float | None = None) -> Iterator[None]:
    """Count and time the block as one ``kind`` operation."""
    began = time.monotonic() if started is None else started
    try:
        yield
    except BaseException as e:
        count(kind, began, e)
        raise
    count(kind, began, None)
