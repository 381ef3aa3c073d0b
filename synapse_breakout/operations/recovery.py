"""Crash recovery: finishing what a dead process left (docs/operations.md).

Run at start-up and every ``recovery_interval_seconds`` by the instance that
runs background tasks (background/loops.py):

- a pending start whose process is dead is rolled back (rollback.py), or
  rolled forward when its break-out event was sent (after_commit.py);
- a start being rolled back is finished once Synapse purged its rooms;
- a parent lock an end or move left when its process died is released;
- a committed start whose placing process died is placed on here.

Whether a process is dead is ownership.py's to say.
"""

from __future__ import annotations

import logging
from typing import cast

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout.journal.assignment import AssignmentStore
from synapse_breakout.journal.locks import HeldLock, ParentLocks
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.ownership import LEASE_MS, RENEW_EVERY_MS, Ownership
from synapse_breakout.journal.rows import Operation, OperationState
from synapse_breakout.matrix.content import BREAKOUT_STATE, current_breakout
from synapse_breakout.matrix.model import StartAnswer
from synapse_breakout.metrics import RECOVERIES
from synapse_breakout.operations.after_commit import AfterCommit
from synapse_breakout.operations.rollback import RollBack
from synapse_breakout.operations.stored_answers import CRASHED, failure

logger = logging.getLogger(__name__)


class Recovery:
    """Finishes the operations, locks and placements of dead processes."""

    def __init__(
        self,
        api: ModuleApi,
        store: OperationStore,
        assignment: AssignmentStore,
        locks: ParentLocks,
        ownership: Ownership,
        rollback: RollBack,
        after_commit: AfterCommit,
    ):
        self._api = api
        self._store = store
        self._assignment = assignment
        self._locks = locks
        self._ownership = ownership
        self._rollback = rollback
        self._after_commit = after_commit
        self._recheck = False

    async def recover(self) -> int:
        """Finish every operation a crash left unfinished, and go on placing
        the users of those committed before it; returns how many."""
        finished = await self.finish_operations()
        return finished + await self.resume_placements()

    async def finish_operations(self) -> int:
        """Roll back or forward the unfinished operations of dead processes,
        release their locks; returns how many operations were finished."""
        now = self._api.get_current_time_msec()
        locks = await self._locks.orphan_locks()
        operations = await self._store.unfinished()
        # Forget the leases of what is gone; a committed start still placing
        # its users is not gone (it is resumed once its lease stood still,
        # which takes two looks a lease apart).
        placing = await self._assignment.unplaced()
        self._ownership.forget_all_but(
            {lock.lock_id for lock in locks}
            | {op.op_id for op in operations}
            | set(placing)
        )
        waiting = await self._release_dead_locks(locks, now)
        finished = 0
        for op in operations:
            crashed = self._ownership.operation_is_dead(op, now)
            if op.state == OperationState.PENDING and not crashed:
                waiting = waiting or op.instance != self._ownership.instance
                continue
            try:
                if await self._finish(op, crashed):
                    finished += 1
            except Exception:
                RECOVERIES.labels("error").inc()
                logger.exception("Recovering break-out operation %s failed", op.op_id)
        if waiting and not self._recheck:
            # Look again once a lease has passed, not only at the next interval.
            self._recheck = True
            self._api.delayed_background_call(
                LEASE_MS + RENEW_EVERY_MS, self._recover_again
            )
        return finished

    async def _recover_again(self) -> None:
        self._recheck = False
        await self.finish_operations()

    async def _release_dead_locks(self, locks: list[HeldLock], now: int) -> bool:
        """Release parent locks an end or move left when its process died;
        whether another instance's lock is still waited on."""
        waiting = False
        for lock in locks:
            if self._ownership.lock_is_dead(lock.lock_id, lock.lease, now):
                await self._locks.unlock(lock.parent_room_id, lock.lock_id)
                logger.info(
                    "Released the lock %s on %s: its process is gone",
                    lock.lock_id,
                    lock.parent_room_id,
                )
            else:
                waiting = waiting or self._ownership.of_other_instance(lock.lock_id)
        return waiting

    async def _finish(self, op: Operation, crashed: bool) -> bool:
        """Roll ``op`` back, or forward if its event was sent; whether done."""
        if op.state == OperationState.PENDING and await self._rolled_forward(op):
            return True
        if op.state == OperationState.PENDING:
            logger.info("Rolling back break-out %s, left unfinished", op.op_id)
            done = await self._rollback.roll_back(op, failure(CRASHED), crashed=True)
        else:
            done = not await self._rollback.delete_rooms(op, crashed)
            if done:
                await self._store.finish(
                    op.op_id, OperationState.ROLLED_BACK, op.response
                )
        if done:
            RECOVERIES.labels("rolled_back").inc()
            logger.info("Break-out %s rolled back: no room of it is left", op.op_id)
        return done

    async def _rolled_forward(self, op: Operation) -> bool:
        """Keep ``op`` if the parent's break-out lists any of its rooms: the
        event was sent (and maybe edited since), and rolling back would
        empty rooms the parent points to."""
        rooms = await self._rollback.operation_rooms(op)
        if not rooms:
            return False
        try:
            state = await self._api.get_room_state(op.parent_room_id, BREAKOUT_STATE)
        except SynapseError:
            state = {}
        current = current_breakout(state)
        if (
            current.event is None
            or current.content is None
            or not rooms.intersection(current.content.room_ids)
        ):
            return False
        await self._after_commit.roll_forward(op, current.event, current.content, rooms)
        RECOVERIES.labels("rolled_forward").inc()
        logger.info("Break-out %s was sent before a crash: kept", op.op_id)
        return True

    async def resume_placements(self) -> int:
        """Go on (in the background) with every running start whose placing
        process is gone; returns how many."""
        resumed = 0
        now = self._api.get_current_time_msec()
        for op_id in await self._assignment.unplaced():
            op = await self._store.get(op_id)
            if (
                op is None
                or op.state != OperationState.COMMITTED
                or not self._ownership.operation_is_dead(op, now)
                or not isinstance(op.response, dict)
            ):
                continue
            ours = await self._ownership.claim(op)
            if ours is None:
                continue
            logger.info("Resuming the placement of break-out %s", op.op_id)
            answer = cast(StartAnswer, op.response["body"])
            # In a process of its own: recovery's other work does not wait.
            self._api.run_as_background_process(
                "breakout_resume_placement",
                self._after_commit.resume_placement,
                ours,
                answer,
            )
            resumed += 1
        return resumed
