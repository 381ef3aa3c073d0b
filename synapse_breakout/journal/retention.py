"""Retention: the tables do not grow without bound.

Once a day the instance that runs background tasks (background/loops.py)
deletes finished operations older than ``retention_days`` with their rooms
lists, assignments, warnings and ``txn_id`` answers, and sender verdicts
(flags) and help requests as old, console sessions a day after they were
made (they last 30 minutes), and the plans of parents Synapse purged. A running break-out's start operation is kept
whatever its age: its rooms are the break-out's own rooms. docs/operations.md
lists the tables.
"""

from __future__ import annotations

import logging

from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_breakout.journal.plans import PlanStore
from synapse_breakout.journal.rows import OperationState
from synapse_breakout.journal.synapse_tables import SynapseTables

logger = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000
_FINISHED = (OperationState.COMMITTED.value, OperationState.ROLLED_BACK.value)
#: The tables whose rows go with their operation.
_PER_OPERATION = (
    "breakout_op_rooms",
    "breakout_op_users",
    "breakout_warnings",
    "breakout_pins",
    "breakout_room_capacity",
)


def _prune_txn(
    txn: LoggingTransaction, before: int, sessions_before: int
) -> tuple[int, int]:
    """Delete finished operations (with their rooms, assignments, warnings,
    pins, capacities and places), verdicts and help requests older than
    ``before``, console sessions made before ``sessions_before``."""
    old_ops = (
        "SELECT op_id FROM breakout_operations o WHERE o.state IN (?, ?)"
        " AND o.updated_ts < ? AND NOT EXISTS"
        " (SELECT 1 FROM breakout_active a WHERE a.op_id = o.op_id)"
    )
    args = (*_FINISHED, before)
    txn.execute(
        "DELETE FROM breakout_seats WHERE room_id IN (SELECT room_id FROM"
        f" breakout_room_capacity WHERE op_id IN ({old_ops}))",
        args,
    )
    for table in _PER_OPERATION:
        txn.execute(f"DELETE FROM {table} WHERE op_id IN ({old_ops})", args)
    txn.execute(f"DELETE FROM breakout_operations WHERE op_id IN ({old_ops})", args)
    operations = txn.rowcount
    txn.execute("DELETE FROM breakout_help_requests WHERE asked_ts < ?", (before,))
    txn.execute("DELETE FROM breakout_sender_verdicts WHERE received_ts < ?", (before,))
    verdicts = txn.rowcount
    txn.execute(
        "DELETE FROM breakout_console_sessions WHERE created_ts < ?", (sessions_before,)
    )
    return operations, verdicts


class Retention:
    """Deletes what is older than ``retention_days``, and what is left of
    purged rooms."""

    def __init__(
        self,
        api: ModuleApi,
        retention_days: int,
        plans: PlanStore,
        tables: SynapseTables,
    ):
        self._api = api
        self._retention_ms = retention_days * DAY_MS
        self._plans = plans
        self._tables = tables

    async def prune(self) -> tuple[int, int]:
        """Delete what is older than ``retention_days``; (operations, verdicts)."""
        now = self._api.get_current_time_msec()
        operations, verdicts = await self._api.run_db_interaction(
            "breakout_prune", _prune_txn, now - self._retention_ms, now - DAY_MS
        )
        if operations or verdicts:
            logger.info(
                "Deleted %d finished operations and %d verdicts older than %d days",
                operations,
                verdicts,
                self._retention_ms // DAY_MS,
            )
        await self.forget_purged_plans()
        return operations, verdicts

    async def forget_purged_plans(self) -> int:
        """Delete the plans of parent rooms Synapse no longer has."""
        parents = await self._plans.parents()
        existing = await self._tables.existing_rooms(parents)
        removed = await self._plans.forget([p for p in parents if p not in existing])
        if removed:
            logger.info("Deleted %d plans of rooms that were purged", removed)
        return removed
