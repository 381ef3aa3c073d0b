"""The spam-checker's verdicts on break-out events' senders (hooks/sender_trust.py).

One row per break-out event, in the table created by schema.py; one ``_txn``
function per query, each with its own description.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi


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


def _forget_txn(txn: LoggingTransaction, event_id: str) -> None:
    txn.execute("DELETE FROM breakout_sender_verdicts WHERE event_id = ?", (event_id,))


class VerdictStore:
    """The verdicts of the spam-checker hook, one row per break-out event."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def record(self, verdict: SenderVerdict) -> bool:
        """Store ``verdict``; the first verdict on an event stays (False then)."""
        return await self._api.run_db_interaction(
            "breakout_record_sender_verdict", _record_verdict_txn, verdict
        )

    async def forget(self, event_id: str) -> None:
        """Delete the verdict on an event Synapse did not accept."""
        await self._api.run_db_interaction(
            "breakout_forget_sender_verdict", _forget_txn, event_id
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
