"""The module's tables in Synapse's database: versioned, forward-only migrations.

The schema is created or migrated once, at start-up, by the instance that runs
background tasks (:meth:`Schema.create`); queries never check
that a table exists. docs/development.md says how to add a migration.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from synapse.module_api import LoggingTransaction, ModuleApi

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
    (
        # When the deadline was last set (start or POST .../deadline): the
        # warnings due before it are not sent. NULL: at the start.
        "ALTER TABLE breakout_active ADD COLUMN deadline_set_ts BIGINT",
        # The warnings sent (or skipped), one row per running break-out,
        # deadline and offset: whoever inserts it sends it.
        """
        CREATE TABLE IF NOT EXISTS breakout_warnings (
            op_id TEXT NOT NULL,
            ends_at BIGINT NOT NULL,
            offset_seconds INTEGER NOT NULL,
            sent_ts BIGINT NOT NULL,
            PRIMARY KEY (op_id, ends_at, offset_seconds)
        )
        """,
        # The last help request from each child room, for the rate limit.
        """
        CREATE TABLE IF NOT EXISTS breakout_help_requests (
            room_id TEXT NOT NULL PRIMARY KEY,
            asked_ts BIGINT NOT NULL
        )
        """,
    ),
    (
        # Liveness: a counter the owning process bumps every few seconds while
        # an operation (or an end's or move's lock) is under way; recovery
        # takes it for dead once the counter stood still for a lease.
        "ALTER TABLE breakout_operations ADD COLUMN lease BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE breakout_parent_locks ADD COLUMN lease BIGINT NOT NULL DEFAULT 0",
        # Starts per requester and hour (moderator_starts_per_hour).
        """
        CREATE INDEX IF NOT EXISTS breakout_operations_requester
            ON breakout_operations (requester, created_ts)
        """,
        # Retention: finished operations by age.
        """
        CREATE INDEX IF NOT EXISTS breakout_operations_updated
            ON breakout_operations (updated_ts)
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_sender_verdicts_received
            ON breakout_sender_verdicts (received_ts)
        """,
    ),
    (
        # A start's assignment, journalled with the operation: which user goes
        # to the room of which index (the order of the request), at which
        # position, and how placing them went: planned (to place), listed
        # (move: suggest), placed, failed (with Synapse's errcode and message).
        # Placement after a restart goes on from the planned rows
        # (docs/operations.md).
        """
        CREATE TABLE IF NOT EXISTS breakout_op_users (
            op_id TEXT NOT NULL,
            room_index INTEGER NOT NULL,
            user_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            state TEXT NOT NULL,
            errcode TEXT,
            error TEXT,
            PRIMARY KEY (op_id, room_index, user_id)
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_op_users_state
            ON breakout_op_users (op_id, state)
        """,
        # Which planned room a created room is (NULL in rows written before).
        "ALTER TABLE breakout_op_rooms ADD COLUMN room_index INTEGER",
        # An unfinished start of a parent, for GET /rooms/{parentRoomId}.
        """
        CREATE INDEX IF NOT EXISTS breakout_operations_parent
            ON breakout_operations (parent_room_id, created_ts)
        """,
    ),
    (
        # Console sessions made from a widget's OpenID token, stored so that
        # every worker sees the same and they can be revoked: the sha256 of
        # the session token and of the OpenID token it was made from (one
        # session per OpenID token), the room it is bound to, and a mark of
        # the user's password hash when it was made (a change ends it).
        """
        CREATE TABLE IF NOT EXISTS breakout_console_sessions (
            session_hash TEXT NOT NULL PRIMARY KEY,
            openid_hash TEXT NOT NULL,
            user_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            password_mark TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            expires_ts BIGINT NOT NULL
        )
        """,
        """
        CREATE UNIQUE INDEX IF NOT EXISTS breakout_console_sessions_openid
            ON breakout_console_sessions (openid_hash)
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_console_sessions_created
            ON breakout_console_sessions (created_ts)
        """,
        # When a user last logged out anywhere (or was deactivated): their
        # sessions made before, and OpenID tokens issued before, are void.
        """
        CREATE TABLE IF NOT EXISTS breakout_console_revocations (
            user_id TEXT NOT NULL PRIMARY KEY,
            revoked_ts BIGINT NOT NULL
        )
        """,
        # Help requests: the last one of each user from each child room (the
        # limit, and what the host's console lists, with who asked).
        "DROP TABLE IF EXISTS breakout_help_requests",
        """
        CREATE TABLE IF NOT EXISTS breakout_help_requests (
            room_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            parent_room_id TEXT NOT NULL,
            asked_ts BIGINT NOT NULL,
            event_id TEXT,
            muted SMALLINT NOT NULL DEFAULT 0,
            PRIMARY KEY (room_id, user_id)
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_help_requests_parent
            ON breakout_help_requests (parent_room_id, asked_ts)
        """,
        # One row per delegated moderator, updated by every start they make:
        # concurrent starts of one moderator (on any worker) wait for each
        # other there, so moderator_starts_per_hour is counted and recorded
        # in one transaction.
        """
        CREATE TABLE IF NOT EXISTS breakout_start_gates (
            requester TEXT NOT NULL PRIMARY KEY,
            touched_ts BIGINT NOT NULL
        )
        """,
    ),
    (
        # Plans: break-outs prepared before a session (docs/admin_api.md).
        # ``fields`` is the JSON of the start request's fields the plan fixes.
        """
        CREATE TABLE IF NOT EXISTS breakout_plans (
            parent_room_id TEXT NOT NULL,
            plan_id TEXT NOT NULL,
            name TEXT NOT NULL,
            fields TEXT NOT NULL,
            created_ts BIGINT NOT NULL,
            updated_ts BIGINT NOT NULL,
            PRIMARY KEY (parent_room_id, plan_id)
        )
        """,
    ),
    (
        # The notices a start pinned (its `started` in the parent, each
        # `welcome` in its room), for the end to unpin them and nothing else.
        """
        CREATE TABLE IF NOT EXISTS breakout_pins (
            op_id TEXT NOT NULL,
            room_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            PRIMARY KEY (op_id, room_id, event_id)
        )
        """,
    ),
    (
        # The own rooms of starts with a room_capacity: how many members each
        # takes. `claims` is bumped by every claim of a place, so that claims
        # for one room take turns (journal/capacity.py).
        """
        CREATE TABLE IF NOT EXISTS breakout_room_capacity (
            room_id TEXT NOT NULL PRIMARY KEY,
            op_id TEXT NOT NULL,
            parent_room_id TEXT NOT NULL,
            capacity INTEGER NOT NULL,
            claims BIGINT NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS breakout_room_capacity_op
            ON breakout_room_capacity (op_id)
        """,
        # The places local joins took in those rooms: counted until the join
        # shows in the room's state, or for a minute if it never does.
        """
        CREATE TABLE IF NOT EXISTS breakout_seats (
            room_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            taken_ts BIGINT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )
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


class Schema:
    """Creates, migrates and reports the version of the module's tables."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def create(self) -> None:
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

    async def version(self) -> int | None:
        """The schema version recorded in the database, or None before creation."""
        return await self._api.run_db_interaction(
            "breakout_get_schema_version", _schema_version_txn
        )
