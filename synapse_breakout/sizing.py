"""A start's plan: its child rooms with their users, and auto-assignment's
arithmetic, how many rooms and who goes where (whether the users fit in the
event is limits.py's ``users_fit``).

``auto_assign`` gives ``rooms`` or ``room_size``; either way the users are
dealt round-robin, so room sizes differ by at most one (docs/admin_api.md).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from http import HTTPStatus

from synapse.module_api import EventBase, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.model import AutoAssign, ChildSpec, StartRequest
from synapse_breakout.power import joined_or_invited, user_power_level


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


def plan_children(
    req: StartRequest,
    state: StateMap[EventBase],
    acting: str,
    config: BreakoutConfig,
    joined: Collection[str] | None = None,
) -> tuple[ChildSpec, ...]:
    """The child rooms with their users, checked against the parent.

    Args:
        joined: the parent's joined members, for ``auto_assign`` of everyone
            joined (``users: "joined"``).
    """
    if req.rooms is not None:
        plan = req.rooms
    else:
        assert req.auto_assign is not None
        if req.auto_assign.users is None:
            assert joined is not None
            users = sorted(
                user
                for user in joined
                if user != acting and user_power_level(user, state) < config.power_level
            )
        else:
            users = list(req.auto_assign.users)
        plan = tuple(
            ChildSpec(name=f"Room {i + 1}", users=tuple(bucket))
            for i, bucket in enumerate(
                spread(users, room_count(req.auto_assign, len(users), config))
            )
        )
    for i, spec in enumerate(plan):
        field = f"rooms[{i}].users" if req.rooms is not None else "auto_assign.users"
        if len(spec.users) > config.max_users_per_room:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"{field}: {len(spec.users)} users for one room; at most "
                f"{config.max_users_per_room} are allowed",
                Codes.INVALID_PARAM,
            )
        if config.users_must_be_members and joined is None:  # else all joined
            for user in spec.users:
                if not joined_or_invited(user, state):
                    raise SynapseError(
                        HTTPStatus.BAD_REQUEST,
                        f"{field}: {user} is not joined to or invited into the "
                        "parent room",
                        Codes.INVALID_PARAM,
                    )
    return plan
