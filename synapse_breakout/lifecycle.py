"""What runs in the background, once, on the instance that runs background tasks.

- Recovery, at start-up and every ``recovery_interval_seconds``: operations a
  crash left unfinished are rolled back (or forward, when their break-out event
  was sent), and rooms of rolled-back operations are deleted until none is left.
- Timers: a break-out whose ``duration_seconds`` has passed is ended as
  ``DELETE`` would, with the message "Time is up", once.
- Ejection (``eject_on_parent_leave``): a user who left or was banned from a
  parent is removed from the children of its active break-out.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.api.errors import SynapseError
from synapse.module_api import ModuleApi

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BREAKOUT_EVENT_TYPES, BreakoutConfig
from synapse_breakout.metrics import RECOVERIES
from synapse_breakout.operations import (
    TIME_IS_UP,
    BreakoutActiveError,
    BreakoutOperations,
)
from synapse_breakout.power import membership
from synapse_breakout.store import (
    ActiveBreakout,
    Operation,
    OperationState,
    OperationStore,
)

logger = logging.getLogger(__name__)

#: How often deadlines are checked.
TIMER_INTERVAL_MS = 1000
#: How often children are compared with their parent's members.
EJECTION_INTERVAL_MS = 5000
#: A pending operation of another process that has not moved for this long is
#: taken for dead (every created room refreshes it).
STALE_AFTER_MS = 120_000


class Lifecycle:
    """Recovery, timers and ejection."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        operations: BreakoutOperations,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._ops = operations

    def schedule(self) -> None:
        """Start the loops (the caller runs ``recover`` once at start-up)."""
        self._api.looping_background_call(
            self.recover,
            self._config.recovery_interval_seconds * 1000,
            desc="breakout_recover",
        )
        self._api.looping_background_call(
            self.end_due, TIMER_INTERVAL_MS, desc="breakout_timers"
        )
        if self._config.eject_on_parent_leave:
            self._api.looping_background_call(
                self.eject_leavers, EJECTION_INTERVAL_MS, desc="breakout_eject"
            )

    # --- recovery -------------------------------------------------------------------

    def _abandoned(self, op: Operation, now: int) -> bool:
        if op.state == OperationState.ROLLING_BACK:
            return True
        if op.instance == self._ops.instance:
            return op.process_token != self._ops.process_token
        return now - op.updated_ts > STALE_AFTER_MS

    async def recover(self) -> int:
        """Finish every operation a crash left unfinished; returns how many."""
        now = self._api.get_current_time_msec()
        await self._release_dead_locks(now)
        finished = 0
        for op in await self._store.unfinished():
            if not self._abandoned(op, now):
                continue
            try:
                if await self._recover_one(op):
                    finished += 1
            except Exception:
                RECOVERIES.labels("error").inc()
                logger.exception("Recovering break-out operation %s failed", op.op_id)
        return finished

    async def _release_dead_locks(self, now: int) -> None:
        """Release parent locks an end or move left behind when its process died."""
        for parent, lock_id, locked_ts in await self._store.orphan_locks():
            _, instance, token, *_ = [*lock_id.split(":"), "", "", ""]
            dead = instance == self._ops.instance and token != self._ops.process_token
            if dead or now - locked_ts > STALE_AFTER_MS:
                await self._store.unlock(parent, lock_id)
                logger.info(
                    "Released the lock %s on %s: its process is gone", lock_id, parent
                )

    async def _recover_one(self, op: Operation) -> bool:
        rooms = await self._ops.operation_rooms(op)
        if op.state == OperationState.PENDING and rooms:
            try:
                state = await self._ops.parent_state(op.parent_room_id, members=())
            except SynapseError:
                state = {}
            current = self._ops.current(state)
            if (
                current.event is not None
                and current.content is not None
                and (set(current.content.room_ids) == rooms)
            ):
                await self._roll_forward(
                    op,
                    current.event.event_id,
                    current.event.origin_server_ts,
                    current.content.to_json(),
                )
                return True
        if op.state == OperationState.PENDING:
            logger.info("Rolling back break-out %s, left unfinished", op.op_id)
            done = await self._ops.roll_back(
                op,
                crashed=True,
                error={
                    "status": 500,
                    "errcode": "M_UNKNOWN",
                    "error": "the homeserver stopped during the operation; it was "
                    "rolled back",
                },
            )
        else:
            rooms = await self._ops.operation_rooms(op, crashed=True)
            remaining = await synapse_adapter.existing_rooms(self._api, rooms)
            for room_id in sorted(remaining):
                try:
                    await self._api.delete_room(room_id)
                except SynapseError as e:
                    # Typically: its purge is already running.
                    logger.debug("Deleting %s again: %s", room_id, e.msg)
            done = not remaining
            if done:
                await self._store.finish(
                    op.op_id, OperationState.ROLLED_BACK, op.response
                )
        if done:
            RECOVERIES.labels("rolled_back").inc()
            logger.info("Break-out %s rolled back: no room of it is left", op.op_id)
        return done

    async def _roll_forward(
        self, op: Operation, event_id: str, sent_ts: int, content: dict[str, Any]
    ) -> None:
        """The break-out event was sent before the crash: the operation stands,
        with its deadline, and its users are moved now."""
        ((_, children),) = content.items()
        rooms = [
            {"room_id": r, "name": None, "users": e.get("users", []), "via": e["via"]}
            for r, e in children.items()
        ]
        response = await self._ops.commit(op, event_id, sent_ts, rooms)
        await self._ops.move_users(op, response)
        RECOVERIES.labels("rolled_forward").inc()
        logger.info("Break-out %s was sent before a crash: kept", op.op_id)

    # --- timers -----------------------------------------------------------------------

    async def end_due(self) -> int:
        """End every break-out whose deadline has passed; returns how many."""
        ended = 0
        for active in await self._store.due(self._api.get_current_time_msec()):
            try:
                await self._ops.end(
                    active.acting_user, active.parent_room_id, TIME_IS_UP, False
                )
                ended += 1
            except BreakoutActiveError:
                continue  # another operation holds the parent: next tick
            except SynapseError as e:
                # Ended by hand meanwhile (404), or no one can act any more.
                logger.info(
                    "Break-out in %s was due but not ended: %s",
                    active.parent_room_id,
                    e.msg,
                )
            # Whatever happened, this deadline is spent.
            await self._store.claim_end(active.parent_room_id, active.op_id)
        return ended

    # --- ejection -----------------------------------------------------------------

    async def eject_leavers(self) -> int:
        """Remove from the children every user who left the parent; returns how many."""
        removed = 0
        for active in await self._store.list_active():
            try:
                removed += await self._eject(active)
            except Exception:
                logger.exception("Ejection in %s failed", active.parent_room_id)
        return removed

    async def _eject(self, active: ActiveBreakout) -> int:
        parent = active.parent_room_id
        breakout = await self._api.get_room_state(
            parent, [(t, "") for t in BREAKOUT_EVENT_TYPES]
        )
        current = self._ops.current(breakout)
        if not current.active or current.content is None:
            return 0
        here = await synapse_adapter.rooms_with_create_event(
            self._api, current.content.room_ids
        )
        # The children's members, then only their memberships in the parent:
        # never the whole membership of a large parent.
        in_children: dict[str, list[str]] = {}
        for room_id in sorted(here):
            members = await self._api.get_room_state(room_id, [("m.room.member", None)])
            for (_, user), event in members.items():
                if event.content.get("membership") in ("join", "invite"):
                    in_children.setdefault(user, []).append(room_id)
        if not in_children:
            return 0
        in_parent = await self._api.get_room_state(
            parent, [("m.room.member", user) for user in in_children]
        )
        removed = 0
        for user, rooms in sorted(in_children.items()):
            if membership(user, in_parent) not in ("leave", "ban"):
                continue
            for room_id in rooms:
                try:
                    await synapse_adapter.update_membership(
                        self._api, active.acting_user, user, room_id, "leave"
                    )
                    removed += 1
                    logger.info(
                        "Removed %s from %s: they left %s", user, room_id, parent
                    )
                except SynapseError as e:
                    logger.warning(
                        "Could not remove %s from %s: %s", user, room_id, e.msg
                    )
        return removed
