"""Deadlines and the warnings before them: ``breakout_active.ends_at`` and
``breakout_warnings``.

A warning is sent by whoever claims its row first: once, whichever worker runs
the loop, and across restarts (operations/deadline.py decides which are due).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi


@attrs.frozen
class Armed:
    """A running break-out whose deadline is near, as the warnings see it."""

    parent_room_id: str
    op_id: str
    acting_user: str
    ends_at: int
    #: When this deadline was set: warnings due before then are not sent.
    armed_ts: int
    #: The offsets already claimed for this deadline.
    claimed: frozenset[int]


def _armed_txn(txn: LoggingTransaction, now: int, horizon: int) -> list[Armed]:
    """Running break-outs whose deadline lies in (now, horizon], with the
    warnings claimed for that deadline."""
    txn.execute(
        "SELECT a.parent_room_id, a.op_id, a.acting_user, a.ends_at,"
        " COALESCE(a.deadline_set_ts, a.started_ts), w.offset_seconds"
        " FROM breakout_active a LEFT JOIN breakout_warnings w"
        " ON w.op_id = a.op_id AND w.ends_at = a.ends_at"
        " WHERE a.ends_at > ? AND a.ends_at <= ?",
        (now, horizon),
    )
    rows: dict[str, tuple[Any, ...]] = {}
    claimed: dict[str, set[int]] = {}
    for *row, offset in txn:
        rows.setdefault(row[1], tuple(row))
        offsets = claimed.setdefault(row[1], set())
        if offset is not None:
            offsets.add(offset)
    return [
        Armed(
            parent_room_id=row[0],
            op_id=op_id,
            acting_user=row[2],
            ends_at=row[3],
            armed_ts=row[4],
            claimed=frozenset(claimed[op_id]),
        )
        for op_id, row in rows.items()
    ]


def _claim_warnings_txn(
    txn: LoggingTransaction,
    op_id: str,
    ends_at: int,
    offsets: Sequence[int],
    now: int,
) -> bool:
    """Claim ``offsets`` for a deadline; True if this caller claimed the
    smallest, the one it then sends (the larger are skipped: they are late)."""
    claimed = False
    for i, offset in enumerate(sorted(offsets)):
        txn.execute(
            "INSERT INTO breakout_warnings (op_id, ends_at, offset_seconds, sent_ts)"
            " VALUES (?, ?, ?, ?)"
            " ON CONFLICT (op_id, ends_at, offset_seconds) DO NOTHING",
            (op_id, ends_at, offset, now),
        )
        if i == 0:
            claimed = txn.rowcount == 1
    return claimed


def _set_deadline_txn(
    txn: LoggingTransaction, parent: str, op_id: str, ends_at: int | None, now: int
) -> bool:
    """Move a running break-out's deadline; False if it ended or its
    deadline passed (the timer is ending it)."""
    txn.execute(
        "UPDATE breakout_active SET ends_at = ?, deadline_set_ts = ?"
        " WHERE parent_room_id = ? AND op_id = ? AND (ends_at IS NULL OR ends_at > ?)",
        (ends_at, now, parent, op_id, now),
    )
    return txn.rowcount == 1


class DeadlineStore:
    """Reads and writes of deadlines and warnings."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def armed(self, now: int, horizon: int) -> list[Armed]:
        """The running break-outs whose deadline lies in (now, horizon]."""
        return await self._api.run_db_interaction(
            "breakout_armed_deadlines", _armed_txn, now, horizon
        )

    async def claim_warnings(
        self, op_id: str, ends_at: int, offsets: Sequence[int], now: int
    ) -> bool:
        """Claim the warnings ``offsets`` of a deadline; True if this process
        sends the smallest."""
        return await self._api.run_db_interaction(
            "breakout_claim_warnings", _claim_warnings_txn, op_id, ends_at, offsets, now
        )

    async def set_deadline(
        self, parent: str, op_id: str, ends_at: int | None, now: int
    ) -> bool:
        """Move the deadline of the running break-out ``op_id``; False if it
        ended or its deadline passed."""
        return await self._api.run_db_interaction(
            "breakout_set_deadline", _set_deadline_txn, parent, op_id, ends_at, now
        )
