"""Deadlines: moving one (``POST /rooms/{parentRoomId}/deadline``) and the
warnings before it (``warn_before_end_seconds``).

The end itself is the timer's (lifecycle.py): it ends a break-out when the
deadline in ``breakout_active`` has passed, so moving the deadline moves the
end. A warning is sent by whoever claims its row in ``breakout_warnings``
first: once, whichever worker runs the loop, and across restarts
(docs/configuration.md says which warnings are skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import notices
from synapse_breakout.announce import Announcer
from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import BREAKOUT_STATE, current_breakout
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.model import DeadlineAnswer, DeadlineChange
from synapse_breakout.parent import ParentRooms
from synapse_breakout.placement import Placement
from synapse_breakout.store import OperationStore

logger = logging.getLogger(__name__)

#: The furthest a deadline may lie ahead: a week, like ``duration_seconds``.
MAX_DEADLINE_MS = 7 * 24 * 3600 * 1000
#: A warning this late still says its own time ("5 minutes left"); a later
#: one (the server was down) says the time actually left.
ON_TIME_MS = 5000


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


def due_warnings(
    offsets: Sequence[int],
    ends_at: int,
    armed_ts: int,
    now: int,
    claimed: frozenset[int],
) -> tuple[int, ...]:
    """The warnings due now: their time came after the deadline was set, the
    deadline is still ahead, and nobody claimed them yet."""
    return tuple(
        offset
        for offset in offsets
        if offset not in claimed and armed_ts < ends_at - offset * 1000 <= now < ends_at
    )


def warning_seconds(offset: int, ends_at: int, now: int) -> int:
    """What a warning says is left: its offset when on time, otherwise (it
    is late) the time actually left, in whole seconds rounded up."""
    if now - (ends_at - offset * 1000) <= ON_TIME_MS:
        return offset
    return -(-(ends_at - now) // 1000)


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


class Deadlines:
    """``POST .../deadline`` and the warnings loop's work."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        parents: ParentRooms,
        placement: Placement,
        announcer: Announcer,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._parents = parents
        self._placement = placement
        self._announcer = announcer

    async def move(
        self, requester: str, parent: str, change: DeadlineChange
    ) -> DeadlineAnswer:
        """Set, move or lift the deadline; a ``deadline`` notice in every own child."""
        found = await self._parents.in_force(parent, [requester])
        acting = await self._parents.actor(requester, parent, found.state)
        running = await self._store.get_running(parent)
        if running is None:
            raise SynapseError(
                HTTPStatus.NOT_FOUND,
                f"the break-out in {parent} was not started through this API: "
                "it has no deadline",
                Codes.NOT_FOUND,
            )
        now = self._api.get_current_time_msec()
        ends_at = change.apply(running.ends_at, now)
        field = "ends_at" if change.add_seconds is None else "add_seconds"
        if ends_at is not None and not now < ends_at <= now + MAX_DEADLINE_MS:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"{field}: the new deadline must lie in the future, at most "
                f"{MAX_DEADLINE_MS // 1000} seconds from now",
                Codes.INVALID_PARAM,
            )
        if not await self._api.run_db_interaction(
            "breakout_set_deadline",
            _set_deadline_txn,
            parent,
            running.op_id,
            ends_at,
            now,
        ):
            raise SynapseError(
                HTTPStatus.NOT_FOUND,
                f"{parent} has no active break-out",
                Codes.NOT_FOUND,
            )
        if self._announcer.enabled:
            own = await self._parents.own_rooms(parent, found.content)
            # A moderator acts as themselves: they enter the rooms first.
            entered, _ = await self._placement.enter_all(
                acting,
                [room_id for room_id in found.content.room_ids if room_id in own],
                running.acting_user,
            )
            await self._announcer.to_children(
                acting,
                entered,
                notices.deadline(
                    found.event.event_id, self._announcer.seconds_left(ends_at)
                ),
            )
        OPERATIONS.labels("deadline", "ok").inc()
        logger.info("Deadline of the break-out in %s set to %s", parent, ends_at)
        return {"ends_at": ends_at}

    async def warn_due(self) -> int:
        """Send every warning due now, once; returns how many were sent."""
        offsets = self._config.warn_before_end_seconds
        if not offsets or not self._announcer.enabled:
            return 0
        now = self._api.get_current_time_msec()
        armed = await self._api.run_db_interaction(
            "breakout_armed_deadlines", _armed_txn, now, now + max(offsets) * 1000
        )
        sent = 0
        for breakout in armed:
            due = due_warnings(
                offsets, breakout.ends_at, breakout.armed_ts, now, breakout.claimed
            )
            if not due or not await self._api.run_db_interaction(
                "breakout_claim_warnings",
                _claim_warnings_txn,
                breakout.op_id,
                breakout.ends_at,
                due,
                now,
            ):
                continue
            try:
                await self._warn(
                    breakout, warning_seconds(min(due), breakout.ends_at, now)
                )
                sent += 1
            except Exception:
                logger.exception("Warning in %s failed", breakout.parent_room_id)
        return sent

    async def _warn(self, breakout: Armed, seconds_left: int) -> None:
        current = current_breakout(
            await self._api.get_room_state(breakout.parent_room_id, BREAKOUT_STATE)
        )
        if not current.in_force or current.event is None or current.content is None:
            return
        own = await self._parents.own_rooms(breakout.parent_room_id, current.content)
        await self._announcer.to_children(
            breakout.acting_user,
            [room_id for room_id in current.content.room_ids if room_id in own],
            notices.warning(current.event.event_id, seconds_left),
        )
