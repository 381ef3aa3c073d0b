"""Help requests (``breakout_help_requests``): the last one from each child
room, for the limit of one a minute (operations/help.py)."""

from __future__ import annotations

from synapse.module_api import LoggingTransaction, ModuleApi


def _claim_help_txn(
    txn: LoggingTransaction, room_id: str, now: int, interval: int
) -> int | None:
    """Record a help request from ``room_id``: None if it may be sent, else
    the milliseconds until the room may ask again."""
    txn.execute(
        "SELECT asked_ts FROM breakout_help_requests WHERE room_id = ?", (room_id,)
    )
    row = txn.fetchone()
    if row is None:
        txn.execute(
            "INSERT INTO breakout_help_requests (room_id, asked_ts) VALUES (?, ?)"
            " ON CONFLICT (room_id) DO NOTHING",
            (room_id, now),
        )
    elif now - row[0] < interval:
        return interval - (now - int(row[0]))
    else:
        txn.execute(
            "UPDATE breakout_help_requests SET asked_ts = ?"
            " WHERE room_id = ? AND asked_ts = ?",
            (now, room_id, row[0]),
        )
    # Another request from the room won the race: it was just sent.
    return None if txn.rowcount == 1 else interval


class HelpStore:
    """The help requests' limit, shared by every worker (compare-and-set)."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def claim(self, room_id: str, interval_ms: int) -> int | None:
        """Claim the right to ask for help from ``room_id`` now: None if
        granted, else the milliseconds to wait."""
        return await self._api.run_db_interaction(
            "breakout_claim_help",
            _claim_help_txn,
            room_id,
            self._api.get_current_time_msec(),
            interval_ms,
        )
