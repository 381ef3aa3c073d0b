"""The journal's operations (``breakout_operations``) and running break-outs
(``breakout_active``).

A start is journalled before it creates anything, with its plan
(assignment.py) and its parent's lock (locks.py), in one transaction
(:meth:`OperationStore.begin`); its rooms are recorded as they are made, and
its commit records the running break-out. The journal's meaning is in
docs/operations.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_breakout import synapse_adapter
from synapse_breakout.journal.assignment import UserState, insert_plan_txn
from synapse_breakout.journal.capacity import insert_capacity_txn
from synapse_breakout.journal.locks import insert_lock_txn, release_lock_txn
from synapse_breakout.journal.rows import (
    UNFINISHED,
    Operation,
    OperationState,
    OverQuota,
    RunningBreakout,
    StartQuota,
)

_OP_COLUMNS = (
    "op_id, kind, parent_room_id, requester, txn_id, state, instance, "
    "process_token, created_ts, updated_ts, response, acting_user, request, lease"
)
_RUNNING_COLUMNS = (
    "parent_room_id, op_id, event_id, acting_user, move, started_ts, ends_at"
)


def _operation(row: Sequence[Any]) -> Operation:
    values = list(row)
    values[10] = json.loads(values[10]) if values[10] is not None else None
    values[12] = json.loads(values[12]) if values[12] is not None else {}
    return Operation(*values)


def _find_txn_op_txn(
    txn: LoggingTransaction, requester: str, txn_id: str
) -> Operation | None:
    txn.execute(
        f"SELECT {_OP_COLUMNS} FROM breakout_operations"
        " WHERE requester = ? AND txn_id = ?",
        (requester, txn_id),
    )
    row = txn.fetchone()
    return _operation(row) if row else None


def _begin_operation_txn(
    txn: LoggingTransaction,
    op: Operation,
    plan: Sequence[Sequence[str]] = (),
    plan_state: UserState = UserState.PLANNED,
    quota: StartQuota | None = None,
    left_out: Sequence[str] = (),
) -> Operation | OverQuota | None:
    """Insert ``op`` and its plan, take its parent's lock; None if the lock is
    held. A concurrent start with the same ``txn_id`` gets the earlier
    operation; one over ``quota``, :class:`OverQuota`."""
    if op.txn_id is not None:
        earlier = _find_txn_op_txn(txn, op.requester, op.txn_id)
        if earlier is not None:
            return earlier
    if quota is not None:
        over = _over_quota_txn(txn, op, quota)
        if over is not None:
            return over
    if not insert_lock_txn(txn, op.parent_room_id, op.op_id, op.created_ts):
        return None
    txn.execute(
        f"INSERT INTO breakout_operations ({_OP_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (requester, txn_id) DO NOTHING",
        (
            op.op_id,
            op.kind,
            op.parent_room_id,
            op.requester,
            op.txn_id,
            op.state.value,
            op.instance,
            op.process_token,
            op.created_ts,
            op.updated_ts,
            None,
            op.acting_user,
            json.dumps(op.request),
            op.lease,
        ),
    )
    if txn.rowcount != 1:
        assert op.txn_id is not None  # only a txn_id can collide
        release_lock_txn(txn, op.op_id)
        return _find_txn_op_txn(txn, op.requester, op.txn_id)
    insert_plan_txn(txn, op.op_id, plan, plan_state, left_out)
    return op


def _over_quota_txn(
    txn: LoggingTransaction, op: Operation, quota: StartQuota
) -> OverQuota | None:
    """Whether ``op``'s requester used up ``quota``, counted where it is
    recorded: the gate row's update makes a concurrent start of the same
    requester (any worker) wait for this transaction, then count again."""
    txn.execute(
        "INSERT INTO breakout_start_gates (requester, touched_ts) VALUES (?, ?)"
        " ON CONFLICT (requester) DO UPDATE SET touched_ts = excluded.touched_ts",
        (op.requester, op.created_ts),
    )
    count, oldest = _starts_since_txn(
        txn, op.requester, op.created_ts - quota.window_ms
    )
    if count < quota.allowed:
        return None
    return OverQuota(oldest if oldest is not None else op.created_ts)


def _record_room_txn(
    txn: LoggingTransaction,
    op_id: str,
    room_id: str,
    index: int | None,
    now: int,
    capacity: tuple[str, int] | None,
) -> None:
    # One statement (two with a capacity): the operation's progress (for
    # recovery) is read from these rows, so the journal costs a running start
    # no more than this.
    txn.execute(
        "INSERT INTO breakout_op_rooms (op_id, room_id, room_index, created_ts)"
        " VALUES (?, ?, ?, ?)",
        (op_id, room_id, index, now),
    )
    if capacity is not None:
        insert_capacity_txn(txn, room_id, op_id, *capacity)


def _op_rooms_txn(txn: LoggingTransaction, op_id: str) -> list[str]:
    txn.execute(
        "SELECT room_id FROM breakout_op_rooms WHERE op_id = ? ORDER BY created_ts",
        (op_id,),
    )
    return [row[0] for row in txn]


def _finish_operation_txn(
    txn: LoggingTransaction,
    op_id: str,
    state: OperationState,
    response: Any,
    now: int,
    running: RunningBreakout | None,
) -> bool:
    """Move an unfinished operation to ``state``; False if it was not where
    that may start: only a pending operation commits (one that recovery is
    rolling back never does)."""
    allowed = (
        (OperationState.PENDING.value,) * 2
        if state == OperationState.COMMITTED
        else UNFINISHED
    )
    txn.execute(
        "UPDATE breakout_operations SET state = ?, response = ?, updated_ts = ?"
        " WHERE op_id = ? AND state IN (?, ?)",
        (state.value, json.dumps(response), now, op_id, *allowed),
    )
    if txn.rowcount != 1:
        return False
    release_lock_txn(txn, op_id)
    if running is not None:
        txn.execute(
            "DELETE FROM breakout_active WHERE parent_room_id = ?",
            (running.parent_room_id,),
        )
        txn.execute(
            f"INSERT INTO breakout_active ({_RUNNING_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            running.row(),
        )
    return True


def _set_response_txn(
    txn: LoggingTransaction, op_id: str, response: Any, now: int
) -> None:
    txn.execute(
        "UPDATE breakout_operations SET response = ?, updated_ts = ? WHERE op_id = ?",
        (json.dumps(response), now, op_id),
    )


def _unfinished_txn(txn: LoggingTransaction) -> list[Operation]:
    """Unfinished operations, oldest first."""
    txn.execute(
        f"SELECT {_OP_COLUMNS} FROM breakout_operations"
        " WHERE state IN (?, ?) ORDER BY created_ts",
        UNFINISHED,
    )
    return [_operation(row) for row in txn]


def _starts_since_txn(
    txn: LoggingTransaction, requester: str, since: int
) -> tuple[int, int | None]:
    """How many starts ``requester`` journalled since ``since``, the oldest's time."""
    txn.execute(
        "SELECT COUNT(*), MIN(created_ts) FROM breakout_operations"
        " WHERE requester = ? AND kind = 'start' AND created_ts > ?",
        (requester, since),
    )
    row = txn.fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


def _get_operation_txn(txn: LoggingTransaction, op_id: str) -> Operation | None:
    txn.execute(
        f"SELECT {_OP_COLUMNS} FROM breakout_operations WHERE op_id = ?", (op_id,)
    )
    row = txn.fetchone()
    return _operation(row) if row else None


def _get_running_txn(txn: LoggingTransaction, parent: str) -> RunningBreakout | None:
    txn.execute(
        f"SELECT {_RUNNING_COLUMNS} FROM breakout_active WHERE parent_room_id = ?",
        (parent,),
    )
    row = txn.fetchone()
    return RunningBreakout(*row) if row else None


def _list_running_txn(txn: LoggingTransaction) -> list[RunningBreakout]:
    txn.execute(f"SELECT {_RUNNING_COLUMNS} FROM breakout_active")
    return [RunningBreakout(*row) for row in txn]


def _due_txn(txn: LoggingTransaction, now: int) -> list[RunningBreakout]:
    txn.execute(
        f"SELECT {_RUNNING_COLUMNS} FROM breakout_active"
        " WHERE ends_at IS NOT NULL AND ends_at <= ?",
        (now,),
    )
    return [RunningBreakout(*row) for row in txn]


def _claim_end_txn(txn: LoggingTransaction, parent: str, op_id: str) -> bool:
    txn.execute(
        "DELETE FROM breakout_active WHERE parent_room_id = ? AND op_id = ?",
        (parent, op_id),
    )
    return txn.rowcount == 1


def _set_running_event_txn(txn: LoggingTransaction, parent: str, event_id: str) -> None:
    txn.execute(
        "UPDATE breakout_active SET event_id = ? WHERE parent_room_id = ?",
        (event_id, parent),
    )


class OperationStore:
    """The journal of admin operations and the running break-outs."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def begin(
        self,
        op: Operation,
        plan: Sequence[Sequence[str]] = (),
        plan_state: UserState = UserState.PLANNED,
        quota: StartQuota | None = None,
        left_out: Sequence[str] = (),
    ) -> Operation | OverQuota | None:
        """Journal ``op`` with its plan (each room's users); lock its parent.

        Args:
            quota: the requester's starts in a window, counted and recorded in
                this one transaction (``moderator_starts_per_hour``).
            left_out: planned users no longer in the parent, journalled as
                failed (a start from a plan).

        Returns:
            ``op`` when it may proceed; the earlier operation with the same
            ``txn_id`` from the same requester, if any; :class:`OverQuota`
            when ``quota`` is used up; None when another operation holds the
            parent's lock.
        """
        return await self._api.run_db_interaction(
            "breakout_begin_operation",
            _begin_operation_txn,
            op,
            plan,
            plan_state,
            quota,
            left_out,
            # The quota's count must see a concurrent start it waited for.
            **(synapse_adapter.read_committed(self._api) if quota else {}),
        )

    async def find_txn(self, requester: str, txn_id: str) -> Operation | None:
        """The operation ``requester`` journalled with ``txn_id``, if any."""
        return await self._api.run_db_interaction(
            "breakout_find_txn", _find_txn_op_txn, requester, txn_id
        )

    async def starts_since(self, requester: str, since: int) -> tuple[int, int | None]:
        """(how many starts ``requester`` made after ``since``, the oldest's time)."""
        return await self._api.run_db_interaction(
            "breakout_starts_since", _starts_since_txn, requester, since
        )

    async def record_room(
        self,
        op_id: str,
        room_id: str,
        index: int | None = None,
        capacity: tuple[str, int] | None = None,
    ) -> None:
        """Record a room the operation made (plan's ``index``-th) at once.

        Args:
            capacity: (the parent, the start's ``room_capacity``), recorded
                with the room (journal/capacity.py).
        """
        await self._api.run_db_interaction(
            "breakout_record_room",
            _record_room_txn,
            op_id,
            room_id,
            index,
            self._api.get_current_time_msec(),
            capacity,
        )

    async def rooms_of(self, op_id: str) -> list[str]:
        return await self._api.run_db_interaction(
            "breakout_op_rooms", _op_rooms_txn, op_id
        )

    async def finish(
        self,
        op_id: str,
        state: OperationState,
        response: Any,
        running: RunningBreakout | None = None,
    ) -> bool:
        """End an operation (committed or rolled back), releasing its lock.

        With ``running``, also records (or replaces) the parent's running
        break-out, in the same transaction.
        """
        return await self._api.run_db_interaction(
            "breakout_finish_operation",
            _finish_operation_txn,
            op_id,
            state,
            response,
            self._api.get_current_time_msec(),
            running,
        )

    async def set_response(self, op_id: str, response: Any) -> None:
        """Replace the stored response (after the best-effort placement)."""
        await self._api.run_db_interaction(
            "breakout_set_response",
            _set_response_txn,
            op_id,
            response,
            self._api.get_current_time_msec(),
        )

    async def get(self, op_id: str) -> Operation | None:
        return await self._api.run_db_interaction(
            "breakout_get_operation", _get_operation_txn, op_id
        )

    async def unfinished(self) -> list[Operation]:
        return await self._api.run_db_interaction(
            "breakout_unfinished_operations", _unfinished_txn
        )

    async def get_running(self, parent: str) -> RunningBreakout | None:
        return await self._api.run_db_interaction(
            "breakout_get_active", _get_running_txn, parent
        )

    async def list_running(self) -> list[RunningBreakout]:
        return await self._api.run_db_interaction(
            "breakout_list_active", _list_running_txn
        )

    async def due(self, now: int) -> list[RunningBreakout]:
        return await self._api.run_db_interaction("breakout_due", _due_txn, now)

    async def claim_end(self, parent: str, op_id: str) -> bool:
        """Remove the running row; True for the one caller that removed it."""
        return await self._api.run_db_interaction(
            "breakout_claim_end", _claim_end_txn, parent, op_id
        )

    async def set_running_event(self, parent: str, event_id: str) -> None:
        """The running break-out's event changed (a reassignment)."""
        await self._api.run_db_interaction(
            "breakout_set_active_event", _set_running_event_txn, parent, event_id
        )
