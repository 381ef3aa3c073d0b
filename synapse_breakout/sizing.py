"""Auto-assignment's arithmetic: how many rooms, who goes where, and
whether the users fit in the event.

``auto_assign`` gives ``rooms`` or ``room_size``; either way the users are
dealt round-robin, so room sizes differ by at most one (docs/admin_api.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import BreakoutContent
from synapse_breakout.model import AutoAssign, PlacementMode

#: Room for the rest of an event (auth and prev events, hashes, signatures)
#: under Synapse's 65,536-byte limit.
MAX_CONTENT_BYTES = 60_000


def spread(users: Sequence[str], rooms: int) -> list[list[str]]:
    """Deal ``users`` round-robin into ``rooms`` lists: sizes differ by at most one."""
    buckets: list[list[str]] = [[] for _ in range(rooms)]
    for i, user in enumerate(users):
        buckets[i % rooms].append(user)
    return buckets


def room_count(auto: AutoAssign, users: int, config: BreakoutConfig) -> int:
    """How many rooms ``auto_assign`` asks for: ``rooms``, or as many as
    ``room_size`` users a room need (at least one)."""
    if auto.rooms is not None:
        return auto.rooms
    assert auto.room_size is not None
    count = max(1, -(-users // auto.room_size))
    if count > config.max_child_rooms:
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"auto_assign.room_size: {users} users in rooms of {auto.room_size} "
            f"need {count} rooms; at most {config.max_child_rooms} are allowed",
            Codes.INVALID_PARAM,
        )
    return count


def fitting(content: BreakoutContent, mode: PlacementMode) -> dict[str, Any]:
    """The event content; for ``invite`` and ``join``, without the ``users``
    lists when they would push the event over Synapse's size limit (the
    journal and the invitations carry the assignment).

    A stand-in for the event-size rule of docs/admin_api.md, which checks
    this before the first room (another branch).
    """
    full = content.to_json()
    size = len(json.dumps(full, separators=(",", ":")).encode())
    if size <= MAX_CONTENT_BYTES or mode is PlacementMode.SUGGEST:
        return full
    return attrs.evolve(
        content,
        children=tuple(attrs.evolve(c, users=()) for c in content.children),
    ).to_json()
