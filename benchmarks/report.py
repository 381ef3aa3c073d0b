"""The ``machine`` section of the results, and the printed table."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.harness import Bench


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def machine(bench: Bench) -> dict[str, Any]:
    """Where the figures come from (no host names, no paths)."""
    engine = bench.hs.get_datastores().main.database_engine
    caches = bench.hs.config.caches
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "synapse": metadata.version("matrix-synapse"),
        "synapse_breakout": metadata.version("synapse-breakout"),
        "database_engine": type(engine).__name__.replace("Engine", "").lower(),
        "database_version": engine.server_version,
        "event_cache_size": caches.event_cache_size,
        "cache_global_factor": caches.global_factor,
        "event_cache_entries": bench.event_cache_entries(),
        "default_room_version": bench.hs.config.server.default_room_version.identifier,
        "timer": bench.timer.value,
    }


Row = tuple[str, str, str, str]


def _summary(value: dict[str, Any], fmt: str = "{:.3f}") -> str:
    return (
        f"{fmt.format(value['median'])} "
        f"({fmt.format(value['min'])}-{fmt.format(value['max'])}) "
        f"x{value['rounds']}"
    )


def _ratio_rows(
    name: str, figures: Any, budget: str, ok: Callable[[float], bool]
) -> list[Row]:
    if isinstance(figures, str):
        return [(name, "", figures, budget)]
    rows = []
    for key, value in figures.items():
        verdict = "ok" if ok(value["median"]) else "MISSED"
        rows.append((name, key, _summary(value), f"{budget}: {verdict}"))
    return rows


def _query_rows(figures: Any) -> list[Row]:
    if isinstance(figures, str):
        return [("queries", "", figures, "")]
    counts = {key: value["transactions"] for key, value in figures.items()}
    same = len(set(counts.values())) == 1
    rows = []
    for key, value in figures.items():
        cold = value["cold"]
        rows.append(
            (
                "queries",
                key,
                f"{value['transactions']} txn, {value['statements']} stmt"
                f" (cold: {cold['transactions']} txn, {cold['statements']} stmt)",
                f"same for all: {'ok' if same else 'MISSED'}",
            )
        )
    return rows


def _rollback_rows(figures: Any) -> list[Row]:
    if isinstance(figures, str):
        return [("rollback_seconds", "", figures, "")]
    return [
        (
            "rollback_seconds",
            key,
            _summary(value) + f", clock +{value['clock_seconds']['median']:.1f}s",
            "",
        )
        for key, value in figures.items()
    ]


def _background_rows(figures: Any) -> list[Row]:
    if isinstance(figures, str):
        return [("background", "", figures, "")]
    interval = figures.get("interval_seconds")
    rows = []
    for key, value in figures["rooms"].items():
        share = value.get("core_share")
        rows.append(
            (
                "background",
                key,
                "eject pass (s) " + _summary(value["eject_pass_seconds"]),
                f"every {interval}s: {share:.1%} of a core"
                if share is not None
                else "",
            )
        )
    return rows


def _split_rows(figures: Any) -> list[Row]:
    if isinstance(figures, str):
        return [("split", "", figures, "")]
    members = figures["members"]
    rows: list[Row] = []
    for mode in ("invite", "join"):
        value = figures[mode]
        ok = value["ratio"]["median"] <= 1.1
        rows.append(
            (
                f"split {mode}",
                str(members),
                _summary(value["ratio"]) + f", {value['seconds']['median']:.0f}s,"
                f" {value['users_per_second']:.0f} users/s",
                f"<= 1.1: {'ok' if ok else 'MISSED'}",
            )
        )
        fit = figures["scaling"][mode].get("fit")
        if fit:
            rows.append(
                (
                    "  (fitted)",
                    mode,
                    f"{fit['seconds_per_room_or_user'] * 1000:.2f} ms per room or"
                    f" user, r2 {fit['r2']}",
                    "linear",
                )
            )
    rows.append(_unrelated_row(members, figures["unrelated_messages"]))
    return rows


def _unrelated_row(members: Any, unrelated: dict[str, Any]) -> Row:
    """Messages in another room during a split (``split`` and
    ``split_messages``)."""
    return (
        "split unrelated",
        str(members),
        _summary(unrelated),
        f">= 0.9: {'ok' if unrelated['median'] >= 0.9 else 'MISSED'}",
    )


def _console_poll_rows(figures: Any) -> list[Row]:
    if isinstance(figures, str):
        return [("console_poll", "", figures, "")]
    rows: list[Row] = []
    for state in ("idle", "running"):
        value = figures[state]["unchanged_vs_previous"]
        ok = value["median"] <= figures["target"]
        rows.append(
            (
                "console_poll",
                f"{state} {figures['members']}",
                _summary(value, "{:.4f}")
                + f", {figures[state]['unchanged_seconds']['median'] * 1000:.1f} ms"
                f" vs {figures[state]['previous_seconds']['median'] * 1000:.0f} ms",
                f"<= 1/20: {'ok' if ok else 'MISSED'}",
            )
        )
    return rows


def table(results: dict[str, Any]) -> str:
    """The figures as a plain-text table (medians, with min-max and rounds)."""
    rows: list[Row] = [("figure", "key", "median (min-max) xrounds", "budget")]
    if "hot_path" in results:
        rows += _ratio_rows(
            "hot_path", results["hot_path"], ">= 0.98", lambda m: m >= 0.98
        )
    if "hot_path_without_shortcut" in results:
        rows += _ratio_rows(
            "  (no shortcut)",
            results["hot_path_without_shortcut"],
            "for reference",
            lambda m: True,
        )
    if "hot_path_joins" in results:
        rows += _ratio_rows(
            "hot_path joins",
            results["hot_path_joins"],
            ">= 0.98",
            lambda m: m >= 0.98,
        )
        rows += _ratio_rows(
            "  (no shortcut)",
            results["hot_path_joins_without_shortcut"],
            "for reference",
            lambda m: True,
        )
    if "queries" in results:
        rows += _query_rows(results["queries"])
    if "start_vs_handler" in results:
        rows += _ratio_rows(
            "start_vs_handler",
            results["start_vs_handler"],
            "<= 1.15",
            lambda m: m <= 1.15,
        )
    if "start_vs_client" in results:
        rows += _ratio_rows(
            "start_vs_client", results["start_vs_client"], "< 1", lambda m: m < 1
        )
    if "rollback_seconds" in results:
        rows += _rollback_rows(results["rollback_seconds"])
    if "background" in results:
        rows += _background_rows(results["background"])
    if "split" in results:
        rows += _split_rows(results["split"])
    if "split_messages" in results:
        figures = results["split_messages"]
        rows.append(_unrelated_row(figures["members"], figures["unrelated_messages"]))
    if "console_poll" in results:
        rows += _console_poll_rows(results["console_poll"])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    m = results.get("machine", {})
    lines.append("")
    lines.append(
        f"{m.get('cpu_count')} CPUs, {m.get('memory_gib')} GiB, Python {m.get('python')}, "
        f"Synapse {m.get('synapse')}, {m.get('database_engine')} "
        f"{m.get('database_version')}, event cache {m.get('event_cache_size')} "
        f"x {m.get('cache_global_factor')} = {m.get('event_cache_entries')} events; "
        f"{results.get('elapsed_seconds', '?')}s"
    )
    return "\n".join(line.rstrip() for line in lines)
