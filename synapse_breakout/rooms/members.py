"""Reading many users' member events of one room, in pieces.

Synapse turns each wanted ``(type, state_key)`` pair of ``get_room_state``
into one ``OR``-ed SQL term. SQLite refuses a statement whose expression tree
is deeper than 1,000: reading 2,000 users' memberships at once failed with
"Expression tree is too large" on Synapse 1.141 (a 500 for the caller). So
every read of a list of users goes through here, ``CHUNK`` users at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

from synapse.module_api import EventBase, ModuleApi, StateMap

#: Users per read: far below SQLite's depth limit, few round trips.
CHUNK = 250


async def member_events(
    api: ModuleApi, room_id: str, users: Iterable[str]
) -> StateMap[EventBase]:
    """The current ``m.room.member`` events of ``users`` in ``room_id``
    (users with none are absent)."""
    wanted = sorted(set(users))
    found: dict[tuple[str, str], EventBase] = {}
    for i in range(0, len(wanted), CHUNK):
        found.update(
            await api.get_room_state(
                room_id, [("m.room.member", user) for user in wanted[i : i + CHUNK]]
            )
        )
    return found
