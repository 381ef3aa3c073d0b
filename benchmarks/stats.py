"""Interleaved measurements and their summaries (median, min, max).

Every comparison in this package measures its configurations in the same
process, one after the other within each round, and compares them round by
round: a slow moment of the machine, or a database that grows as the run goes
on, affects both sides of a round alike. The order within a round rotates
(A B, B A, ...) so that neither side always goes first.
"""

from __future__ import annotations

import enum
import gc
import statistics
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Summary:
    """The median, minimum and maximum of one figure over several rounds."""

    median: float
    min: float
    max: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no values to summarise")
        return cls(
            median=statistics.median(values),
            min=min(values),
            max=max(values),
            rounds=len(values),
        )

    def to_json(self, digits: int = 4) -> dict[str, Any]:
        return {
            "median": round(self.median, digits),
            "min": round(self.min, digits),
            "max": round(self.max, digits),
            "rounds": self.rounds,
        }

    def show(self, fmt: str = "{:.3f}") -> str:
        """``median (min-max)`` for the table."""
        return (
            f"{fmt.format(self.median)} ({fmt.format(self.min)}-{fmt.format(self.max)})"
        )


class Timer(enum.Enum):
    """What a measurement's seconds are."""

    #: Wall-clock time: everything, including what other processes take.
    WALL = "wall"
    #: CPU time of this process: all the work when the database is SQLite (in
    #: this process), and immune to other processes taking turns on the CPU.
    CPU = "process_cpu"

    def now(self) -> float:
        return time.perf_counter() if self is Timer.WALL else time.process_time()


def timed(action: Callable[[], object], timer: Timer) -> float:
    """Seconds of ``action()`` by ``timer``.

    Garbage is collected before, and the collector is paused during the call
    (as ``timeit`` does), so that one side does not pay for the other's garbage.
    """
    gc.collect()
    gc.disable()
    try:
        start = timer.now()
        action()
        return timer.now() - start
    finally:
        gc.enable()


def interleave(
    configs: Sequence[K],
    rounds: int,
    measure: Callable[[K, int], float],
    warmup: int = 1,
) -> dict[K, list[float]]:
    """Run ``measure(config, round)`` for every config, round after round.

    The first ``warmup`` rounds are run and discarded (caches, lazily built
    objects). Round ``r`` starts with ``configs[r % len(configs)]``.

    Returns:
        For each config, its measurements in round order (paired by index).
    """
    results: dict[K, list[float]] = {config: [] for config in configs}
    for r in range(-warmup, rounds):
        shift = r % len(configs)
        for config in [*configs[shift:], *configs[:shift]]:
            value = measure(config, r)
            if r >= 0:
                results[config].append(value)
    return results


def alternate(
    configs: Sequence[K],
    rounds: int,
    steps: int,
    measure: Callable[[K], float],
    between_rounds: Callable[[], object] | None = None,
    warmup: int = 1,
) -> dict[K, list[float]]:
    """Like :func:`interleave`, alternating at every step within a round.

    A round is ``steps`` steps; a step runs ``measure(config)`` once for each
    config, starting with the next config each step (A B C, B C A, C A B, ...),
    so that neighbouring measurements of every config share the machine's
    moment. The garbage collector is paused during a round and run between
    rounds, after ``between_rounds()``.

    Returns:
        For each config, its mean ``measure`` per step in each round.
    """
    results: dict[K, list[float]] = {config: [] for config in configs}
    for r in range(-warmup, rounds):
        if between_rounds is not None:
            between_rounds()
        totals = dict.fromkeys(configs, 0.0)
        gc.collect()
        gc.disable()
        try:
            for step in range(steps):
                shift = (r + step) % len(configs)
                for config in [*configs[shift:], *configs[:shift]]:
                    totals[config] += measure(config)
        finally:
            gc.enable()
        if r >= 0:
            for config in configs:
                results[config].append(totals[config] / steps)
    return results


def paired_ratios(top: Sequence[float], bottom: Sequence[float]) -> list[float]:
    """``top[i] / bottom[i]`` for each round ``i``."""
    if len(top) != len(bottom):
        raise ValueError("the two sides have different numbers of rounds")
    return [t / b for t, b in zip(top, bottom, strict=True)]
