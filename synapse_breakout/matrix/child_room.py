"""The child-room template: what a start's child rooms are made of.

The one home of it (docs/admin_api.md, "acting_user"): the parent state a child
copies (:data:`COPIED_STATE`), the power levels it copies
(:func:`child_power_levels`), the parent's call re-created with the child's
own identifiers (calls.py), its room version, its join rule, and the marker in
its create event that names the operation that made it
(:data:`CREATION_MARKER`, read back by recovery and by GET's room order).
:meth:`ChildRoomTemplate.request` builds one child's ``createRoom`` body;
:meth:`ChildRoomTemplate.after_creation` what a child gets once it exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from synapse.module_api import EventBase, StateMap

from synapse_breakout import synapse_adapter
from synapse_breakout.matrix.calls import (
    NO_CALLS,
    ParentCalls,
    child_call_state,
    child_call_state_with_room_id,
    random_id,
)
from synapse_breakout.matrix.model import ChildSpec, JoinRule
from synapse_breakout.matrix.power import (
    ADMIN_POWER_LEVEL,
    CREATOR_POWER_LEVEL,
    as_int,
    room_version,
    user_power_level,
)
from synapse_breakout.matrix.power import (
    StateMap as AnyStateMap,
)

#: Key of the create-event content that marks a child room as made by an operation.
CREATION_MARKER = "org.matrix.msc3985.breakout_parent"
#: The version of child rooms when the parent's cannot have a "restricted" rule.
DEFAULT_CHILD_VERSION = "12"
#: Parent state a start copies into every child room.
COPIED_STATE = ("m.room.encryption", "m.room.history_visibility", "m.room.guest_access")
#: The power-level fields a child room copies from its parent.
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


def child_room_version(parent_version: str) -> str:
    """The version of a child room: its parent's, if it allows "restricted"
    (a version unknown here, or older, gives :data:`DEFAULT_CHILD_VERSION`)."""
    if synapse_adapter.allows_restricted_join_rule(parent_version):
        return parent_version
    return DEFAULT_CHILD_VERSION


def child_power_levels(
    state: AnyStateMap,
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
            override[field] = as_int(content[field], 0)
    for field in COPIED_LEVEL_MAPS:
        levels = content.get(field)
        if isinstance(levels, Mapping):
            override[field] = {
                str(key): as_int(value, ADMIN_POWER_LEVEL)
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


def creation_marker(
    create_content: Mapping[str, Any],
) -> tuple[str, int | None] | None:
    """(operation ID, index in its plan or None) of the marker in a create
    event's content; None for a room no operation marked."""
    marker = create_content.get(CREATION_MARKER)
    if not isinstance(marker, Mapping):
        return None
    op_id, index = marker.get("operation"), marker.get("index")
    if not isinstance(op_id, str):
        return None
    return op_id, index if isinstance(index, int) else None


@attrs.frozen
class ChildRoomTemplate:
    """The ``createRoom`` body every child of one start shares, read once
    from the parent's state."""

    parent: str
    body: Mapping[str, Any]
    #: The parent's call, which every child re-creates with its own IDs.
    calls: ParentCalls = NO_CALLS
    #: Random identifiers of the length asked (calls.py).
    new_id: Callable[[int], str] = random_id

    @property
    def encrypted(self) -> bool:
        """Whether the children are encrypted (they copy the parent's setting)."""
        return any(e["type"] == "m.room.encryption" for e in self.body["initial_state"])

    @classmethod
    def from_parent(
        cls,
        parent: str,
        state: StateMap[EventBase],
        acting: str,
        join_rule: JoinRule,
        keeps_level: Callable[[str], bool],
        calls: ParentCalls = NO_CALLS,
    ) -> ChildRoomTemplate:
        """The template of ``parent``'s children, made by ``acting``.

        Args:
            keeps_level: the parent's members who keep their power level in
                every child (its moderators).
            calls: the parent's call state (calls.py).
        """
        version = child_room_version(room_version(state))
        initial_state: list[dict[str, Any]] = []
        for event_type in COPIED_STATE:
            event = state.get((event_type, ""))
            if event is not None:
                initial_state.append(
                    {
                        "type": event_type,
                        "state_key": "",
                        "content": dict(event.content),
                    }
                )
        rule: dict[str, Any] = {"join_rule": join_rule.value}
        if join_rule is JoinRule.RESTRICTED:
            rule["allow"] = [{"type": "m.room_membership", "room_id": parent}]
        initial_state.append(
            {"type": "m.room.join_rules", "state_key": "", "content": rule}
        )
        body: dict[str, Any] = {
            "preset": "public_chat" if join_rule is JoinRule.PUBLIC else "private_chat",
            "visibility": "private",
            "room_version": version,
            "initial_state": initial_state,
        }
        levels = child_power_levels(state, acting, version, keeps_level)
        if levels:
            body["power_level_content_override"] = levels
        return cls(parent, body, calls)

    def request(self, op_id: str, index: int, spec: ChildSpec) -> dict[str, Any]:
        """One child's ``createRoom`` body: the template, its name and topic,
        and the marker naming the operation that makes it."""
        config = dict(self.body)
        config["initial_state"] = [
            *self.body["initial_state"],
            *child_call_state(self.calls, self.encrypted, spec.name, self.new_id),
        ]
        config["name"] = spec.name
        if spec.topic:
            config["topic"] = spec.topic
        # The index keeps siblings' create events (and so version 12 room IDs,
        # their hashes) distinct even within one millisecond.
        config["creation_content"] = {
            CREATION_MARKER: {
                "room_id": self.parent,
                "operation": op_id,
                "index": index,
            }
        }
        return config

    def after_creation(self, room_id: str, name: str | None) -> list[dict[str, Any]]:
        """The state events a child gets once it exists (``type``,
        ``state_key``, ``content``): the part of its call named after its room
        ID."""
        return child_call_state_with_room_id(self.calls, room_id, name, self.new_id)
