"""The wire model: the values that cross files (the start request, a created
child room) and the JSON bodies the admin API answers with (docs/admin_api.md).

Types only, no I/O: the operations build these, the HTTP layer serves them,
the journal keeps them.
"""

from __future__ import annotations

import enum
from typing import TypedDict

import attrs

from synapse_breakout.matrix.errors import ErrorJson


class PlacementMode(enum.StrEnum):
    """How a start places the listed users in their child rooms (``move``)."""

    INVITE = "invite"
    SUGGEST = "suggest"  # listed in the event only
    JOIN = "join"  # local users are joined, remote ones invited
    CHOOSE = "choose"  # nobody assigned: members choose their room


class JoinRule(enum.StrEnum):
    """The join rule a start gives its child rooms (``join_rule``)."""

    RESTRICTED = "restricted"  # members of the parent may join
    INVITE = "invite"
    PUBLIC = "public"


@attrs.frozen
class ChildSpec:
    """A child room asked for in a start request."""

    name: str
    topic: str | None = None
    users: tuple[str, ...] = ()


@attrs.frozen
class AutoAssign:
    """``auto_assign``: spread users over rooms named "Room N": ``rooms`` of
    them, or as many as ``room_size`` users a room needs (exactly one is set)."""

    rooms: int | None
    #: The users to spread; None: the parent's joined members below the
    #: configured power level, but the acting user.
    users: tuple[str, ...] | None = None
    room_size: int | None = None


@attrs.frozen
class StartRequest:
    """A validated ``POST /rooms/{parentRoomId}`` body (http/start_request.py):
    either ``rooms`` or ``auto_assign``."""

    rooms: tuple[ChildSpec, ...] | None = None
    auto_assign: AutoAssign | None = None
    join_rule: JoinRule = JoinRule.RESTRICTED
    placement: PlacementMode = PlacementMode.INVITE
    acting_user: str | None = None
    duration_seconds: int | None = None
    replace: bool = False
    txn_id: str | None = None
    #: False: answer 202 with the operation's ID once it is journalled.
    wait: bool = True
    #: The rooms come from a plan (``plan``): planned users no longer in the
    #: parent are left out and reported, not a 400.
    from_plan: bool = False
    #: How many joined members each room takes (the parent's moderators not
    #: counted); None: no limit.
    room_capacity: int | None = None


class FailedRoom(ErrorJson):
    room_id: str


class FailedUser(ErrorJson):
    user_id: str


class ChildRoomJson(TypedDict):
    room_id: str
    name: str | None
    users: list[str]
    via: list[str]


@attrs.frozen
class CreatedRoom:
    """A child room an operation made (or, rolled forward, found)."""

    room_id: str
    name: str | None
    users: tuple[str, ...]
    via: tuple[str, ...]

    def to_json(self) -> ChildRoomJson:
        return {
            "room_id": self.room_id,
            "name": self.name,
            "users": list(self.users),
            "via": list(self.via),
        }


class StartAnswer(TypedDict):
    """``POST /rooms/{parentRoomId}``."""

    room_id: str
    event_id: str
    rooms: list[ChildRoomJson]
    ends_at: int | None
    failed_users: list[FailedUser]


class DescribedRoom(TypedDict):
    room_id: str
    name: str | None
    via: list[str]
    users: list[str]
    joined_members: int | None
    #: Whether the break-out made (owns) this room; others are never touched.
    managed: bool
    #: The start's ``room_capacity`` (None: none, or not an own room).
    capacity: int | None
    #: The joined members that count against a capacity (the parent's
    #: moderators do not); None for a room not owned or not known here.
    counted_members: int | None


class DescribeAnswer(TypedDict):
    """``GET /rooms/{parentRoomId}``."""

    active: bool
    event_id: str | None
    sender: str | None
    started_at: int | None
    ends_at: int | None
    rooms: list[DescribedRoom]
    #: An unfinished start on this parent, or None.
    operation: OperationAnswer | None


class ProgressJson(TypedDict):
    """How far a start got (``GET /operations/{operationId}``)."""

    rooms_created: int
    rooms_total: int
    users_placed: int
    users_total: int
    failed_users: int


class OperationAnswer(TypedDict):
    """``GET /operations/{operationId}``: state ``pending``, ``committed`` or
    ``rolled_back``; ``response`` once committed and placed, ``error`` once
    rolled back."""

    operation_id: str
    parent_room_id: str
    state: str
    progress: ProgressJson
    response: StartAnswer | None
    error: ErrorJson | None


class EndAnswer(TypedDict):
    """``DELETE /rooms/{parentRoomId}``."""

    event_id: str
    rooms: list[str]
    failed_rooms: list[FailedRoom]


class BroadcastAnswer(TypedDict):
    """``POST /rooms/{parentRoomId}/broadcast``."""

    event_ids: dict[str, str]
    failed_rooms: list[FailedRoom]


# "from" is a keyword: the functional form.
ReassignAnswer = TypedDict(
    "ReassignAnswer",
    {
        "event_id": str,
        "user_id": str,
        "from": list[str],
        "to": str | None,
        "failed": list[FailedRoom],
    },
)
ReassignAnswer.__doc__ = "``POST /rooms/{parentRoomId}/move``."


#: The synthetic plan: the last break-out of a parent, read-only.
LAST_PLAN = "last"


class PlanJson(TypedDict, total=False):
    """A plan as the API shows it: ``plan_id``, ``name`` and the start
    request's fields it fixes (``rooms`` or ``auto_assign``, ``join_rule``,
    ``move``, ``duration_seconds``...), and when it was last stored."""

    plan_id: str
    name: str
    updated_at: int
    #: Its users who are neither joined to nor invited into the parent now
    #: (``PUT`` and ``GET`` of one plan).
    not_in_room: list[str]


class PlansAnswer(TypedDict):
    """``GET /rooms/{parentRoomId}/plans``: newest first, ``last`` first."""

    plans: list[PlanJson]


class DeadlineAnswer(TypedDict):
    """``POST /rooms/{parentRoomId}/deadline``."""

    ends_at: int | None


class HelpAnswer(TypedDict):
    """``POST /rooms/{parentRoomId}/help``: the ``help`` notice, if it was sent."""

    event_id: str | None


@attrs.frozen
class DeadlineChange:
    """A validated ``POST .../deadline`` body: a new deadline (``ends_at``;
    None: no deadline) or ``add_seconds`` (may be negative)."""

    ends_at: int | None = None
    add_seconds: int | None = None

    def apply(self, current: int | None, now: int) -> int | None:
        """The new deadline, given the current one and the time now."""
        if self.add_seconds is None:
            return self.ends_at
        return (current if current is not None else now) + self.add_seconds * 1000
