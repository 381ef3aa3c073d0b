"""Auto-assignment's arithmetic: how many rooms, and who goes where.

``auto_assign`` gives ``rooms`` or ``room_size``; either way the users are
dealt round-robin, so room sizes differ by at most one (docs/admin_api.md).
Pure; the checks of the plan against the parent are
operations/start_checks.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.matrix.model import AutoAssign, ChildSpec


def spread(users: Sequence[str], rooms: int) -> list[list[str]]:
    """Deal ``users`` round-robin into ``rooms`` lists: sizes differ by at most one."""
    buckets: list[list[str]] = [[] for _ in range(rooms)]
    for i, user in enumerate(users):
        buckets[i % rooms].append(user)
    return buckets


def room_count(auto: AutoAssign, users: int, max_child_rooms: int) -> int:
    """How many rooms ``auto_assign`` asks for: ``rooms``, or as many as
    ``room_size`` users a room need (at least one)."""
    if auto.rooms is not None:
        return auto.rooms
    assert auto.room_size is not None
    count = max(1, -(-users // auto.room_size))
    if count > max_child_rooms:
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"auto_assign.room_size: {users} users in rooms of {auto.room_size} "
            f"need {count} rooms; at most {max_child_rooms} are allowed",
            Codes.INVALID_PARAM,
        )
    return count


def auto_rooms(
    auto: AutoAssign, users: Sequence[str], max_child_rooms: int
) -> tuple[ChildSpec, ...]:
    """``users`` spread over rooms named "Room 1", "Room 2"..."""
    return tuple(
        ChildSpec(name=f"Room {i + 1}", users=tuple(bucket))
        for i, bucket in enumerate(
            spread(users, room_count(auto, len(users), max_child_rooms))
        )
    )
