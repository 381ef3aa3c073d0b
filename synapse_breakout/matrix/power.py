"""Power levels, creators, join rules and memberships read from a room's state.

The one home of every such rule (see docs/rules.md). Pure functions over a
state map ``{(type, state_key): event}`` such as the one Synapse hands to
third-party rules callbacks (the state before the event). They
follow the Matrix authorization rules: ``users``, then ``users_default``; no
power-levels event means the creator has 100 and everyone else 0; from room
version 12 (MSC4289) the room's creators outrank everyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from synapse_breakout import synapse_adapter
from synapse_breakout.matrix.content import is_json_array

#: The level of a room version 12 creator (Synapse's CREATOR_POWER_LEVEL).
CREATOR_POWER_LEVEL = 2**53
#: The join rule of a room without a join-rules event.
DEFAULT_JOIN_RULE = "invite"
#: The level of a room's administrators.
ADMIN_POWER_LEVEL = 100
#: The memberships that count as in a room (:func:`in_room`).
IN_ROOM = ("join", "invite")


class StateEvent(Protocol):
    @property
    def sender(self) -> str: ...
    @property
    def content(self) -> Mapping[str, Any]: ...


StateMap = Mapping[tuple[str, str], StateEvent]


def as_int(value: Any, default: int) -> int:
    """Power levels may be strings in old room versions."""
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def room_version(state: StateMap) -> str:
    """The room version named in the create event ("1" when it names none)."""
    create = state.get(("m.room.create", ""))
    return str(create.content.get("room_version", "1")) if create else "1"


def named_creators(state: StateMap) -> frozenset[str]:
    """The create event's sender and its ``additional_creators``."""
    create = state.get(("m.room.create", ""))
    if create is None:
        return frozenset()
    creators = {create.sender}
    extra = create.content.get("additional_creators")
    if is_json_array(extra):
        creators.update(u for u in extra if isinstance(u, str))
    return frozenset(creators)


def _creators(state: StateMap) -> tuple[bool, frozenset[str]]:
    """(creators outrank everyone?, the creators) from the create event."""
    create = state.get(("m.room.create", ""))
    if create is None:
        return False, frozenset()
    if synapse_adapter.creators_outrank_everyone(room_version(state)):
        return True, named_creators(state)
    # Before version 11 the creator is named in the content.
    creator = create.content.get("creator", create.sender)
    return False, frozenset({creator if isinstance(creator, str) else create.sender})


def user_power_level(user_id: str, state: StateMap) -> int:
    """The power level of ``user_id`` in the room whose state is ``state``."""
    outrank, creators = _creators(state)
    if outrank and user_id in creators:
        return CREATOR_POWER_LEVEL
    power_levels = state.get(("m.room.power_levels", ""))
    if power_levels is None:
        return 100 if user_id in creators else 0
    users = power_levels.content.get("users")
    if isinstance(users, Mapping) and user_id in users:
        return as_int(users[user_id], 0)
    return as_int(power_levels.content.get("users_default"), 0)


def required_level_to_send(event_type: str, state: StateMap) -> int:
    """The level the room's own power levels need to send this state event."""
    power_levels = state.get(("m.room.power_levels", ""))
    if power_levels is None:
        return 0
    events = power_levels.content.get("events")
    if isinstance(events, Mapping) and event_type in events:
        return as_int(events[event_type], 50)
    return as_int(power_levels.content.get("state_default"), 50)


def may_post(user_id: str, state: StateMap) -> bool:
    """Whether ``user_id``'s power level lets them send ``m.room.message``
    (a muted member's does not)."""
    power_levels = state.get(("m.room.power_levels", ""))
    if power_levels is None:
        return True
    events = power_levels.content.get("events")
    needed = as_int(power_levels.content.get("events_default"), 0)
    if isinstance(events, Mapping) and "m.room.message" in events:
        needed = as_int(events["m.room.message"], 0)
    return user_power_level(user_id, state) >= needed


def may_send_state(user_id: str, event_type: str, state: StateMap) -> bool:
    """Whether ``user_id``'s power level lets them send this state event."""
    return user_power_level(user_id, state) >= required_level_to_send(event_type, state)


def join_rule(state: StateMap) -> str | None:
    """The join rule the room's join-rules event names; None without one."""
    event = state.get(("m.room.join_rules", ""))
    rule = event.content.get("join_rule") if event is not None else None
    return rule if isinstance(rule, str) else None


def effective_join_rule(state: StateMap) -> str:
    """The join rule in force: the event's, or ``invite`` without one."""
    return join_rule(state) or DEFAULT_JOIN_RULE


def membership(user_id: str, state: StateMap) -> str | None:
    event = state.get(("m.room.member", user_id))
    value = event.content.get("membership") if event is not None else None
    return value if isinstance(value, str) else None


def in_room(membership_value: str | None) -> bool:
    """Whether a membership counts as in the room: joined or invited."""
    return membership_value in IN_ROOM


def joined_or_invited(user_id: str, state: StateMap) -> bool:
    """Whether ``user_id`` is joined to or invited into the room."""
    return in_room(membership(user_id, state))


def member_event_in_room(event: StateEvent | None) -> bool:
    """Whether a membership event says joined or invited."""
    return event is not None and in_room(event.content.get("membership"))


def is_moderator(user_id: str, state: StateMap, power_level: int) -> bool:
    """Joined, with at least ``power_level`` (the configured ``power_level``):
    who may run the room's break-outs. The one home of that rule."""
    return (
        membership(user_id, state) == "join"
        and user_power_level(user_id, state) >= power_level
    )


def served_level(level: int) -> int | None:
    """A power level as served: None for a room version 12 creator, whose
    power has no number (and would exceed canonical JSON's integers)."""
    return None if level >= CREATOR_POWER_LEVEL else level
