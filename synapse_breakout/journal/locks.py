"""The per-parent locks (``breakout_parent_locks``): one operation, end or
move at a time on a parent room.

A start's lock is taken in the transaction that journals it (operations.py,
``begin``); an end or a move holds one with :meth:`ParentLocks.hold`. Both go
through :func:`insert_lock_txn`, the one place a lock is taken. Who owns a
lock, and whether they live, is ownership.py's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_breakout.journal.ownership import Ownership
from synapse_breakout.matrix.errors import under_way


@attrs.frozen
class HeldLock:
    """A parent lock no unfinished journalled operation holds (an end's or a
    move's), with its lease counter."""

    parent_room_id: str
    lock_id: str
    lease: int


def insert_lock_txn(
    txn: LoggingTransaction, parent: str, lock_id: str, now: int
) -> bool:
    """Take ``parent``'s lock for ``lock_id``; False if someone holds it."""
    txn.execute(
        "INSERT INTO breakout_parent_locks (parent_room_id, op_id, locked_ts)"
        " VALUES (?, ?, ?) ON CONFLICT (parent_room_id) DO NOTHING",
        (parent, lock_id, now),
    )
    return txn.rowcount == 1


def release_lock_txn(txn: LoggingTransaction, lock_id: str) -> None:
    """Release the lock held by ``lock_id`` (an operation's ID, or an end's or
    move's lock ID), wherever it is."""
    txn.execute("DELETE FROM breakout_parent_locks WHERE op_id = ?", (lock_id,))


def _orphan_locks_txn(
    txn: LoggingTransaction, unfinished: tuple[str, ...]
) -> list[HeldLock]:
    """Locks no unfinished journalled operation holds: end's and move's, with
    their lease counters."""
    txn.execute(
        "SELECT l.parent_room_id, l.op_id, l.lease FROM breakout_parent_locks l"
        " WHERE NOT EXISTS (SELECT 1 FROM breakout_operations o"
        " WHERE o.op_id = l.op_id AND o.state IN (?, ?))",
        unfinished,
    )
    return [HeldLock(row[0], row[1], row[2]) for row in txn]


def _unlock_txn(txn: LoggingTransaction, parent: str, lock_id: str) -> None:
    txn.execute(
        "DELETE FROM breakout_parent_locks WHERE parent_room_id = ? AND op_id = ?",
        (parent, lock_id),
    )


class ParentLocks:
    """Holding, releasing and finding orphaned parent locks."""

    def __init__(
        self, api: ModuleApi, ownership: Ownership, unfinished: tuple[str, ...]
    ):
        self._api = api
        self._ownership = ownership
        #: The operation states whose locks are not orphaned.
        self._unfinished = unfinished

    @contextlib.asynccontextmanager
    async def hold(self, parent: str, kind: str) -> AsyncIterator[None]:
        """Hold ``parent``'s lock while the block changes its break-out.

        Raises:
            BreakoutActiveError: another operation holds it.
        """
        lock_id = self._ownership.lock_id(kind)
        with self._ownership.hold():
            if not await self.lock(parent, lock_id):
                raise under_way(parent)
            try:
                yield
            finally:
                await self.unlock(parent, lock_id)

    async def lock(self, parent: str, lock_id: str) -> bool:
        """Take ``parent``'s lock for ``lock_id``; False if it is held."""
        return await self._api.run_db_interaction(
            "breakout_lock_parent",
            insert_lock_txn,
            parent,
            lock_id,
            self._api.get_current_time_msec(),
        )

    async def orphan_locks(self) -> list[HeldLock]:
        """The locks held by no journalled operation."""
        return await self._api.run_db_interaction(
            "breakout_orphan_locks", _orphan_locks_txn, self._unfinished
        )

    async def unlock(self, parent: str, lock_id: str) -> None:
        await self._api.run_db_interaction(
            "breakout_unlock_parent", _unlock_txn, parent, lock_id
        )
