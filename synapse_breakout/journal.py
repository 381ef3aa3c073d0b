"""Operations' liveness: whose they are, the rooms they made, rolling them back.

Every start is journalled (store.py) before it creates anything; its rooms are
recorded as they are made. This file is the one place that knows which process
owns an operation or a parent lock (the lock-ID format is written and read
here only), which rooms an operation made, and how they are deleted. Recovery
after a crash (docs/operations.md) finishes what a dead process left: it rolls
an operation back, or forward when its break-out event was sent.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.content import BREAKOUT_STATE, BreakoutContent, current_breakout
from synapse_breakout.metrics import RECOVERIES
from synapse_breakout.model import error_json
from synapse_breakout.store import Operation, OperationState, OperationStore

logger = logging.getLogger(__name__)

#: Key of the create-event content that marks a child room as made by an operation.
CREATION_MARKER = "org.matrix.msc3985.breakout_parent"
#: A pending operation of another process that has not moved for this long is
#: taken for dead (every created room refreshes it); so is a lock that old.
STALE_AFTER_MS = 120_000

#: Finishes a start whose break-out event was sent before its process died.
RollForward = Callable[[Operation, EventBase, BreakoutContent], Awaitable[None]]


def failure(e: SynapseError) -> dict[str, Any]:
    """The stored answer of a failed operation, replayed for its txn_id."""
    return {"status": e.code, **error_json(e)}


_CRASHED = SynapseError(
    HTTPStatus.INTERNAL_SERVER_ERROR,
    "the homeserver stopped during the operation; it was rolled back",
    Codes.UNKNOWN,
)


@attrs.frozen
class LockOwner:
    """Who holds a parent lock, read from its ID."""

    kind: str
    instance: str
    token: str


def parse_lock_id(lock_id: str) -> LockOwner:
    """The owner named in a lock ID made by :meth:`Journal.lock_id`."""
    kind, instance, token, *_ = [*lock_id.split(":"), "", "", ""]
    return LockOwner(kind, instance, token)


class Journal:
    """This process's identity, operations' rooms, roll back and recovery."""

    def __init__(self, api: ModuleApi, store: OperationStore):
        self._api = api
        self._store = store
        self.instance = api.worker_name or "master"
        #: Tells this process's operations from a crashed predecessor's.
        self.process_token = secrets.token_hex(8)

    # --- liveness -------------------------------------------------------------

    def lock_id(self, kind: str) -> str:
        """A parent-lock holder ID naming this process, for recovery."""
        return f"{kind}:{self.instance}:{self.process_token}:{secrets.token_hex(4)}"

    def _owner_gone(self, instance: str, token: str, last_seen: int, now: int) -> bool:
        """Whether the process that wrote ``instance`` and ``token`` is dead:
        this instance's earlier run, or another's that has not moved for long."""
        if instance == self.instance:
            return token != self.process_token
        return now - last_seen > STALE_AFTER_MS

    def abandoned(self, op: Operation, now: int) -> bool:
        """Whether recovery must finish ``op``: no live process will."""
        if op.state == OperationState.ROLLING_BACK:
            return True
        return self._owner_gone(op.instance, op.process_token, op.updated_ts, now)

    def _lock_abandoned(self, lock_id: str, locked_ts: int, now: int) -> bool:
        owner = parse_lock_id(lock_id)
        stale = now - locked_ts > STALE_AFTER_MS
        return stale or self._owner_gone(owner.instance, owner.token, locked_ts, now)

    # --- rooms and roll back -----------------------------------------------------

    async def operation_rooms(self, op: Operation, crashed: bool = False) -> set[str]:
        """Every room ``op`` created: journalled, marked in its create event, or
        (``crashed``: its process died) an empty shell of its acting user's."""
        rooms = set(await self._store.rooms_of(op.op_id))
        if op.acting_user:
            for room_id in await synapse_adapter.rooms_created_by(
                self._api, op.acting_user, op.created_ts
            ):
                if room_id in rooms:
                    continue
                create = (
                    await self._api.get_room_state(room_id, [("m.room.create", "")])
                ).get(("m.room.create", ""))
                marker = create.content.get(CREATION_MARKER) if create else None
                if isinstance(marker, Mapping) and marker.get("operation") == op.op_id:
                    rooms.add(room_id)
        if crashed and op.acting_user:
            # A crash between Synapse registering a room and storing its create
            # event leaves an empty shell, of no use to anyone: it goes too.
            rooms.update(
                await synapse_adapter.empty_rooms_created_by(self._api, op.acting_user)
            )
        return rooms

    async def _delete_rooms(self, op: Operation, crashed: bool) -> int:
        """Delete (shut down and purge) every room of ``op`` still here.

        Returns:
            How many of its rooms were still here: 0 when none is left.
        """
        rooms = await self.operation_rooms(op, crashed)
        remaining = await synapse_adapter.existing_rooms(self._api, rooms)
        dropped = await synapse_adapter.release_other_processes_room_locks(
            self._api, remaining
        )
        if dropped:
            logger.info("Dropped %d locks a dead process held on them", dropped)
        for room_id in sorted(remaining):
            try:
                await self._api.delete_room(room_id)
            except SynapseError as e:
                # Typically: its purge is already running.
                logger.debug("Deleting %s again: %s", room_id, e.msg)
            except Exception:
                logger.exception("Could not delete room %s of %s", room_id, op.op_id)
        return len(remaining)

    async def roll_back(
        self, op: Operation, error: dict[str, Any], crashed: bool = False
    ) -> bool:
        """Delete every room ``op`` made; the parent's state is untouched.

        The journal says ``rolling_back`` (which releases the parent's lock and
        keeps ``error`` for a repeated txn_id) until no room of ``op`` is left;
        Synapse purges rooms in the background, so recovery finishes the job.

        Returns:
            Whether no room of ``op`` is left.
        """
        await self._store.finish(op.op_id, OperationState.ROLLING_BACK, error)
        remaining = await self._delete_rooms(op, crashed)
        if not remaining:
            await self._store.finish(op.op_id, OperationState.ROLLED_BACK, error)
        logger.info(
            "Rolling back break-out %s in %s: %d rooms to delete (%s)",
            op.op_id,
            op.parent_room_id,
            remaining,
            error.get("error"),
        )
        return not remaining

    # --- recovery ---------------------------------------------------------------

    async def recover(self, roll_forward: RollForward) -> int:
        """Finish every operation a crash left unfinished; returns how many."""
        now = self._api.get_current_time_msec()
        await self._release_dead_locks(now)
        finished = 0
        for op in await self._store.unfinished():
            if not self.abandoned(op, now):
                continue
            try:
                if await self._recover_one(op, roll_forward):
                    finished += 1
            except Exception:
                RECOVERIES.labels("error").inc()
                logger.exception("Recovering break-out operation %s failed", op.op_id)
        return finished

    async def _release_dead_locks(self, now: int) -> None:
        """Release parent locks an end or reassignment left when its process died."""
        for parent, lock_id, locked_ts in await self._store.orphan_locks():
            if self._lock_abandoned(lock_id, locked_ts, now):
                await self._store.unlock(parent, lock_id)
                logger.info(
                    "Released the lock %s on %s: its process is gone", lock_id, parent
                )

    async def _recover_one(self, op: Operation, roll_forward: RollForward) -> bool:
        rooms = await self.operation_rooms(op)
        if op.state == OperationState.PENDING and rooms:
            try:
                state = await self._api.get_room_state(
                    op.parent_room_id, BREAKOUT_STATE
                )
            except SynapseError:
                state = {}
            current = current_breakout(state)
            if (
                current.event is not None
                and current.content is not None
                and set(current.content.room_ids) == rooms
            ):
                await roll_forward(op, current.event, current.content)
                RECOVERIES.labels("rolled_forward").inc()
                logger.info("Break-out %s was sent before a crash: kept", op.op_id)
                return True
        if op.state == OperationState.PENDING:
            logger.info("Rolling back break-out %s, left unfinished", op.op_id)
            done = await self.roll_back(op, failure(_CRASHED), crashed=True)
        else:
            done = not await self._delete_rooms(op, crashed=True)
            if done:
                await self._store.finish(
                    op.op_id, OperationState.ROLLED_BACK, op.response
                )
        if done:
            RECOVERIES.labels("rolled_back").inc()
            logger.info("Break-out %s rolled back: no room of it is left", op.op_id)
        return done
