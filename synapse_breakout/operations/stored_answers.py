"""A start's stored answer: what a repeated ``txn_id`` gets back, and the
answers of a start that failed or was rolled back (docs/admin_api.md,
"Idempotent")."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, cast

from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.journal.rows import Operation, OperationState
from synapse_breakout.matrix.errors import BreakoutActiveError, error_json
from synapse_breakout.matrix.model import StartAnswer

#: The answer of a start whose process was taken for dead (its lease expired)
#: and rolled back by recovery while its event was being sent.
ROLLED_BACK_MEANWHILE = SynapseError(
    HTTPStatus.INTERNAL_SERVER_ERROR,
    "the operation was taken for dead and rolled back while its break-out "
    "event was being sent; that event was withdrawn",
    Codes.UNKNOWN,
)
#: The answer of a start a crash left unfinished, rolled back by recovery.
CRASHED = SynapseError(
    HTTPStatus.INTERNAL_SERVER_ERROR,
    "the homeserver stopped during the operation; it was rolled back",
    Codes.UNKNOWN,
)
#: The answer of a start that failed on an unexpected error, rolled back.
FAILED = SynapseError(
    HTTPStatus.INTERNAL_SERVER_ERROR,
    "starting the break-out failed and was rolled back; the server's log has the cause",
    Codes.UNKNOWN,
)


def failure(e: SynapseError) -> dict[str, Any]:
    """The stored answer of a failed operation, replayed for its txn_id."""
    return {"status": e.code, **error_json(e)}


def check_same_parent(earlier: Operation, parent: str) -> None:
    """A txn_id names one start on one parent: reused elsewhere, it is a 400
    (whether the caller waits or not)."""
    if earlier.parent_room_id != parent:
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"txn_id: {earlier.txn_id!r} was already used for a break-out in "
            f"{earlier.parent_room_id}",
            Codes.INVALID_PARAM,
        )


def replay(earlier: Operation, parent: str) -> StartAnswer:
    """The first answer of an operation repeated with the same txn_id."""
    check_same_parent(earlier, parent)
    if earlier.state == OperationState.PENDING or earlier.response is None:
        raise BreakoutActiveError(
            f"the operation with txn_id {earlier.txn_id!r} is still under way"
        )
    stored = earlier.response
    if stored.get("status") == HTTPStatus.OK:
        return cast(StartAnswer, stored["body"])
    raise SynapseError(stored["status"], stored["error"], stored["errcode"])
