"""Who counts against a break-out room's ``room_capacity`` (docs/rules.md,
"Room capacity"). Pure: over the room's state and its parent's.

The joined members count, wherever they come from; the parent's moderators
(``power_level`` or more in the parent) do not, and are never refused: a host
hops between rooms.
"""

from __future__ import annotations

from synapse_breakout.matrix.power import StateMap, user_power_level


def is_counted(user_id: str, parent_state: StateMap, power_level: int) -> bool:
    """Whether ``user_id`` takes a place: not a moderator of the parent."""
    return user_power_level(user_id, parent_state) < power_level


def counted_members(
    state: StateMap, parent_state: StateMap, power_level: int
) -> frozenset[str]:
    """The joined members of the room with ``state`` who take a place."""
    return frozenset(
        user_id
        for (kind, user_id), event in state.items()
        if kind == "m.room.member"
        and event.content.get("membership") == "join"
        and is_counted(user_id, parent_state, power_level)
    )


def room_label(state: StateMap, room_id: str) -> str:
    """The room's name, or its ID, for a message."""
    event = state.get(("m.room.name", ""))
    name = event.content.get("name") if event is not None else None
    return name if isinstance(name, str) and name else room_id
