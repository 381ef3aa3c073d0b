"""The body of ``POST /rooms/{parentRoomId}``, field by field: every mistake a
400 naming the field (docs/admin_api.md). What the checked request may do in
the parent is operations/start_checks.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from synapse.module_api.errors import Codes

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.http.decoding import (
    bad,
    check_keys,
    get_bool,
    get_choice,
    get_int,
    get_str,
    get_user_list,
    require_str,
)
from synapse_breakout.matrix.content import is_valid_user_id
from synapse_breakout.matrix.model import (
    AutoAssign,
    ChildSpec,
    JoinRule,
    PlacementMode,
    StartRequest,
)

#: The longest ``duration_seconds``: a week.
MAX_DURATION_SECONDS = 7 * 24 * 3600
#: The fields a plan fixes (docs/admin_api.md, "Plans"), besides its name.
PLAN_FIELDS = (
    "rooms",
    "auto_assign",
    "join_rule",
    "move",
    "duration_seconds",
    "room_capacity",
)
#: The fields of a start request.
START_FIELDS = (
    *PLAN_FIELDS,
    "acting_user",
    "replace",
    "txn_id",
    "wait",
    "plan",
)
#: A plan's ID: 1 to 64 of these.
PLAN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_rooms(raw_rooms: Any, limit: int) -> tuple[ChildSpec, ...]:
    """``rooms``: 1 to ``limit`` rooms, each with a name; nobody twice."""
    if not isinstance(raw_rooms, list) or not 1 <= len(raw_rooms) <= limit:
        raise bad("rooms", f"must be a list of 1 to {limit} rooms")
    specs = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rooms):
        where = f"rooms[{i}]."
        if not isinstance(raw, dict):
            raise bad(f"rooms[{i}]", "must be an object with a name")
        check_keys(raw, ("name", "topic", "users"), where)
        users = get_user_list(raw.get("users", []), f"rooms[{i}].users")
        twice = seen.intersection(users)
        if twice:
            raise bad(f"rooms[{i}].users", f"{sorted(twice)[0]} is in another room too")
        seen.update(users)
        name = require_str(raw, "name", where=where)
        specs.append(
            ChildSpec(
                name=name,
                topic=get_str(raw, "topic", max_length=1000, where=where),
                users=users,
            )
        )
    return tuple(specs)


def parse_auto_assign(auto: Any, config: BreakoutConfig) -> AutoAssign:
    """``auto_assign``: ``rooms`` or ``room_size``, and ``users``."""
    if not isinstance(auto, dict):
        raise bad(
            "auto_assign",
            'must be an object {"rooms": N, "users": "joined" or [...]}',
        )
    check_keys(auto, ("rooms", "room_size", "users"), "auto_assign.")
    rooms = get_int(auto, "rooms", 1, config.max_child_rooms, "auto_assign.")
    size = get_int(auto, "room_size", 1, config.max_users_per_room, "auto_assign.")
    if (rooms is None) == (size is None):
        raise bad(
            "auto_assign.rooms",
            "give either auto_assign.rooms or auto_assign.room_size",
            Codes.MISSING_PARAM,
        )
    raw_users = auto.get("users", "joined")
    return AutoAssign(
        rooms=rooms,
        room_size=size,
        users=None
        if raw_users == "joined"
        else get_user_list(raw_users, "auto_assign.users"),
    )


def parse_plan_id(value: Any, field: str = "planId") -> str:
    """A plan's ID: 1 to 64 letters, digits, ``.``, ``_`` or ``-``."""
    if not isinstance(value, str) or not PLAN_ID.fullmatch(value):
        raise bad(field, f"{value!r} is not a plan ID (1 to 64 of A-Z a-z 0-9 . _ -)")
    return value


def parse_plan_body(
    body: Mapping[str, Any], config: BreakoutConfig
) -> tuple[str, StartRequest, dict[str, Any]]:
    """Check a ``PUT .../plans/{planId}`` body field by field, as a start's:
    its name, the request it would start, and the fields to store."""
    check_keys(body, ("name", *PLAN_FIELDS))
    name = require_str(body, "name")
    fields = {key: value for key, value in body.items() if key != "name"}
    return name, parse_start_request(fields, config), fields


def parse_start_request(
    body: Mapping[str, Any], config: BreakoutConfig
) -> StartRequest:
    """Check a ``POST /rooms/{parentRoomId}`` body field by field (with
    ``plan``, the body merged with the plan's fields already)."""
    check_keys(body, START_FIELDS)
    if ("rooms" in body) == ("auto_assign" in body):
        raise bad("rooms", "give either rooms or auto_assign", Codes.MISSING_PARAM)
    rooms = (
        parse_rooms(body["rooms"], config.max_child_rooms) if "rooms" in body else None
    )
    auto_assign = (
        parse_auto_assign(body["auto_assign"], config)
        if "auto_assign" in body
        else None
    )
    acting_user = get_str(body, "acting_user")
    if acting_user is not None and not is_valid_user_id(acting_user):
        raise bad("acting_user", f"{acting_user!r} is not a valid user ID")
    placement = get_choice(body, "move", PlacementMode)
    if placement is PlacementMode.CHOOSE:
        for i, spec in enumerate(rooms or ()):
            if spec.users:
                raise bad(
                    f"rooms[{i}].users",
                    "move: choose assigns nobody (members choose their room): "
                    "leave users out",
                )
    return StartRequest(
        rooms=rooms,
        auto_assign=auto_assign,
        join_rule=get_choice(body, "join_rule", JoinRule),
        placement=placement,
        acting_user=acting_user,
        duration_seconds=get_int(body, "duration_seconds", 1, MAX_DURATION_SECONDS),
        replace=get_bool(body, "replace", False),
        txn_id=get_str(body, "txn_id"),
        wait=get_bool(body, "wait", True),
        from_plan="plan" in body,
        room_capacity=get_int(body, "room_capacity", 1, config.max_users_per_room),
    )
