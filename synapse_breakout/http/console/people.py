"""The people a host's console shows, at any size: a page of a room's members
(or those matching a search), and who is in the main room while a break-out
runs. Never a 10,000-member room's whole member list (docs/console.md).
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi

from synapse_breakout import synapse_adapter
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.matrix.power import StateMap, user_power_level
from synapse_breakout.rooms.members import member_events

#: Members a page shows at most.
PAGE = 100
#: People of the main room a running break-out's view shows at most.
MAIN_ROOM_SHOWN = 200


def person(
    user_id: str, membership: str | None, name: Any, state: StateMap
) -> dict[str, Any]:
    """One person as the console shows them."""
    return {
        "user_id": user_id,
        "display_name": name if isinstance(name, str) and name else None,
        "membership": membership,
        "power_level": user_power_level(user_id, state),
    }


class People:
    """Pages of members, and the main room's people."""

    def __init__(self, api: ModuleApi, tables: SynapseTables):
        self._api = api
        self._tables = tables

    async def page(
        self,
        room_id: str,
        state: StateMap,
        after: str = "",
        search: str = "",
        limit: int = PAGE,
    ) -> dict[str, Any]:
        """``{"members", "members_total", "members_next"}``: the joined and
        invited members by user ID after ``after``, whose ID or display name
        contains ``search``; ``members_next`` goes on from the last one."""
        total, rows = await self._tables.member_page(room_id, after, search, limit + 1)
        shown = rows[:limit]
        return {
            "members": [person(u, m, name, state) for u, m, name in shown],
            "members_total": total,
            "members_next": shown[-1][0] if len(rows) > limit else None,
        }

    async def main_room(
        self, parent: str, state: StateMap, placed: set[str], hosts: set[str]
    ) -> dict[str, Any]:
        """``{"main_room", "main_room_total"}``: the parent's joined members in
        no break-out room (by ID, the first ``MAIN_ROOM_SHOWN``, with their
        names) and how many there are."""
        joined = await synapse_adapter.joined_users(self._api, parent)
        left = sorted(joined - placed - hosts)
        shown = left[:MAIN_ROOM_SHOWN]
        events = await member_events(self._api, parent, shown)
        return {
            "main_room": [
                person(
                    user,
                    "join",
                    events[("m.room.member", user)].content.get("displayname")
                    if ("m.room.member", user) in events
                    else None,
                    state,
                )
                for user in shown
            ],
            "main_room_total": len(left),
        }
