"""``console_poll``: what the console's 3-second poll costs in a large parent.

Every open console asks for its room's view every 3 s. This times one poll
of a host's view of a 10,000-member parent, as server work (calls of the
module's own ``ConsoleView``, no HTTP on any side), three ways in the same
run, round by round:

- ``previous``: the poll as the view answered it before it paged members:
  the parent's whole state (every member event), the break-out, its rooms'
  members, and the member list built from that state. It is reconstructed
  here from the previous release's ``http/console/view.py`` with the module's
  current parts (``ParentRooms.state`` of every member, ``Describer``,
  ``SynapseTables.members_of_rooms``), as that view called them.
- ``full``: today's view, as a first look or after a change (a page of
  members, the main room's people while a break-out runs).
- ``unchanged``: today's view asked again with ``since`` = the ``version`` of
  the last answer, nothing having changed: what nearly every poll is.

Measured with no break-out, and with one of 5 rooms (10 people listed,
``background.tables``) running. The target: an unchanged poll costs at most
1/20 of the previous one.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.background import tables
from benchmarks.harness import Bench, Config
from benchmarks.hot_path import build_rooms
from benchmarks.start import API_BASE
from benchmarks.stats import Summary, interleave, paired_ratios, timed

logger = logging.getLogger(__name__)

SIZE = 10_000
WAYS = ("previous", "full", "unchanged")
#: The ratio unchanged / previous the console must stay under.
TARGET = 1 / 20


def _previous_poll(module: Any, caller: Any, room_id: str) -> Awaitable[str]:
    """The view of a host before members were paged, as JSON text."""
    from synapse_breakout.matrix.power import user_power_level

    async def poll() -> str:
        state = await module.parents.state(room_id)
        breakout = dict(await module.operations.describer.describe(room_id))
        own = [r["room_id"] for r in breakout["rooms"] if r["managed"]]
        members = await module.tables.members_of_rooms(own, ("join", "invite"))
        for child in breakout["rooms"]:
            child["members"] = members.get(child["room_id"], {})
        listed = [
            {
                "user_id": user_id,
                "display_name": event.content.get("displayname"),
                "membership": event.content.get("membership"),
                "power_level": user_power_level(user_id, state),
            }
            for (kind, user_id), event in state.items()
            if kind == "m.room.member"
            and event.content.get("membership") in ("join", "invite")
        ]
        listed.sort(key=lambda m: m["user_id"])
        view = {"room_id": room_id, "members": listed, "breakout": breakout}
        return json.dumps(view, default=str)

    return poll()


def _ways(
    module: Any, view: Any, caller: Any, room_id: str, version: str
) -> dict[str, Callable[[], Awaitable[Any]]]:
    async def today(since: str | None) -> str:
        return json.dumps(await view.room(caller, room_id, since), default=str)

    return {
        "previous": lambda: _previous_poll(module, caller, room_id),
        "full": lambda: today(None),
        "unchanged": lambda: today(version),
    }


def _measure(bench: Bench, room_id: str, rounds: int, caller: Any) -> dict[str, Any]:
    module = bench.switch.module
    view = module.console_view
    version = bench.run(view.room(caller, room_id))["version"]
    ways = _ways(module, view, caller, room_id, version)
    if '"unchanged": true' not in bench.run(ways["unchanged"]()):
        raise RuntimeError("the view changed between two polls of an idle room")
    samples = interleave(
        WAYS, rounds, lambda way, _: timed(lambda: bench.run(ways[way]()), bench.timer)
    )
    figures: dict[str, Any] = {
        f"{way}_seconds": Summary.of(samples[way]).to_json(5) for way in WAYS
    }
    for way in ("unchanged", "full"):
        ratios = paired_ratios(samples[way], samples["previous"])
        figures[f"{way}_vs_previous"] = Summary.of(ratios).to_json(4)
    figures["answer_bytes"] = {
        way: len(bench.run(ways[way]()).encode()) for way in WAYS
    }
    return figures


def run(
    bench: Bench, host: str, token: str, rounds: int, parent: str | None = None
) -> dict[str, Any] | str:
    """Time the three polls in a ``SIZE``-member parent (built unless given)."""
    if getattr(bench.switch.module, "console_view", None) is None:
        return "not available: the module has no console_view"
    from synapse_breakout.http.access import Caller

    bench.switch.set(Config.WITH)
    if parent is None:
        parent = build_rooms(bench, host, (SIZE,))[SIZE]
    caller = Caller(user_id=host, is_admin=True)
    out: dict[str, Any] = {"members": SIZE, "target": TARGET}
    out["idle"] = _measure(bench, parent, rounds, caller)
    logger.info("console_poll idle: %s", out["idle"])
    path = f"{API_BASE}/rooms/{urllib.parse.quote(parent, safe='')}"
    channel = bench.request("POST", path, tables(bench, SIZE), token)
    if channel.code != 200:
        return f"not available: starting a break-out answered HTTP {channel.code}"
    bench.settle()
    out["running"] = _measure(bench, parent, rounds, caller)
    logger.info("console_poll running: %s", out["running"])
    bench.request("DELETE", path, {}, token)
    return out
