"""Help requests (``breakout_help_requests``): the last one of each user from
each child room. It is the limit (one a minute per user and room, claimed
compare-and-set so every worker shares it) and the record the host's console
lists, with who asked (operations/help.py).
"""

from __future__ import annotations

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi


@attrs.frozen
class HelpRequest:
    """A help request as recorded."""

    parent_room_id: str
    room_id: str
    user_id: str
    asked_ts: int
    #: The message in the parent; None while it is being sent, or if it failed.
    event_id: str | None
    #: The asker may not post in the parent: the acting user asked for them.
    muted: bool


def _claim_help_txn(
    txn: LoggingTransaction,
    parent: str,
    room_id: str,
    user_id: str,
    now: int,
    interval: int,
) -> int | None:
    """Record a help request: None if it may be sent, else the milliseconds
    until this user may ask from this room again."""
    txn.execute(
        "SELECT asked_ts FROM breakout_help_requests WHERE room_id = ? AND user_id = ?",
        (room_id, user_id),
    )
    row = txn.fetchone()
    if row is None:
        txn.execute(
            "INSERT INTO breakout_help_requests (room_id, user_id, parent_room_id,"
            " asked_ts) VALUES (?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO NOTHING",
            (room_id, user_id, parent, now),
        )
    elif now - row[0] < interval:
        return interval - (now - int(row[0]))
    else:
        txn.execute(
            "UPDATE breakout_help_requests SET asked_ts = ?, parent_room_id = ?,"
            " event_id = NULL, muted = 0"
            " WHERE room_id = ? AND user_id = ? AND asked_ts = ?",
            (now, parent, room_id, user_id, row[0]),
        )
    # Another request of this user from this room won the race: just sent.
    return None if txn.rowcount == 1 else interval


def _sent_txn(
    txn: LoggingTransaction, room_id: str, user_id: str, event_id: str, muted: bool
) -> None:
    txn.execute(
        "UPDATE breakout_help_requests SET event_id = ?, muted = ?"
        " WHERE room_id = ? AND user_id = ?",
        (event_id, 1 if muted else 0, room_id, user_id),
    )


def _recent_txn(
    txn: LoggingTransaction, parent: str, since: int, limit: int
) -> list[HelpRequest]:
    txn.execute(
        "SELECT parent_room_id, room_id, user_id, asked_ts, event_id, muted"
        " FROM breakout_help_requests WHERE parent_room_id = ? AND asked_ts >= ?"
        " AND event_id IS NOT NULL ORDER BY asked_ts DESC LIMIT ?",
        (parent, since, limit),
    )
    return [HelpRequest(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in txn]


def _latest_txn(txn: LoggingTransaction, parent: str) -> int:
    txn.execute(
        "SELECT MAX(asked_ts) FROM breakout_help_requests WHERE parent_room_id = ?",
        (parent,),
    )
    row = txn.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class HelpStore:
    """The help requests' limit and record."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def claim(
        self, parent: str, room_id: str, user_id: str, interval_ms: int
    ) -> int | None:
        """Claim ``user_id``'s right to ask for help from ``room_id`` now:
        None if granted, else the milliseconds to wait."""
        return await self._api.run_db_interaction(
            "breakout_claim_help",
            _claim_help_txn,
            parent,
            room_id,
            user_id,
            self._api.get_current_time_msec(),
            interval_ms,
        )

    async def sent(
        self, room_id: str, user_id: str, event_id: str, muted: bool
    ) -> None:
        """Record the message a claimed help request sent to the parent."""
        await self._api.run_db_interaction(
            "breakout_help_sent", _sent_txn, room_id, user_id, event_id, muted
        )

    async def latest(self, parent: str) -> int:
        """When help was last asked in ``parent`` (0: never)."""
        return await self._api.run_db_interaction(
            "breakout_latest_help", _latest_txn, parent
        )

    async def recent(self, parent: str, since: int, limit: int) -> list[HelpRequest]:
        """The help requests sent to ``parent`` since ``since``, newest first."""
        return await self._api.run_db_interaction(
            "breakout_recent_help", _recent_txn, parent, since, limit
        )
