"""Starting a break-out (``POST /rooms/{parentRoomId}``), and rolling a crashed
start forward.

A start reads as its phases (:class:`Starter`):

1. **check** everything that can fail (start_checks.py);
2. **journal** it: the operation, its plan and its parent's lock in one
   transaction, then check again under the lock (:meth:`Starter.prepare`);
3. **create and send**: every child room, recorded as soon as it exists, then
   the break-out event in the parent, which commits it; a failure deletes
   every room the operation made (rollback.py);
4. **after the commit** (after_commit.py): the replaced break-out's rooms are
   closed, the users placed (place_users.py) and everyone told (the notices).

A crash leaves a pending journal row that recovery (recovery.py) rolls back,
or forward if the event was sent. docs/admin_api.md describes the request and
its answer.
"""

from __future__ import annotations

import logging
import secrets

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.assignment import UserState
from synapse_breakout.journal.capacity import CapacityStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.ownership import Ownership
from synapse_breakout.journal.rows import (
    Operation,
    OperationState,
    OverQuota,
    StartQuota,
)
from synapse_breakout.matrix.calls import CALL_STATE, parent_calls
from synapse_breakout.matrix.child_room import ChildRoomTemplate
from synapse_breakout.matrix.content import (
    BreakoutChild,
    BreakoutContent,
    CurrentBreakout,
    without_users,
)
from synapse_breakout.matrix.errors import under_way
from synapse_breakout.matrix.model import (
    ChildSpec,
    CreatedRoom,
    PlacementMode,
    StartAnswer,
    StartRequest,
)
from synapse_breakout.operations.after_commit import AfterCommit
from synapse_breakout.operations.rollback import RollBack
from synapse_breakout.operations.start_checks import CheckedStart, StartChecks
from synapse_breakout.operations.stored_answers import (
    FAILED,
    check_same_parent,
    failure,
)
from synapse_breakout.rooms.breakout_event import BreakoutEvents
from synapse_breakout.rooms.closing import Closer, Replaced
from synapse_breakout.rooms.pacing import Pacer
from synapse_breakout.rooms.parent import ParentRooms

logger = logging.getLogger(__name__)


@attrs.frozen
class Prepared:
    """A start checked and journalled, its parent locked: what
    :meth:`Starter.run` goes on with."""

    op: Operation
    req: StartRequest
    checked: CheckedStart
    #: The break-out in force when the lock was taken.
    current: CurrentBreakout
    #: What ``replace`` must close of the break-out in force.
    replaced: Replaced | None


@attrs.frozen
class Replayed:
    """A start whose ``txn_id`` was seen before: its earlier operation."""

    op: Operation


class Starter:
    """``POST /rooms/{parentRoomId}``, and rolling a crashed start forward."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        ownership: Ownership,
        checks: StartChecks,
        parents: ParentRooms,
        events: BreakoutEvents,
        rollback: RollBack,
        pacer: Pacer,
        closer: Closer,
        after_commit: AfterCommit,
        capacity: CapacityStore,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._ownership = ownership
        self._checks = checks
        self._parents = parents
        self._events = events
        self._rollback = rollback
        self._pacer = pacer
        self._closer = closer
        self._after_commit = after_commit
        self._capacity = capacity

    async def prepare(
        self, requester: str, parent: str, req: StartRequest, limited: bool = False
    ) -> Prepared | Replayed:
        """Phases 1 and 2: check, journal, check again under the lock.

        Every error a start can answer before it creates anything is raised
        here (a start answers 202 only after this: progress.py).
        """
        if req.txn_id is not None:
            # A retry gets the first answer, whatever changed since.
            earlier = await self._store.find_txn(requester, req.txn_id)
            if earlier is not None:
                check_same_parent(earlier, parent)
                return Replayed(earlier)
        with self._ownership.hold():
            checked = await self._checks.before_journal(requester, parent, req, limited)
            journalled = await self._journal(
                requester, req, checked, self._checks.quota(limited)
            )
            if isinstance(journalled, Replayed):
                return journalled  # a concurrent start with this txn_id
            return await self._locked(journalled, req, checked)

    async def _journal(
        self,
        requester: str,
        req: StartRequest,
        checked: CheckedStart,
        quota: StartQuota | None,
    ) -> Operation | Replayed:
        """The operation, its plan and its parent's lock, journalled together
        (and counted against ``quota``); an earlier operation with the same
        ``txn_id`` if there is one."""
        now = self._api.get_current_time_msec()
        op = Operation(
            op_id=f"{now}-{secrets.token_hex(6)}",
            kind="start",
            parent_room_id=checked.parent,
            requester=requester,
            txn_id=req.txn_id,
            state=OperationState.PENDING,
            instance=self._ownership.instance,
            process_token=self._ownership.process_token,
            created_ts=now,
            updated_ts=now,
            response=None,
            acting_user=checked.acting,
            request={
                "move": req.placement.value,
                "join_rule": req.join_rule.value,
                "duration_seconds": req.duration_seconds,
                "rooms_total": len(checked.plan),
                "room_capacity": req.room_capacity,
            },
        )
        suggest = req.placement is PlacementMode.SUGGEST
        got = await self._store.begin(
            op,
            [spec.users for spec in checked.plan],
            UserState.LISTED if suggest else UserState.PLANNED,
            quota,
            checked.left_out,
        )
        if got is None:
            raise under_way(checked.parent)
        if isinstance(got, OverQuota):
            raise self._checks.over_quota(got.oldest_ts)
        return op if got.op_id == op.op_id else Replayed(got)

    async def _locked(
        self, op: Operation, req: StartRequest, checked: CheckedStart
    ) -> Prepared:
        """Check again under the lock; a failure rolls the journal back."""
        try:
            current = await self._checks.under_lock(checked, req.replace)
            replaced = (
                await self._closer.replaced(checked.parent, current)
                if current.in_force
                else None
            )
        except SynapseError as e:
            await self._rollback.roll_back(op, failure(e))
            raise
        return Prepared(op, req, checked, current, replaced)

    async def run(self, prepared: Prepared) -> StartAnswer:
        """Phases 3 and 4: create and send, then what follows the commit."""
        with self._ownership.hold():
            event, rooms = await self._create_and_send_or_roll_back(prepared)
            return await self._after_commit.committed(
                prepared.op,
                event,
                rooms,
                prepared.current.event if prepared.current.in_force else None,
                prepared.replaced,
            )

    async def _create_and_send_or_roll_back(
        self, prepared: Prepared
    ) -> tuple[EventBase, list[CreatedRoom]]:
        try:
            return await self._create_and_send(prepared)
        except SynapseError as e:
            await self._rollback.roll_back(prepared.op, failure(e))
            raise
        except Exception as e:
            logger.exception(
                "Break-out %s on %s failed",
                prepared.op.op_id,
                prepared.op.parent_room_id,
            )
            await self._rollback.roll_back(prepared.op, failure(FAILED))
            raise FAILED from e

    async def _create_and_send(
        self, prepared: Prepared
    ) -> tuple[EventBase, list[CreatedRoom]]:
        """Every child room, each recorded once it exists, then the event."""
        checked = prepared.checked
        template = ChildRoomTemplate.from_parent(
            checked.parent,
            checked.state,
            checked.acting,
            prepared.req.join_rule,
            lambda user: self._parents.is_moderator(user, checked.state),
            parent_calls(await self._api.get_room_state(checked.parent, CALL_STATE)),
        )
        rooms: list[CreatedRoom] = []
        for index, spec in enumerate(checked.plan):
            # Break-outs make up to max_child_rooms rooms at once, past
            # Synapse's room-creation limit; moderator_starts_per_hour and
            # the caller checks bound them instead (docs/security.md).
            async with self._pacer.step(checked.parent):
                room_id = await self._create_room(prepared, template, index, spec)
            rooms.append(
                CreatedRoom(room_id, spec.name, spec.users, (self._api.server_name,))
            )
        content = BreakoutContent(
            key=self._config.event_type,
            children=tuple(
                BreakoutChild(room_id=r.room_id, via=r.via, users=r.users)
                for r in rooms
            ),
        )
        if not checked.users_in_event:
            content = without_users(content)
        event = await self._events.send(
            self._config.event_type, checked.parent, checked.acting, content.to_json()
        )
        return event, rooms

    async def _create_room(
        self,
        prepared: Prepared,
        template: ChildRoomTemplate,
        index: int,
        spec: ChildSpec,
    ) -> str:
        """One child room, made of the template and recorded at once."""
        op, acting, capacity = (
            prepared.op,
            prepared.checked.acting,
            prepared.req.room_capacity,
        )
        room_id, _ = await self._api.create_room(
            acting, template.request(op.op_id, index, spec), ratelimit=False
        )
        await self._store.record_room(
            op.op_id,
            room_id,
            index,
            (op.parent_room_id, capacity) if capacity is not None else None,
        )
        if capacity is not None:
            # Its creator's join asked (hooks/room_capacity.py) before.
            await self._capacity.forget(room_id)
        for event in template.after_creation(room_id, spec.name):
            await self._api.create_and_send_event_into_room(
                {**event, "room_id": room_id, "sender": acting}
            )
        return room_id
