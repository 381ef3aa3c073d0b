"""The command line: ``python -m benchmarks`` (see ``--help``).

``python -m benchmarks [--json FILE] [--quick] [--event-cache-size N]
[--only KEY ...]``.

Prints a table of the figures of SPEC section 8 and, with ``--json``, writes
them under the keys ``hot_path``, ``queries``, ``start_vs_handler``,
``start_vs_client``, ``rollback_seconds`` and ``machine``, with details and
``background`` (the module's periodic work in large rooms) beside them.
SQLite by default; PostgreSQL where ``SYNAPSE_POSTGRES`` is set (with
``SYNAPSE_POSTGRES_HOST``, ``_USER``, ``_PASSWORD``, ``_PORT``), as in the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import use_synapse_harness

KEYS = (
    "hot_path",
    "queries",
    "start_vs_handler",
    "start_vs_client",
    "rollback_seconds",
    "background",
    "split",
    "console_poll",
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="The performance budgets of SPEC section 8, as ratios in one run.",
    )
    parser.add_argument(
        "--json", metavar="FILE", type=Path, help="write the figures here"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds (a smoke run; the figures are rougher)",
    )
    parser.add_argument(
        "--event-cache-size",
        type=int,
        default=10_000,
        metavar="N",
        help="Synapse's event_cache_size (default: Synapse's own, 10000)",
    )
    parser.add_argument(
        "--split-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="lobby sizes for split (default 2000 5000 10000; the largest is "
        "the figure)",
    )
    parser.add_argument(
        "--split-bounds",
        action="store_true",
        help="split: measure only the placement bounds and concurrent room "
        "creation, in a lobby of the smallest --split-sizes",
    )
    parser.add_argument(
        "--split-messages",
        action="store_true",
        help="split: measure only messages in another room during a split, in "
        "a lobby of the largest --split-sizes",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=KEYS,
        metavar="KEY",
        help="measure only these: " + ", ".join(KEYS),
    )
    return parser.parse_args(argv)


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("benchmarks")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _logging()
    use_synapse_harness()
    # Only now may Synapse's harness (the ``tests`` package) be imported.
    from benchmarks.run import Plan, run

    plan = Plan.make(
        quick=args.quick,
        only=args.only or KEYS,
        event_cache_size=args.event_cache_size,
        split_sizes=tuple(args.split_sizes) if args.split_sizes else None,
        split_bounds=args.split_bounds,
        split_messages=args.split_messages,
    )
    started = time.perf_counter()
    results: dict[str, Any] = run(plan)
    results["elapsed_seconds"] = round(time.perf_counter() - started, 1)

    from benchmarks.report import table

    print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
        print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
