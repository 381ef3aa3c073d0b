"""Power levels, creators, join rules and memberships read from a room's state.

The one home of every such rule (see docs/rules.md). Pure functions over a
state map ``{(type, state_key): event}`` such as the one Synapse hands to
third-party rules callbacks (the state before the event). They
follow the Matrix authorization rules: ``users``, then ``users_default``; no
power-levels event means the creator has 100 and everyone else 0; from room
version 12 (MSC4289) the room's creators outrank everyone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from synapse_breakout import synapse_adapter
from synapse_breakout.content import is_json_array

#: The level of a room version 12 creator (Synapse's CREATOR_POWER_LEVEL).
CREATOR_POWER_LEVEL = 2**53
#: The join rule of a room without a join-rules event.
DEFAULT_JOIN_RULE = "invite"
#: The power-level fields a child room copies from its parent (docs/admin_api.md).
COPIED_LEVELS = (
    "events_default",
    "state_default",
    "users_default",
    "invite",
    "kick",
    "ban",
    "redact",
)
#: The power-level maps a child room copies from its parent.
COPIED_LEVEL_MAPS = ("events", "notifications")
#: The level of a room's administrators.
ADMIN_POWER_LEVEL = 100
#: Memberships that count as "in the room" for break-out users.
#: The memberships that count as in a room (:func:`in_room`).
IN_ROOM = ("join", "invite")


class StateEvent(Protocol):
    @property
    def sender(self) -> str: ...
    @property
    def content(self) -> Mapping[str, Any]: ...


StateMap = Mapping[tuple[str, str], StateEvent]


def _as_int(value: Any, default: int) -> int:
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
        return _as_int(users[user_id], 0)
    return _as_int(power_levels.content.get("users_default"), 0)


def required_level_to_send(event_type: str, state: StateMap) -> int:
    """The level the room's own power levels need to send this state event."""
    power_levels = state.get(("m.room.power_levels", ""))
    if power_levels is None:
        return 0
    events = power_levels.content.get("events")
    if isinstance(events, Mapping) and event_type in events:
        return _as_int(events[event_type], 50)
    return _as_int(power_levels.content.get("state_default"), 50)


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


def child_power_levels(
    state: StateMap,
    acting: str,
    child_version: str,
    keeps_level: Callable[[str], bool],
) -> dict[str, Any]:
    """The ``power_level_content_override`` of a child room of ``state``'s room.

    The parent's rules (``COPIED_LEVELS`` and ``COPIED_LEVEL_MAPS``) are
    copied, so members may do in the child what they may do in the parent
    (start a call, add a widget, post). The members for whom ``keeps_level``
    is true keep their level (a version 12 creator gets the administrators'
    level). The acting user creates the room: in version 12 a creator
    outranks everyone and may not be listed; before, they get at least the
    administrators' level and every level the copied rules ask for.
    """
    override: dict[str, Any] = {}
    power_levels = state.get(("m.room.power_levels", ""))
    content = power_levels.content if power_levels is not None else {}
    for field in COPIED_LEVELS:
        if field in content:
            override[field] = _as_int(content[field], 0)
    for field in COPIED_LEVEL_MAPS:
        levels = content.get(field)
        if isinstance(levels, Mapping):
            override[field] = {
                str(key): _as_int(value, ADMIN_POWER_LEVEL)
                for key, value in levels.items()
            }
    users: dict[str, int] = {}
    for kind, user in state:
        if kind == "m.room.member" and keeps_level(user):
            level = user_power_level(user, state)
            users[user] = ADMIN_POWER_LEVEL if level >= CREATOR_POWER_LEVEL else level
    if synapse_adapter.creators_outrank_everyone(child_version):
        users.pop(acting, None)
    else:
        needed = [users.get(acting, 0), ADMIN_POWER_LEVEL]
        needed += [v for k, v in override.items() if k in COPIED_LEVELS]
        needed += override.get("events", {}).values()
        users[acting] = max(needed)
    if users:
        override["users"] = users
    return override
