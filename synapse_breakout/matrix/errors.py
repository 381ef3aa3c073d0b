"""The error shapes the module answers with: one home each.

- :func:`error_json`: the Matrix envelope ``{"errcode", "error"}`` of a
  ``SynapseError``, as reported for one room or user;
- :class:`BreakoutActiveError`: every 409 (a break-out is active, an
  operation is under way, the break-out changed meanwhile);
- :class:`RoomFullError`: the 403 of a join into a full break-out room.

A 400 naming a request field is ``http.decoding.bad``.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TypedDict

from synapse.module_api.errors import SynapseError

#: The errcode of every 409 of the admin API.
BREAKOUT_ACTIVE = "ORG.MATRIX.MSC3985.BREAKOUT_ACTIVE"
#: The errcode of a join refused by ``room_capacity``.
ROOM_FULL = "ORG.MATRIX.MSC3985.ROOM_FULL"


class ErrorJson(TypedDict):
    """The Matrix error envelope, as reported for one room or user."""

    errcode: str
    error: str


def error_json(e: SynapseError) -> ErrorJson:
    """The ``{"errcode", "error"}`` of ``e``: the one place it is built."""
    return {"errcode": e.errcode, "error": e.msg}


class BreakoutActiveError(SynapseError):
    """409: the parent already has a break-out, or an operation is under way."""

    def __init__(self, msg: str):
        super().__init__(HTTPStatus.CONFLICT, msg, BREAKOUT_ACTIVE)


class RoomFullError(SynapseError):
    """403: a join into a break-out room that has ``room_capacity`` members."""

    def __init__(self, room: str, taken: int, capacity: int):
        super().__init__(
            HTTPStatus.FORBIDDEN, f"{room} is full ({taken} of {capacity})", ROOM_FULL
        )


def under_way(parent: str) -> BreakoutActiveError:
    """The 409 of a parent another operation holds."""
    return BreakoutActiveError(f"another break-out operation on {parent} is under way")


def changed_meanwhile(parent: str) -> BreakoutActiveError:
    """The 409 of a break-out that changed between a call's read and its lock."""
    return BreakoutActiveError(
        f"the break-out in {parent} changed while this call was being handled; "
        "read it again and retry"
    )
