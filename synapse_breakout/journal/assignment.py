"""A start's assignment in the journal: who goes to which room, and how far
placing them got (the ``breakout_op_users`` table, schema.py).

The assignment is written with the operation itself (operations.py, ``begin``), so
it survives a crash before or after the commit: recovery rolls the start back
or forward, and placement goes on from the users still ``planned``. Results
are written in batches (one transaction for many users). GET serves the
assignment from here, whatever the break-out event lists (docs/operations.md).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_breakout.matrix.errors import ErrorJson
from synapse_breakout.matrix.model import FailedUser, ProgressJson


class UserState(enum.StrEnum):
    """Where one assigned user is."""

    PLANNED = "planned"  # to be invited or joined
    LISTED = "listed"  # move: suggest: only listed
    PLACED = "placed"
    FAILED = "failed"


class PlaceDecision(enum.Enum):
    """Whether a pass places one planned user now (``AssignmentStore.decide``)."""

    PLACE = "place"
    MOVED = "moved"  # a move took them to another room, or out: not here
    ENDED = "ended"  # the break-out ended or was replaced: nobody more


@attrs.frozen
class Assigned:
    """One user of a start's plan."""

    room_index: int
    user_id: str


@attrs.frozen
class Outcome:
    """How placing one user went: ``error`` None when placed."""

    room_index: int
    user_id: str
    error: ErrorJson | None


#: The room index of a planned user who is in no room: left out of a start
#: from a plan because they left the parent (a ``failed`` row).
NO_ROOM = -1
#: Why such a user is in ``failed_users``.
LEFT_THE_PARENT: ErrorJson = {
    "errcode": "M_FORBIDDEN",
    "error": "planned, but no longer joined to or invited into the parent room",
}


def insert_plan_txn(
    txn: LoggingTransaction,
    op_id: str,
    rooms: Sequence[Sequence[str]],
    state: UserState,
    left_out: Sequence[str] = (),
) -> None:
    """Journal ``rooms`` (the users of each planned room, in order), and the
    planned users ``left_out`` as failed; called in the transaction that
    journals the operation."""
    rows: list[tuple[object, ...]] = []
    position = 0
    for index, users in enumerate(rooms):
        for user in users:
            rows.append((op_id, index, user, position, state.value, None, None))
            position += 1
    for user in left_out:
        rows.append(
            (
                op_id,
                NO_ROOM,
                user,
                position,
                UserState.FAILED.value,
                LEFT_THE_PARENT["errcode"],
                LEFT_THE_PARENT["error"],
            )
        )
        position += 1
    if rows:
        txn.execute_batch(
            "INSERT INTO breakout_op_users (op_id, room_index, user_id, position,"
            " state, errcode, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def _record_outcomes_txn(
    txn: LoggingTransaction, op_id: str, outcomes: Sequence[Outcome], now: int
) -> None:
    txn.execute_batch(
        "UPDATE breakout_op_users SET state = ?, errcode = ?, error = ?"
        " WHERE op_id = ? AND room_index = ? AND user_id = ?",
        [
            (
                UserState.PLACED.value if o.error is None else UserState.FAILED.value,
                o.error["errcode"] if o.error else None,
                o.error["error"] if o.error else None,
                op_id,
                o.room_index,
                o.user_id,
            )
            for o in outcomes
        ],
    )
    # When the operation last changed (retention reads it; liveness is the
    # lease counter's alone: ownership.py).
    txn.execute(
        "UPDATE breakout_operations SET updated_ts = ? WHERE op_id = ?", (now, op_id)
    )


def _planned_txn(txn: LoggingTransaction, op_id: str) -> list[Assigned]:
    txn.execute(
        "SELECT room_index, user_id FROM breakout_op_users"
        " WHERE op_id = ? AND state = ? ORDER BY position",
        (op_id, UserState.PLANNED.value),
    )
    return [Assigned(row[0], row[1]) for row in txn]


def _fail_planned_txn(txn: LoggingTransaction, op_id: str, error: ErrorJson) -> int:
    txn.execute(
        "UPDATE breakout_op_users SET state = ?, errcode = ?, error = ?"
        " WHERE op_id = ? AND state = ?",
        (
            UserState.FAILED.value,
            error["errcode"],
            error["error"],
            op_id,
            UserState.PLANNED.value,
        ),
    )
    return txn.rowcount


def _failed_txn(txn: LoggingTransaction, op_id: str) -> list[FailedUser]:
    txn.execute(
        "SELECT user_id, errcode, error FROM breakout_op_users"
        " WHERE op_id = ? AND state = ? ORDER BY position",
        (op_id, UserState.FAILED.value),
    )
    return [{"user_id": row[0], "errcode": row[1], "error": row[2]} for row in txn]


def _assignment_txn(txn: LoggingTransaction, op_id: str) -> dict[str, list[str]]:
    txn.execute(
        "SELECT r.room_id, u.user_id FROM breakout_op_users u"
        " JOIN breakout_op_rooms r ON r.op_id = u.op_id AND r.room_index = u.room_index"
        " WHERE u.op_id = ? ORDER BY u.position",
        (op_id,),
    )
    rooms: dict[str, list[str]] = {}
    for room_id, user_id in txn:
        rooms.setdefault(room_id, []).append(user_id)
    return rooms


def _progress_txn(
    txn: LoggingTransaction, op_id: str, rooms_total: int
) -> ProgressJson:
    txn.execute("SELECT COUNT(*) FROM breakout_op_rooms WHERE op_id = ?", (op_id,))
    row = txn.fetchone()
    created = int(row[0]) if row else 0
    txn.execute(
        "SELECT state, COUNT(*) FROM breakout_op_users WHERE op_id = ? GROUP BY state",
        (op_id,),
    )
    counts = {state: int(n) for state, n in txn}
    placed = counts.get(UserState.PLACED.value, 0)
    failed = counts.get(UserState.FAILED.value, 0)
    return {
        "rooms_created": created,
        "rooms_total": rooms_total,
        "users_placed": placed,
        "users_total": placed + failed + counts.get(UserState.PLANNED.value, 0),
        "failed_users": failed,
    }


def _unfinished_start_txn(txn: LoggingTransaction, parent: str) -> str | None:
    """The newest start on ``parent`` not yet committed, or committed with
    users still to place."""
    txn.execute(
        "SELECT op_id FROM breakout_operations o"
        " WHERE parent_room_id = ? AND kind = 'start' AND (state = 'pending'"
        " OR (state = 'committed' AND EXISTS (SELECT 1 FROM breakout_op_users u"
        " WHERE u.op_id = o.op_id AND u.state = ?)))"
        " ORDER BY created_ts DESC LIMIT 1",
        (parent, UserState.PLANNED.value),
    )
    row = txn.fetchone()
    return row[0] if row else None


def _unplaced_txn(txn: LoggingTransaction) -> list[str]:
    """Running break-outs whose start still has users to place."""
    txn.execute(
        "SELECT a.op_id FROM breakout_active a WHERE EXISTS (SELECT 1"
        " FROM breakout_op_users u WHERE u.op_id = a.op_id AND u.state = ?)",
        (UserState.PLANNED.value,),
    )
    return [row[0] for row in txn]


def _decide_txn(
    txn: LoggingTransaction, op_id: str, parent: str, room_index: int, user_id: str
) -> PlaceDecision:
    """Just before placing ``user_id`` in room ``room_index`` of ``op_id``:
    whether that is still what the journal says."""
    txn.execute("SELECT op_id FROM breakout_active WHERE parent_room_id = ?", (parent,))
    row = txn.fetchone()
    if row is None or row[0] != op_id:
        return PlaceDecision.ENDED
    txn.execute(
        "SELECT 1 FROM breakout_op_users WHERE op_id = ? AND user_id = ?"
        " AND room_index = ? AND state = ?",
        (op_id, user_id, room_index, UserState.PLANNED.value),
    )
    return PlaceDecision.PLACE if txn.fetchone() else PlaceDecision.MOVED


def _move_user_txn(
    txn: LoggingTransaction, op_id: str, user_id: str, room_index: int | None
) -> None:
    if room_index is None:
        txn.execute(
            "DELETE FROM breakout_op_users WHERE op_id = ? AND user_id = ?",
            (op_id, user_id),
        )
        return
    # The move places them itself (operations/move.py): one still planned is
    # placed now, and a pass under way leaves them alone (``_decide_txn``).
    txn.execute(
        "UPDATE breakout_op_users SET room_index = ?, state = CASE WHEN state = ?"
        " THEN ? ELSE state END WHERE op_id = ? AND user_id = ?",
        (
            room_index,
            UserState.PLANNED.value,
            UserState.PLACED.value,
            op_id,
            user_id,
        ),
    )
    if txn.rowcount == 0:
        txn.execute(
            "INSERT INTO breakout_op_users (op_id, room_index, user_id, position,"
            " state) SELECT ?, ?, ?, COALESCE(MAX(position), -1) + 1, ?"
            " FROM breakout_op_users WHERE op_id = ?",
            (op_id, room_index, user_id, UserState.PLACED.value, op_id),
        )


def _room_ids_txn(txn: LoggingTransaction, op_id: str) -> dict[int, str]:
    txn.execute(
        "SELECT room_index, room_id FROM breakout_op_rooms"
        " WHERE op_id = ? AND room_index IS NOT NULL",
        (op_id,),
    )
    return {row[0]: row[1] for row in txn}


def _room_index_txn(txn: LoggingTransaction, op_id: str, room_id: str) -> int | None:
    txn.execute(
        "SELECT room_index FROM breakout_op_rooms WHERE op_id = ? AND room_id = ?",
        (op_id, room_id),
    )
    row = txn.fetchone()
    return row[0] if row else None


class AssignmentStore:
    """Reads and writes of ``breakout_op_users``."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def record(self, op_id: str, outcomes: Sequence[Outcome]) -> None:
        """Write a batch of placement results in one transaction."""
        if outcomes:
            await self._api.run_db_interaction(
                "breakout_record_placements",
                _record_outcomes_txn,
                op_id,
                outcomes,
                self._api.get_current_time_msec(),
            )

    async def insert_plan(
        self, op_id: str, rooms: Sequence[Sequence[str]], state: UserState
    ) -> None:
        """Journal a plan after the fact (an operation journalled without)."""
        await self._api.run_db_interaction(
            "breakout_insert_plan", insert_plan_txn, op_id, rooms, state
        )

    async def room_ids(self, op_id: str) -> dict[int, str]:
        """The rooms ``op_id`` created, by their index in its plan."""
        return await self._api.run_db_interaction(
            "breakout_op_room_ids", _room_ids_txn, op_id
        )

    async def planned(self, op_id: str) -> list[Assigned]:
        """The users of ``op_id`` still to place, in plan order."""
        return await self._api.run_db_interaction(
            "breakout_planned_users", _planned_txn, op_id
        )

    async def fail_planned(self, op_id: str, error: ErrorJson) -> int:
        """Give up on the users of ``op_id`` still planned, with ``error``;
        returns how many there were."""
        return await self._api.run_db_interaction(
            "breakout_fail_planned_users", _fail_planned_txn, op_id, error
        )

    async def failed(self, op_id: str) -> list[FailedUser]:
        return await self._api.run_db_interaction(
            "breakout_failed_users", _failed_txn, op_id
        )

    async def rooms(self, op_id: str) -> dict[str, list[str]]:
        """Each created room of ``op_id`` with its assigned users."""
        return await self._api.run_db_interaction(
            "breakout_assignment", _assignment_txn, op_id
        )

    async def progress(self, op_id: str, rooms_total: int) -> ProgressJson:
        return await self._api.run_db_interaction(
            "breakout_progress", _progress_txn, op_id, rooms_total
        )

    async def unfinished_start(self, parent: str) -> str | None:
        return await self._api.run_db_interaction(
            "breakout_unfinished_start", _unfinished_start_txn, parent
        )

    async def unplaced(self) -> list[str]:
        return await self._api.run_db_interaction("breakout_unplaced", _unplaced_txn)

    async def decide(
        self, op_id: str, parent: str, room_index: int, user_id: str
    ) -> PlaceDecision:
        """Whether to place ``user_id`` in room ``room_index`` now."""
        return await self._api.run_db_interaction(
            "breakout_placement_verdict",
            _decide_txn,
            op_id,
            parent,
            room_index,
            user_id,
        )

    async def move_user(self, op_id: str, user_id: str, room_id: str | None) -> None:
        """``POST .../move``: ``user_id`` now belongs to ``room_id`` (None: to
        the main room)."""
        index = None
        if room_id is not None:
            index = await self._api.run_db_interaction(
                "breakout_room_index", _room_index_txn, op_id, room_id
            )
            if index is None:
                return  # not a room of this operation: nothing of it to record
        await self._api.run_db_interaction(
            "breakout_move_user", _move_user_txn, op_id, user_id, index
        )
