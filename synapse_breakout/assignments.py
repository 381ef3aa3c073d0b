"""Who a start assigned to which of its child rooms, kept by the module.

A break-out event too large to list its users leaves them out (the size rule,
docs/admin_api.md); the assignment then lives here only, for ``GET``, for
rolling a crashed start forward, and for ``move``. It is written for every
start, before its break-out event is sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from synapse.module_api import LoggingTransaction, ModuleApi


def _record_txn(
    txn: LoggingTransaction, op_id: str, rows: Sequence[tuple[str, str, str]]
) -> None:
    """Replace ``op_id``'s assignment with ``rows`` (op_id, room_id, user_id)."""
    txn.execute("DELETE FROM breakout_assignments WHERE op_id = ?", (op_id,))
    txn.execute_batch(
        "INSERT INTO breakout_assignments (op_id, room_id, user_id) VALUES (?, ?, ?)",
        rows,
    )


def _of_op_txn(txn: LoggingTransaction, op_id: str) -> dict[str, list[str]]:
    txn.execute(
        "SELECT room_id, user_id FROM breakout_assignments WHERE op_id = ?"
        " ORDER BY room_id, user_id",
        (op_id,),
    )
    rooms: dict[str, list[str]] = {}
    for room_id, user_id in txn:
        rooms.setdefault(room_id, []).append(user_id)
    return rooms


def _move_txn(
    txn: LoggingTransaction, op_id: str, user_id: str, to: str | None
) -> None:
    txn.execute(
        "DELETE FROM breakout_assignments WHERE op_id = ? AND user_id = ?",
        (op_id, user_id),
    )
    if to is not None:
        txn.execute(
            "INSERT INTO breakout_assignments (op_id, room_id, user_id)"
            " VALUES (?, ?, ?)",
            (op_id, to, user_id),
        )


class AssignmentStore:
    """The ``breakout_assignments`` table: (operation, room, user)."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def record(self, op_id: str, rooms: Mapping[str, Iterable[str]]) -> None:
        """Record ``op_id``'s users by room (replacing what it had)."""
        rows = [
            (op_id, room_id, user) for room_id, users in rooms.items() for user in users
        ]
        await self._api.run_db_interaction(
            "breakout_record_assignment", _record_txn, op_id, rows
        )

    async def of_op(self, op_id: str) -> dict[str, list[str]]:
        """``op_id``'s users by room."""
        return await self._api.run_db_interaction(
            "breakout_assignment", _of_op_txn, op_id
        )

    async def move(self, op_id: str, user_id: str, to: str | None) -> None:
        """Assign ``user_id`` to ``to`` (None: to no room)."""
        await self._api.run_db_interaction(
            "breakout_move_assignment", _move_txn, op_id, user_id, to
        )
