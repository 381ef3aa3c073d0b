"""One benchmark run: one homeserver, the rooms built once, every figure.

Imports Synapse's test harness: import it only after
:func:`benchmarks.use_synapse_harness`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from benchmarks import background, console_poll, hot_path, queries, split, start
from benchmarks.harness import EVENT_CACHE_SIZE, Bench, Config
from benchmarks.report import machine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What to measure, and how many rounds each comparison gets."""

    keys: frozenset[str]
    hot_path_rounds: int
    start_rounds: int
    rollback_rounds: int
    event_cache_size: int = EVENT_CACHE_SIZE
    split_sizes: tuple[int, ...] = split.SIZES
    split_rounds: int = 1
    split_bounds: bool = False
    split_messages: bool = False

    @classmethod
    def make(
        cls,
        quick: bool,
        only: Collection[str],
        event_cache_size: int = EVENT_CACHE_SIZE,
        split_sizes: tuple[int, ...] | None = None,
        split_bounds: bool = False,
        split_messages: bool = False,
    ) -> Plan:
        return cls(
            event_cache_size=event_cache_size,
            split_sizes=split_sizes or split.SIZES,
            split_rounds=1 if quick else 3,
            split_bounds=split_bounds,
            split_messages=split_messages,
            keys=frozenset(only),
            hot_path_rounds=3 if quick else 15,
            start_rounds=2 if quick else 7,
            rollback_rounds=1 if quick else 3,
        )


def run(plan: Plan) -> dict[str, Any]:
    """Measure what ``plan`` asks for; the JSON document of the run."""
    bench = Bench(event_cache_size=plan.event_cache_size)
    try:
        return _run(bench, plan)
    finally:
        bench.close()


def _run(bench: Bench, plan: Plan) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(bench)}
    results["module"] = {
        "registrations": bench.switch.registrations(),
        "dispatcher_shortcut": bench.switch.has_shortcut,
        "web_resources": bench.module_resource_paths(),
    }
    host, token = bench.register("host", admin=True)

    if plan.keys & {"hot_path", "queries", "background"}:
        started = time.perf_counter()
        bench.switch.set(Config.WITHOUT)
        rooms = hot_path.build_rooms(bench, host)
        bench.switch.set(Config.WITH)
        results["room_build_seconds"] = round(time.perf_counter() - started, 1)
        bench.settle()
        if "hot_path" in plan.keys:
            logger.info("hot_path: %d rounds", plan.hot_path_rounds)
            results.update(hot_path.run(bench, host, rooms, plan.hot_path_rounds))
            bench.settle()
        if "queries" in plan.keys:
            size = 2_000 if 2_000 in rooms else max(rooms)
            members = [
                f"@member{size}_{i}:{bench.server_name}" for i in range(size - 1)
            ]
            logger.info("queries: parent of %d members", size)
            results["queries"] = queries.run(bench, host, rooms[size], members)
            results["queries_parent_members"] = size
        if "background" in plan.keys:
            logger.info("background: ejection passes")
            results["background"] = background.run(bench, token, rooms)
            bench.settle()

    if "split" in plan.keys:
        logger.info(
            "split: lobbies of %s, %d rounds", plan.split_sizes, plan.split_rounds
        )
        unrelated, _, _ = bench.run(
            bench.hs.get_room_creation_handler().create_room(
                bench.requester(host), {"preset": "public_chat"}, ratelimit=False
            )
        )
        if plan.split_bounds:
            results["split_bounds"] = split.run_bounds(
                bench, host, token, min(plan.split_sizes)
            )
        elif plan.split_messages:
            results["split_messages"] = split.run_messages(
                bench,
                host,
                token,
                unrelated,
                plan.split_rounds,
                max(plan.split_sizes),
            )
        else:
            results["split"] = split.run(
                bench, host, token, unrelated, plan.split_rounds, plan.split_sizes
            )
        bench.settle()

    if "console_poll" in plan.keys:
        logger.info("console_poll: a %d-member parent", console_poll.SIZE)
        results["console_poll"] = console_poll.run(
            bench, host, token, plan.hot_path_rounds
        )
        bench.settle()

    start_keys = {"start_vs_handler", "start_vs_client", "rollback_seconds"}
    if plan.keys & start_keys:
        parent = start.make_parent(bench, host, token)
        bench.settle()
        missing = start.api_status(bench, parent)
        if missing is not None:
            logger.info("start benchmarks: %s", missing)
            for key in sorted(plan.keys & start_keys):
                results[key] = missing
        else:
            if plan.keys & {"start_vs_handler", "start_vs_client"}:
                logger.info("start: %d rounds", plan.start_rounds)
                figures = start.run_start(bench, parent, plan.start_rounds)
                for key in ("start_vs_handler", "start_vs_client"):
                    if key in plan.keys:
                        results[key] = figures[key]
                results["start_seconds"] = figures["start_seconds"]
                bench.settle()
            if "rollback_seconds" in plan.keys:
                logger.info("rollback: %d rounds", plan.rollback_rounds)
                results["rollback_seconds"] = start.run_rollback(
                    bench, parent, plan.rollback_rounds
                )
    return results
