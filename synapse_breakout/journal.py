"""Operations' liveness: whose they are, the rooms they made, rolling them back.

Every start is journalled (store.py) before it creates anything; its rooms are
recorded as they are made. This file is the one place that knows which process
owns an operation or a parent lock (the lock-ID format is written and read
here only), which rooms an operation made, and how they are deleted. Recovery
after a crash (docs/operations.md) finishes what a dead process left: it rolls
an operation back, or forward when its break-out event was sent.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from http import HTTPStatus
from typing import Any, cast

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.content import BREAKOUT_STATE, BreakoutContent, current_breakout
from synapse_breakout.metrics import RECOVERIES
from synapse_breakout.model import BreakoutActiveError, StartAnswer, error_json
from synapse_breakout.store import Operation, OperationState, OperationStore

logger = logging.getLogger(__name__)

#: Key of the create-event content that marks a child room as made by an operation.
CREATION_MARKER = "org.matrix.msc3985.breakout_parent"
#: How often a process bumps the lease of what it holds (upkeep.py).
RENEW_EVERY_MS = 5_000
#: An operation or lock of another process whose lease counter stood still this
#: long, as the recovering process's own clock measures it, is taken for dead.
LEASE_MS = 30_000

#: Finishes a start whose break-out event was sent before its process died.
RollForward = Callable[[Operation, EventBase, BreakoutContent], Awaitable[None]]


def failure(e: SynapseError) -> dict[str, Any]:
    """The stored answer of a failed operation, replayed for its txn_id."""
    return {"status": e.code, **error_json(e)}


#: The answer of a start whose process was taken for dead (its lease expired)
#: and rolled back by recovery while its event was being sent.
ROLLED_BACK_MEANWHILE = SynapseError(
    HTTPStatus.INTERNAL_SERVER_ERROR,
    "the operation was taken for dead and rolled back while its break-out "
    "event was being sent; that event was withdrawn",
    Codes.UNKNOWN,
)


def check_same_parent(earlier: Operation, parent: str) -> None:
    """A txn_id names one start on one parent: reused elsewhere, it is a 400
    (whether the caller waits or not)."""
    if earlier.parent_room_id != parent:
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"txn_id: {earlier.txn_id!r} was already used for a break-out in "
            f"{earlier.parent_room_id}",
            Codes.INVALID_PARAM,
        )


def replay(earlier: Operation, parent: str) -> StartAnswer:
    """The first answer of an operation repeated with the same txn_id."""
    check_same_parent(earlier, parent)
    if earlier.state == OperationState.PENDING or earlier.response is None:
        raise BreakoutActiveError(
            f"the operation with txn_id {earlier.txn_id!r} is still under way"
        )
    stored = earlier.response
    if stored.get("status") == HTTPStatus.OK:
        return cast(StartAnswer, stored["body"])
    raise SynapseError(stored["status"], stored["error"], stored["errcode"])


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
        #: Leases of other processes' operations and locks as last seen here:
        #: key -> (counter, when this process first saw that counter).
        self._seen: dict[str, tuple[int, int]] = {}
        #: Operations and locks this process holds now (their leases are renewed).
        self.held = 0
        self._recheck = False

    # --- liveness -------------------------------------------------------------

    def lock_id(self, kind: str) -> str:
        """A parent-lock holder ID naming this process, for recovery."""
        return f"{kind}:{self.instance}:{self.process_token}:{secrets.token_hex(4)}"

    def lease_pattern(self) -> str:
        """A SQL ``LIKE`` pattern matching the lock IDs of this process."""
        return f"%:{self.instance}:{self.process_token}:%"

    def _owner_gone(
        self, key: str, instance: str, token: str, lease: int, now: int
    ) -> bool:
        """Whether the process that wrote ``instance`` and ``token`` is dead.

        This instance's earlier run is dead at once. Another process is dead
        once the lease counter it bumps every ``RENEW_EVERY_MS`` stood still
        for ``LEASE_MS``: both instants come from this process's clock, so
        no two hosts' clocks are ever compared (docs/operations.md).
        """
        if instance == self.instance:
            return token != self.process_token
        seen = self._seen.get(key)
        if seen is None or seen[0] != lease:
            self._seen[key] = (lease, now)
            return False
        return now - seen[1] >= LEASE_MS

    def abandoned(self, op: Operation, now: int) -> bool:
        """Whether recovery must finish ``op``: no live process will."""
        return self._owner_gone(op.op_id, op.instance, op.process_token, op.lease, now)

    def _lock_abandoned(self, lock_id: str, lease: int, now: int) -> bool:
        owner = parse_lock_id(lock_id)
        return self._owner_gone(lock_id, owner.instance, owner.token, lease, now)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Renew this process's leases while the block runs (upkeep.py)."""
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    # --- rooms and roll back -----------------------------------------------------

    async def operation_rooms(self, op: Operation) -> set[str]:
        """Every room ``op`` can prove it created: journalled, or marked with
        its ID in its create event. Nothing else is ever deleted."""
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
        return rooms

    async def _delete_rooms(self, op: Operation, crashed: bool) -> int:
        """Delete (shut down and purge) every room of ``op`` still here.

        Returns:
            How many of its rooms were still here: 0 when none is left.
        """
        rooms = await self.operation_rooms(op)
        remaining = await synapse_adapter.existing_rooms(self._api, rooms)
        if crashed:
            # Only a dead process's locks: a live worker's are left alone.
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
        locks = await self._store.locks.orphan_locks()
        operations = await self._store.unfinished()
        # Forget the leases of what is gone; a committed start still placing
        # its users is not gone (placing.py resumes it once its lease stood
        # still, which takes two looks a lease apart).
        placing = await self._store.assignments.unplaced()
        held = (
            {lock_id for _, lock_id, _ in locks}
            | {op.op_id for op in operations}
            | set(placing)
        )
        self._seen = {k: v for k, v in self._seen.items() if k in held}
        waiting = await self._release_dead_locks(locks, now)
        finished = 0
        for op in operations:
            crashed = self.abandoned(op, now)
            if op.state == OperationState.PENDING and not crashed:
                waiting = waiting or op.instance != self.instance
                continue
            try:
                if await self._recover_one(op, roll_forward, crashed):
                    finished += 1
            except Exception:
                RECOVERIES.labels("error").inc()
                logger.exception("Recovering break-out operation %s failed", op.op_id)
        if waiting and not self._recheck:
            # Look again once a lease has passed, not only at the next interval.
            self._recheck = True
            self._api.delayed_background_call(
                LEASE_MS + RENEW_EVERY_MS, self._recover_again, roll_forward
            )
        return finished

    async def _recover_again(self, roll_forward: RollForward) -> None:
        self._recheck = False
        await self.recover(roll_forward)

    async def _release_dead_locks(
        self, locks: list[tuple[str, str, int]], now: int
    ) -> bool:
        """Release parent locks an end or reassignment left when its process
        died; whether another process's lock is still waited on."""
        waiting = False
        for parent, lock_id, lease in locks:
            if self._lock_abandoned(lock_id, lease, now):
                await self._store.locks.unlock(parent, lock_id)
                logger.info(
                    "Released the lock %s on %s: its process is gone", lock_id, parent
                )
            else:
                waiting = waiting or parse_lock_id(lock_id).instance != self.instance
        return waiting

    async def _recover_one(
        self, op: Operation, roll_forward: RollForward, crashed: bool
    ) -> bool:
        rooms = await self.operation_rooms(op)
        if op.state == OperationState.PENDING and rooms:
            try:
                state = await self._api.get_room_state(
                    op.parent_room_id, BREAKOUT_STATE
                )
            except SynapseError:
                state = {}
            current = current_breakout(state)
            # Any of its rooms listed: the event was sent (and maybe edited
            # since). Rolling back would empty rooms the parent points to.
            if (
                current.event is not None
                and current.content is not None
                and rooms.intersection(current.content.room_ids)
            ):
                await roll_forward(op, current.event, current.content)
                RECOVERIES.labels("rolled_forward").inc()
                logger.info("Break-out %s was sent before a crash: kept", op.op_id)
                return True
        if op.state == OperationState.PENDING:
            logger.info("Rolling back break-out %s, left unfinished", op.op_id)
            done = await self.roll_back(op, failure(_CRASHED), crashed=True)
        else:
            done = not await self._delete_rooms(op, crashed)
            if done:
                await self._store.finish(
                    op.op_id, OperationState.ROLLED_BACK, op.response
                )
        if done:
            RECOVERIES.labels("rolled_back").inc()
            logger.info("Break-out %s rolled back: no room of it is left", op.op_id)
        return done
