"""Keeping the tables alive and small: lease renewal and retention.

- Every process bumps the lease counter of the operations and parent locks it
  holds, every ``RENEW_EVERY_MS`` while it holds any (journal.py decides from
  these counters whether a process is dead).
- The instance that runs background tasks deletes, once a day, finished
  operations older than ``retention_days`` with their rooms lists,
  assignments and ``txn_id`` answers, and sender verdicts (flags) as old.
  A running break-out's start operation is kept whatever its age: its rooms
  are the break-out's own rooms. docs/operations.md lists the tables.
"""

from __future__ import annotations

import logging

from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_breakout.assignment import UserState
from synapse_breakout.journal import RENEW_EVERY_MS, Journal
from synapse_breakout.store import OperationState

logger = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
_FINISHED = (OperationState.COMMITTED.value, OperationState.ROLLED_BACK.value)


def _renew_txn(
    txn: LoggingTransaction, instance: str, token: str, lock_pattern: str
) -> None:
    """Bump the leases of one process's pending operations, of its committed
    starts still placing users, and of its locks."""
    txn.execute(
        "UPDATE breakout_operations SET lease = lease + 1"
        " WHERE instance = ? AND process_token = ? AND (state = ? OR (state = ?"
        " AND EXISTS (SELECT 1 FROM breakout_op_users u"
        " WHERE u.op_id = breakout_operations.op_id AND u.state = ?)))",
        (
            instance,
            token,
            OperationState.PENDING.value,
            OperationState.COMMITTED.value,
            UserState.PLANNED.value,
        ),
    )
    txn.execute(
        "UPDATE breakout_parent_locks SET lease = lease + 1 WHERE op_id LIKE ?",
        (lock_pattern,),
    )


def _prune_txn(txn: LoggingTransaction, before: int) -> tuple[int, int]:
    """Delete finished operations (with their rooms, assignments and warnings),
    verdicts and help requests older than ``before``."""
    old_ops = (
        "SELECT op_id FROM breakout_operations o WHERE o.state IN (?, ?)"
        " AND o.updated_ts < ? AND NOT EXISTS"
        " (SELECT 1 FROM breakout_active a WHERE a.op_id = o.op_id)"
    )
    args = (*_FINISHED, before)
    for table in ("breakout_op_rooms", "breakout_op_users", "breakout_warnings"):
        txn.execute(f"DELETE FROM {table} WHERE op_id IN ({old_ops})", args)
    txn.execute(f"DELETE FROM breakout_operations WHERE op_id IN ({old_ops})", args)
    operations = txn.rowcount
    txn.execute("DELETE FROM breakout_help_requests WHERE asked_ts < ?", (before,))
    txn.execute("DELETE FROM breakout_sender_verdicts WHERE received_ts < ?", (before,))
    return operations, txn.rowcount


class Upkeep:
    """Lease renewal (every process) and retention (background instance)."""

    def __init__(self, api: ModuleApi, journal: Journal, retention_days: int):
        self._api = api
        self._journal = journal
        self._retention_ms = retention_days * DAY_MS

    def renew_leases_here(self) -> None:
        """Start renewing this process's leases (call on every instance)."""
        self._api.looping_background_call(
            self.renew, RENEW_EVERY_MS, desc="breakout_renew", run_on_all_instances=True
        )

    async def renew(self) -> None:
        """Bump this process's leases, if it holds anything."""
        if self._journal.held:
            await self._api.run_db_interaction(
                "breakout_renew_leases",
                _renew_txn,
                self._journal.instance,
                self._journal.process_token,
                self._journal.lease_pattern(),
            )

    def schedule_retention(self) -> None:
        """Prune once a day (on the instance that runs background tasks)."""
        self._api.looping_background_call(self.prune, DAY_MS, desc="breakout_prune")

    async def prune(self) -> tuple[int, int]:
        """Delete what is older than ``retention_days``; (operations, verdicts)."""
        before = self._api.get_current_time_msec() - self._retention_ms
        operations, verdicts = await self._api.run_db_interaction(
            "breakout_prune", _prune_txn, before
        )
        if operations or verdicts:
            logger.info(
                "Deleted %d finished operations and %d verdicts older than %d days",
                operations,
                verdicts,
                self._retention_ms // DAY_MS,
            )
        return operations, verdicts
