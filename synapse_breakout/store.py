"""The module's own tables in Synapse's database (SQLite or PostgreSQL).

Persistence goes through ``ModuleApi.run_db_interaction``: one ``_txn`` function
per query, each with its own description (it names the transaction in Synapse's
metrics and logs). The schema is created once, at start-up, by the instance that
runs background tasks (:meth:`BreakoutStore.create_schema`); queries never check
that a table exists.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import attrs
from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

logger = logging.getLogger(__name__)


# _MIGRATIONS[v - 1] takes the schema from version v - 1 to version v. Every
# statement must be valid on both SQLite and PostgreSQL.
_MIGRATIONS: Sequence[Sequence[str]] = (
    (
        # One journal row per admin operation. `state` is pending -> committed,
        # or pending -> (rolling_back ->) rolled_back. `instance` and
        # `process_token` tell recovery which process ran it; `response` is
        # the JSON answer (replayed for a repeated txn_id).
        """
        CREATE TABLE IF NOT EXISTS breakout_operations (
            op_id TEXT NOT NULL PRIMARY KEY,
            kind TEXT NOT NULL,
            parent_room_id TEXT NOT NULL,
            requester TEXT NOT NULL,
            txn_id TEXT,
            state TEXT NOT NULL,
            instance TEXT NOT NULL,
            process_token TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            updated_ts BIGINT NOT NULL,
            response TEXT,
            acting_user TEXT,
            request TEXT
        )
        """,
        # NULL txn_ids are distinct on both engines: only real txn_ids collide.
        """
        CREATE UNIQUE INDEX IF NOT EXISTS breakout_operations_txn
            ON breakout_operations (requester, txn_id)
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_operations_state
            ON breakout_operations (state)
        """,
        # Serialises operations per parent room: the primary key lets one in.
        """
        CREATE TABLE IF NOT EXISTS breakout_parent_locks (
            parent_room_id TEXT NOT NULL PRIMARY KEY,
            op_id TEXT NOT NULL,
            locked_ts BIGINT NOT NULL
        )
        """,
        # Every room an operation created, recorded as soon as it exists.
        """
        CREATE TABLE IF NOT EXISTS breakout_op_rooms (
            op_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            PRIMARY KEY (op_id, room_id)
        )
        """,
        # The break-outs started through the API that are still running.
        """
        CREATE TABLE IF NOT EXISTS breakout_active (
            parent_room_id TEXT NOT NULL PRIMARY KEY,
            op_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            acting_user TEXT NOT NULL,
            move TEXT NOT NULL,
            started_ts BIGINT NOT NULL,
            ends_at BIGINT
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_active_ends_at
            ON breakout_active (ends_at)
        """,
        # The spam-checker's verdict on each break-out event it saw.
        """
        CREATE TABLE IF NOT EXISTS breakout_sender_verdicts (
            event_id TEXT NOT NULL PRIMARY KEY,
            room_id TEXT NOT NULL,
            sender TEXT NOT NULL,
            trusted SMALLINT NOT NULL,
            power_level BIGINT NOT NULL,
            required_power_level BIGINT NOT NULL,
            reason TEXT,
            received_ts BIGINT NOT NULL
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_sender_verdicts_flags
            ON breakout_sender_verdicts (trusted, received_ts, event_id)
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_sender_verdicts_room
            ON breakout_sender_verdicts (room_id, trusted, received_ts)
        """,
    ),
)

#: The version the code expects. Append to ``_MIGRATIONS`` to migrate.
SCHEMA_VERSION = len(_MIGRATIONS)


class SchemaTooNewError(Exception):
    """The database was migrated by a newer version of the module."""


def _create_schema_txn(txn: LoggingTransaction) -> int:
    txn.execute(
        """
        CREATE TABLE IF NOT EXISTS breakout_schema_version (
            lock CHAR(1) NOT NULL DEFAULT 'X' UNIQUE,
            version INTEGER NOT NULL,
            CHECK (lock = 'X')
        )
        """
    )
    txn.execute("SELECT version FROM breakout_schema_version")
    row = txn.fetchone()
    current = row[0] if row else 0
    if current > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"synapse_breakout's tables are at schema version {current}, newer than "
            f"this module's {SCHEMA_VERSION}: upgrade the module"
        )
    for statements in _MIGRATIONS[current:]:
        for sql in statements:
            txn.execute(sql)
    if row is None:
        txn.execute(
            "INSERT INTO breakout_schema_version (version) VALUES (?)",
            (SCHEMA_VERSION,),
        )
    elif current != SCHEMA_VERSION:
        txn.execute("UPDATE breakout_schema_version SET version = ?", (SCHEMA_VERSION,))
    return current


def _schema_version_txn(txn: LoggingTransaction) -> int | None:
    txn.execute("SELECT version FROM breakout_schema_version")
    row = txn.fetchone()
    return row[0] if row else None


class BreakoutStore:
    """Queries on the module's tables."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def create_schema(self) -> None:
        """Create or migrate the module's tables; safe to run on every start."""
        previous = await self._api.run_db_interaction(
            "breakout_create_schema", _create_schema_txn
        )
        if previous != SCHEMA_VERSION:
            logger.info(
                "synapse_breakout schema migrated from version %s to %s",
                previous,
                SCHEMA_VERSION,
            )

    async def get_schema_version(self) -> int | None:
        """The schema version recorded in the database, or None before creation."""
        return await self._api.run_db_interaction(
            "breakout_get_schema_version", _schema_version_txn
        )


# --- The operation journal (admin API) -------------------------------------


@attrs.frozen
class Operation:
    """A journal row: one admin API operation and how far it got."""

    op_id: str
    kind: str
    parent_room_id: str
    requester: str
    txn_id: str | None
    state: str
    instance: str
    process_token: str
    created_ts: int
    updated_ts: int
    response: Any
    acting_user: str | None
    #: What recovery needs of the request: move, join_rule, duration_seconds.
    request: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ActiveBreakout:
    """A break-out started through the admin API and not ended yet."""

    parent_room_id: str
    op_id: str
    event_id: str
    acting_user: str
    move: str
    started_ts: int
    ends_at: int | None


class OperationState:
    PENDING = "pending"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


_OP_COLUMNS = (
    "op_id, kind, parent_room_id, requester, txn_id, state, instance, "
    "process_token, created_ts, updated_ts, response, acting_user, request"
)
_ACTIVE_COLUMNS = (
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


def _begin_operation_txn(txn: LoggingTransaction, op: Operation) -> Operation | None:
    """Insert ``op`` and take its parent's lock; None if the lock is held."""
    if op.txn_id is not None:
        earlier = _find_txn_op_txn(txn, op.requester, op.txn_id)
        if earlier is not None:
            return earlier
    txn.execute(
        "INSERT INTO breakout_parent_locks (parent_room_id, op_id, locked_ts)"
        " VALUES (?, ?, ?) ON CONFLICT (parent_room_id) DO NOTHING",
        (op.parent_room_id, op.op_id, op.created_ts),
    )
    if txn.rowcount != 1:
        return None
    txn.execute(
        f"INSERT INTO breakout_operations ({_OP_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            op.op_id,
            op.kind,
            op.parent_room_id,
            op.requester,
            op.txn_id,
            op.state,
            op.instance,
            op.process_token,
            op.created_ts,
            op.updated_ts,
            None,
            op.acting_user,
            json.dumps(op.request),
        ),
    )
    return op


def _record_room_txn(
    txn: LoggingTransaction, op_id: str, room_id: str, now: int
) -> None:
    # One statement: the operation's progress (for recovery) is read from
    # these rows, so the journal costs a running start no more than this.
    txn.execute(
        "INSERT INTO breakout_op_rooms (op_id, room_id, created_ts) VALUES (?, ?, ?)",
        (op_id, room_id, now),
    )


def _op_rooms_txn(txn: LoggingTransaction, op_id: str) -> list[str]:
    txn.execute(
        "SELECT room_id FROM breakout_op_rooms WHERE op_id = ? ORDER BY created_ts",
        (op_id,),
    )
    return [row[0] for row in txn]


def _finish_operation_txn(
    txn: LoggingTransaction,
    op_id: str,
    state: str,
    response: Any,
    now: int,
    active: ActiveBreakout | None,
) -> bool:
    """Move a pending operation to ``state``; False if it was not pending."""
    txn.execute(
        "UPDATE breakout_operations SET state = ?, response = ?, updated_ts = ?"
        " WHERE op_id = ? AND state IN (?, ?)",
        (
            state,
            json.dumps(response),
            now,
            op_id,
            OperationState.PENDING,
            OperationState.ROLLING_BACK,
        ),
    )
    if txn.rowcount != 1:
        return False
    txn.execute("DELETE FROM breakout_parent_locks WHERE op_id = ?", (op_id,))
    if active is not None:
        txn.execute(
            "DELETE FROM breakout_active WHERE parent_room_id = ?",
            (active.parent_room_id,),
        )
        txn.execute(
            f"INSERT INTO breakout_active ({_ACTIVE_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            attrs.astuple(active),
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
    """Unfinished operations; ``updated_ts`` is their last sign of progress,
    the newest of their own row and of the rooms they recorded."""
    txn.execute(
        f"SELECT {_OP_COLUMNS}, (SELECT MAX(r.created_ts) FROM breakout_op_rooms r"
        " WHERE r.op_id = breakout_operations.op_id)"
        " FROM breakout_operations WHERE state IN (?, ?) ORDER BY created_ts",
        (OperationState.PENDING, OperationState.ROLLING_BACK),
    )
    operations = []
    for row in txn:
        op = _operation(row[:-1])
        last_room = row[-1]
        if last_room is not None and last_room > op.updated_ts:
            op = attrs.evolve(op, updated_ts=last_room)
        operations.append(op)
    return operations


def _get_active_txn(txn: LoggingTransaction, parent: str) -> ActiveBreakout | None:
    txn.execute(
        f"SELECT {_ACTIVE_COLUMNS} FROM breakout_active WHERE parent_room_id = ?",
        (parent,),
    )
    row = txn.fetchone()
    return ActiveBreakout(*row) if row else None


def _list_active_txn(txn: LoggingTransaction) -> list[ActiveBreakout]:
    txn.execute(f"SELECT {_ACTIVE_COLUMNS} FROM breakout_active")
    return [ActiveBreakout(*row) for row in txn]


def _due_txn(txn: LoggingTransaction, now: int) -> list[ActiveBreakout]:
    txn.execute(
        f"SELECT {_ACTIVE_COLUMNS} FROM breakout_active"
        " WHERE ends_at IS NOT NULL AND ends_at <= ?",
        (now,),
    )
    return [ActiveBreakout(*row) for row in txn]


def _claim_end_txn(txn: LoggingTransaction, parent: str, op_id: str) -> bool:
    txn.execute(
        "DELETE FROM breakout_active WHERE parent_room_id = ? AND op_id = ?",
        (parent, op_id),
    )
    return txn.rowcount == 1


def _set_active_event_txn(txn: LoggingTransaction, parent: str, event_id: str) -> None:
    txn.execute(
        "UPDATE breakout_active SET event_id = ? WHERE parent_room_id = ?",
        (event_id, parent),
    )


def _orphan_locks_txn(txn: LoggingTransaction) -> list[tuple[str, str, int]]:
    """Locks no unfinished journalled operation holds: end and move's own."""
    txn.execute(
        "SELECT l.parent_room_id, l.op_id, l.locked_ts FROM breakout_parent_locks l"
        " WHERE NOT EXISTS (SELECT 1 FROM breakout_operations o"
        " WHERE o.op_id = l.op_id AND o.state IN (?, ?))",
        (OperationState.PENDING, OperationState.ROLLING_BACK),
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


class OperationStore:
    """The journal of admin operations, the per-parent locks, active break-outs."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def begin(self, op: Operation) -> Operation | None:
        """Journal ``op`` and lock its parent.

        Returns:
            ``op`` when it may proceed; the earlier operation with the same
            ``txn_id`` from the same requester, if any; None when another
            operation holds the parent's lock.
        """
        return await self._api.run_db_interaction(
            "breakout_begin_operation", _begin_operation_txn, op
        )

    async def record_room(self, op_id: str, room_id: str) -> None:
        """Record a room the operation created, as soon as it exists."""
        await self._api.run_db_interaction(
            "breakout_record_room",
            _record_room_txn,
            op_id,
            room_id,
            self._api.get_current_time_msec(),
        )

    async def rooms_of(self, op_id: str) -> list[str]:
        return await self._api.run_db_interaction(
            "breakout_op_rooms", _op_rooms_txn, op_id
        )

    async def finish(
        self,
        op_id: str,
        state: str,
        response: Any,
        active: ActiveBreakout | None = None,
    ) -> bool:
        """End an operation (committed or rolled back), releasing its lock.

        With ``active``, also records (or replaces) the parent's active
        break-out, in the same transaction.
        """
        return await self._api.run_db_interaction(
            "breakout_finish_operation",
            _finish_operation_txn,
            op_id,
            state,
            response,
            self._api.get_current_time_msec(),
            active,
        )

    async def set_response(self, op_id: str, response: Any) -> None:
        """Replace the stored response (after the best-effort moves)."""
        await self._api.run_db_interaction(
            "breakout_set_response",
            _set_response_txn,
            op_id,
            response,
            self._api.get_current_time_msec(),
        )

    async def unfinished(self) -> list[Operation]:
        return await self._api.run_db_interaction(
            "breakout_unfinished_operations", _unfinished_txn
        )

    async def get_active(self, parent: str) -> ActiveBreakout | None:
        return await self._api.run_db_interaction(
            "breakout_get_active", _get_active_txn, parent
        )

    async def list_active(self) -> list[ActiveBreakout]:
        return await self._api.run_db_interaction(
            "breakout_list_active", _list_active_txn
        )

    async def due(self, now: int) -> list[ActiveBreakout]:
        return await self._api.run_db_interaction("breakout_due", _due_txn, now)

    async def claim_end(self, parent: str, op_id: str) -> bool:
        """Remove the active row; True for the one caller that removed it."""
        return await self._api.run_db_interaction(
            "breakout_claim_end", _claim_end_txn, parent, op_id
        )

    async def set_active_event(self, parent: str, event_id: str) -> None:
        """The active break-out's event changed (a move)."""
        await self._api.run_db_interaction(
            "breakout_set_active_event", _set_active_event_txn, parent, event_id
        )

    async def orphan_locks(self) -> list[tuple[str, str, int]]:
        """(parent, lock id, locked at) of locks held by no journalled operation."""
        return await self._api.run_db_interaction(
            "breakout_orphan_locks", _orphan_locks_txn
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


# --- Sender verdicts (the spam-checker hook, spam.py) ------------------------


@attrs.frozen
class SenderVerdict:
    """The spam-checker's verdict on one break-out event's sender."""

    event_id: str
    room_id: str
    sender: str
    trusted: bool
    power_level: int
    required_power_level: int
    reason: str | None
    received_ts: int


_VERDICT_COLUMNS = (
    "event_id, room_id, sender, trusted, power_level, required_power_level, "
    "reason, received_ts"
)


def _verdict(row: Sequence[Any]) -> SenderVerdict:
    values = list(row)
    values[3] = bool(values[3])
    return SenderVerdict(*values)


def _record_verdict_txn(txn: LoggingTransaction, verdict: SenderVerdict) -> bool:
    """Insert a verdict unless the event has one; True if inserted."""
    txn.execute(
        f"INSERT INTO breakout_sender_verdicts ({_VERDICT_COLUMNS})"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
        (
            verdict.event_id,
            verdict.room_id,
            verdict.sender,
            1 if verdict.trusted else 0,
            verdict.power_level,
            verdict.required_power_level,
            verdict.reason,
            verdict.received_ts,
        ),
    )
    return txn.rowcount == 1


def _get_verdict_txn(txn: LoggingTransaction, event_id: str) -> SenderVerdict | None:
    txn.execute(
        f"SELECT {_VERDICT_COLUMNS} FROM breakout_sender_verdicts WHERE event_id = ?",
        (event_id,),
    )
    row = txn.fetchone()
    return _verdict(row) if row else None


def _flags_txn(
    txn: LoggingTransaction,
    room_id: str | None,
    before: tuple[int, str] | None,
    limit: int,
) -> list[SenderVerdict]:
    """Unknown senders' verdicts, newest first, strictly before ``before``."""
    clauses = ["trusted = 0"]
    args: list[Any] = []
    if room_id is not None:
        clauses.append("room_id = ?")
        args.append(room_id)
    if before is not None:
        clauses.append("(received_ts < ? OR (received_ts = ? AND event_id < ?))")
        args.extend((before[0], before[0], before[1]))
    txn.execute(
        f"SELECT {_VERDICT_COLUMNS} FROM breakout_sender_verdicts"
        f" WHERE {' AND '.join(clauses)}"
        " ORDER BY received_ts DESC, event_id DESC LIMIT ?",
        (*args, limit),
    )
    return [_verdict(row) for row in txn]


class VerdictStore:
    """The verdicts of the spam-checker hook, one row per break-out event."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def record(self, verdict: SenderVerdict) -> bool:
        """Store ``verdict``; the first verdict on an event stays (False then)."""
        return await self._api.run_db_interaction(
            "breakout_record_sender_verdict", _record_verdict_txn, verdict
        )

    async def get(self, event_id: str) -> SenderVerdict | None:
        return await self._api.run_db_interaction(
            "breakout_get_sender_verdict", _get_verdict_txn, event_id
        )

    async def flags(
        self, room_id: str | None, before: tuple[int, str] | None, limit: int
    ) -> list[SenderVerdict]:
        """Up to ``limit`` verdicts on unknown senders, newest first.

        Args:
            room_id: only this room's, if given.
            before: ``(received_ts, event_id)`` of the last row of the previous
                page: only rows after it in newest-first order.
            limit: the most rows to return.
        """
        return await self._api.run_db_interaction(
            "breakout_list_flags", _flags_txn, room_id, before, limit
        )
