"""``background``: what the module's periodic work costs in large rooms.

Not a budget of SPEC section 8, but part of what the module costs a server:
with ``eject_on_parent_leave`` the instance that runs background tasks
compares, every few seconds, the members of each active break-out's children
with the parent's members. This starts a break-out of 5 rooms (``move:
suggest``) through the admin API in each large room of the run, times one pass
of that comparison with it active and with none active, and ends it.

The pass is the module's own ``loops.eject_leavers``: if a later version
of the module no longer has it, the figure is reported as not available.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from benchmarks.harness import Bench, Config
from benchmarks.start import API_BASE
from benchmarks.stats import Summary, timed

logger = logging.getLogger(__name__)

CHILDREN = 5
PASSES = 3


def tables(bench: Bench, size: int) -> dict[str, Any]:
    """A start of ``CHILDREN`` rooms of two members of the ``size``-member
    room each, listed only (``move: suggest``): a break-out that runs
    without placing anyone."""
    members = [f"@member{size}_{i}:{bench.server_name}" for i in range(2 * CHILDREN)]
    return {
        "rooms": [
            {"name": f"Table {i + 1}", "users": members[2 * i : 2 * i + 2]}
            for i in range(CHILDREN)
        ],
        "move": "suggest",
    }


def _eject_pass(bench: Bench) -> Callable[[], Awaitable[object]] | None:
    loops = getattr(bench.switch.module, "loops", None)
    eject = getattr(loops, "eject_leavers", None)
    return eject if callable(eject) else None


def _interval_seconds() -> float | None:
    try:
        from synapse_breakout.background.loops import EJECTION_INTERVAL_MS
    except ImportError:
        return None
    return float(EJECTION_INTERVAL_MS) / 1000


def run(bench: Bench, token: str, rooms: Mapping[int, str]) -> dict[str, Any] | str:
    """Time ejection passes in the rooms of ``rooms`` with over 100 members."""
    eject = _eject_pass(bench)
    if eject is None:
        return "not available: the module has no loops.eject_leavers"
    bench.switch.set(Config.WITH)
    interval = _interval_seconds()
    out: dict[str, Any] = {"interval_seconds": interval, "rooms": {}}
    for size, room_id in sorted(rooms.items()):
        if size <= 100:
            continue
        path = f"{API_BASE}/rooms/{urllib.parse.quote(room_id, safe='')}"
        body = tables(bench, size)
        started = bench.timer.now()
        channel = bench.request("POST", path, body, token)
        start_seconds = bench.timer.now() - started
        if channel.code != 200:
            return f"not available: starting a break-out answered HTTP {channel.code}"
        active = [timed(lambda: bench.run(eject()), bench.timer) for _ in range(PASSES)]
        channel = bench.request("DELETE", path, {}, token)
        if channel.code != 200:
            return f"not available: ending the break-out answered HTTP {channel.code}"
        idle = [timed(lambda: bench.run(eject()), bench.timer) for _ in range(PASSES)]
        figures: dict[str, Any] = {
            "eject_pass_seconds": Summary.of(active).to_json(4),
            "eject_pass_seconds_none_active": Summary.of(idle).to_json(4),
            "api_start_seconds": round(start_seconds, 3),
        }
        if interval:
            figures["core_share"] = round(Summary.of(active).median / interval, 4)
        out["rooms"][str(size)] = figures
        logger.info("background %d: %s", size, figures)
    return out
