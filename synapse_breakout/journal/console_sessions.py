"""Console sessions (``breakout_console_sessions``) and their revocations
(``breakout_console_revocations``): stored, so every worker sees the same
session and a logout anywhere ends it (http/console/sessions.py).

Only hashes of the session token and of the OpenID token are stored: the
database never holds a token that works.
"""

from __future__ import annotations

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi


@attrs.frozen
class StoredSession:
    """A console session as stored."""

    session_hash: str
    openid_hash: str
    user_id: str
    #: The widget's room: the one room the session may act on.
    room_id: str
    #: A mark of the user's password hash when it was made.
    password_mark: str
    created_ts: int
    expires_ts: int


def _insert_txn(txn: LoggingTransaction, session: StoredSession) -> bool:
    """Store ``session``; False if its OpenID token made a session before."""
    txn.execute(
        "INSERT INTO breakout_console_sessions (session_hash, openid_hash, user_id,"
        " room_id, password_mark, created_ts, expires_ts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (openid_hash) DO NOTHING",
        attrs.astuple(session),
    )
    return txn.rowcount == 1


def _live_txn(
    txn: LoggingTransaction, session_hash: str, now: int
) -> StoredSession | None:
    """The session, unless it expired or its user logged out since."""
    txn.execute(
        "SELECT s.session_hash, s.openid_hash, s.user_id, s.room_id,"
        " s.password_mark, s.created_ts, s.expires_ts"
        " FROM breakout_console_sessions s LEFT JOIN breakout_console_revocations r"
        " ON r.user_id = s.user_id WHERE s.session_hash = ? AND s.expires_ts > ?"
        " AND (r.revoked_ts IS NULL OR r.revoked_ts < s.created_ts)",
        (session_hash, now),
    )
    row = txn.fetchone()
    return StoredSession(*row) if row else None


def _revoke_txn(txn: LoggingTransaction, user_id: str, now: int) -> None:
    txn.execute(
        "INSERT INTO breakout_console_revocations (user_id, revoked_ts) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET revoked_ts = excluded.revoked_ts",
        (user_id, now),
    )


def _revoked_ts_txn(txn: LoggingTransaction, user_id: str) -> int | None:
    txn.execute(
        "SELECT revoked_ts FROM breakout_console_revocations WHERE user_id = ?",
        (user_id,),
    )
    row = txn.fetchone()
    return int(row[0]) if row else None


class ConsoleSessionStore:
    """Stores, finds and revokes console sessions."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def insert(self, session: StoredSession) -> bool:
        """Store ``session``; False if its OpenID token made one before."""
        return await self._api.run_db_interaction(
            "breakout_insert_console_session", _insert_txn, session
        )

    async def live(self, session_hash: str) -> StoredSession | None:
        """The session with this hash, unless expired or revoked."""
        return await self._api.run_db_interaction(
            "breakout_console_session",
            _live_txn,
            session_hash,
            self._api.get_current_time_msec(),
        )

    async def revoke(self, user_id: str) -> None:
        """End every session ``user_id`` has now (they logged out somewhere)."""
        await self._api.run_db_interaction(
            "breakout_revoke_console_sessions",
            _revoke_txn,
            user_id,
            self._api.get_current_time_msec(),
        )

    async def revoked_ts(self, user_id: str) -> int | None:
        """When ``user_id``'s sessions were last revoked, if ever."""
        return await self._api.run_db_interaction(
            "breakout_console_revoked_ts", _revoked_ts_txn, user_id
        )
