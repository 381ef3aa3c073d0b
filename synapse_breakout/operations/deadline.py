"""Deadlines: moving one (``POST /rooms/{parentRoomId}/deadline``) and the
warnings before it (``warn_before_end_seconds``).

The end itself is the timer's (background/loops.py): it ends a break-out when
the deadline in ``breakout_active`` has passed, so moving the deadline moves
the end. A warning is sent by whoever claims its row first (journal/deadlines.py):
once, whichever worker runs the loop, and across restarts
(docs/configuration.md says which warnings are skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import defer

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.deadlines import Armed, DeadlineStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix import notices
from synapse_breakout.matrix.content import BREAKOUT_STATE, current_breakout
from synapse_breakout.matrix.model import DeadlineAnswer, DeadlineChange
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.rooms.acting import ActingUsers
from synapse_breakout.rooms.announcer import Announcer
from synapse_breakout.rooms.memberships import Memberships
from synapse_breakout.rooms.parent import ParentRooms

logger = logging.getLogger(__name__)

#: The furthest a deadline may lie ahead: a week, like ``duration_seconds``.
MAX_DEADLINE_MS = 7 * 24 * 3600 * 1000
#: A warning this late still says its own time ("5 minutes left"); a later
#: one (the server was down) says the time actually left.
ON_TIME_MS = 5000


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


class DeadlineKeeper:
    """``POST .../deadline`` and the warnings loop's work."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        deadlines: DeadlineStore,
        parents: ParentRooms,
        acting: ActingUsers,
        memberships: Memberships,
        announcer: Announcer,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._deadlines = deadlines
        self._parents = parents
        self._acting = acting
        self._memberships = memberships
        self._announcer = announcer

    async def move(
        self, requester: str, parent: str, change: DeadlineChange
    ) -> DeadlineAnswer:
        """Set, move or lift the deadline; a ``deadline`` notice in every own child."""
        found = await self._parents.in_force(parent, [requester])
        acting = await self._acting.actor(requester, parent, found.state)
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
        if not await self._deadlines.set_deadline(parent, running.op_id, ends_at, now):
            raise SynapseError(
                HTTPStatus.NOT_FOUND,
                f"{parent} has no active break-out",
                Codes.NOT_FOUND,
            )
        if self._announcer.enabled:
            own = await self._parents.own_in_order(parent, found)
            # A moderator acts as themselves: they enter the rooms first.
            entered, _ = await self._memberships.enter_all(
                parent, acting, own, running.acting_user
            )
            await self._announcer.to_children(
                parent,
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
        armed = await self._deadlines.armed(now, now + max(offsets) * 1000)
        sent = 0
        for breakout in armed:
            due = due_warnings(
                offsets, breakout.ends_at, breakout.armed_ts, now, breakout.claimed
            )
            if not due or not await self._deadlines.claim_warnings(
                breakout.op_id, breakout.ends_at, due, now
            ):
                continue
            try:
                await self._warn(
                    breakout, warning_seconds(min(due), breakout.ends_at, now)
                )
                sent += 1
            except defer.CancelledError:
                raise  # the homeserver shuts down
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
            breakout.parent_room_id,
            breakout.acting_user,
            [room_id for room_id in current.content.room_ids if room_id in own],
            notices.warning(current.event.event_id, seconds_left),
        )
