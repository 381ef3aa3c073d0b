"""The per-parent locks (``breakout_parent_locks``): one operation, end or
move at a time on a parent room; a start's lock is taken with its journal
entry (store.py, ``begin``)."""

from __future__ import annotations

from synapse.module_api import LoggingTransaction, ModuleApi


def _orphan_locks_txn(
    txn: LoggingTransaction, unfinished: tuple[str, ...]
) -> list[tuple[str, str, int]]:
    """Locks no unfinished journalled operation holds: end's and reassign's,
    with their lease counters."""
    txn.execute(
        "SELECT l.parent_room_id, l.op_id, l.lease FROM breakout_parent_locks l"
        " WHERE NOT EXISTS (SELECT 1 FROM breakout_operations o"
        " WHERE o.op_id = l.op_id AND o.state IN (?, ?))",
        unfinished,
    )
    return [(row[0], row[1], row[2]) for row in txn]


def _lock_txn(txn: LoggingTransaction, parent: str, op_id: str, now: int) -> bool:
    txn.execute(
        "INSERT INTO breakout_parent_locks (parent_room_id, op_id, locked_ts)"
        " VALUES (?, ?, ?) ON CONFLICT (parent_room_id) DO NOTHING",
        (parent, op_id, now),
    )
    return txn.rowcount == 1


def _unlock_txn(txn: LoggingTransaction, parent: str, op_id: str) -> None:
    txn.execute(
        "DELETE FROM breakout_parent_locks WHERE parent_room_id = ? AND op_id = ?",
        (parent, op_id),
    )


class ParentLocks:
    """Taking, releasing and finding orphaned parent locks."""

    def __init__(self, api: ModuleApi, unfinished: tuple[str, ...]):
        self._api = api
        #: The operation states whose locks are not orphaned.
        self._unfinished = unfinished

    async def orphan_locks(self) -> list[tuple[str, str, int]]:
        """(parent, lock id, lease) of locks held by no journalled operation."""
        return await self._api.run_db_interaction(
            "breakout_orphan_locks", _orphan_locks_txn, self._unfinished
        )

    async def lock(self, parent: str, op_id: str) -> bool:
        return await self._api.run_db_interaction(
            "breakout_lock_parent",
            _lock_txn,
            parent,
            op_id,
            self._api.get_current_time_msec(),
        )

    async def unlock(self, parent: str, op_id: str) -> None:
        await self._api.run_db_interaction(
            "breakout_unlock_parent", _unlock_txn, parent, op_id
        )
