"""Starting a break-out: the request, the plan, the child rooms, the commit.

A start is atomic through the journal (journal.py, store.py): the operation is
written down before anything is created, every child room is recorded as soon
as it exists, and the break-out event in the parent commits it. A failure
before the commit deletes every room the operation made; a crash leaves a
pending journal row that recovery rolls back, or forward if the event was
sent. Placing the listed users follows the commit and is best effort
(placement.py). docs/admin_api.md describes the request and its answer.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.announce import Announcer
from synapse_breakout.assignment import UserState
from synapse_breakout.closing import Closer
from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import (
    BREAKOUT_STATE,
    BreakoutChild,
    BreakoutContent,
    current_breakout,
    without_users,
)
from synapse_breakout.journal import (
    CREATION_MARKER,
    ROLLED_BACK_MEANWHILE,
    Journal,
    check_same_parent,
    failure,
    replay,
)
from synapse_breakout.limits import check_start_rate, users_fit
from synapse_breakout.metrics import OPERATION_SECONDS, OPERATIONS
from synapse_breakout.model import (
    BREAKOUT_ACTIVE,
    BreakoutActiveError,
    ChildSpec,
    CreatedRoom,
    JoinRule,
    PlacementMode,
    StartAnswer,
    StartRequest,
)
from synapse_breakout.parent import COPIED_STATE, ParentRooms, under_way
from synapse_breakout.placement import Placement
from synapse_breakout.placing import EndedError, TakenOverError
from synapse_breakout.power import (
    child_power_levels,
    room_version,
)
from synapse_breakout.sizing import plan_children
from synapse_breakout.store import (
    Operation,
    OperationState,
    OperationStore,
    RunningBreakout,
)

logger = logging.getLogger(__name__)


def child_template(
    parent: str,
    state: StateMap[EventBase],
    acting: str,
    join_rule: JoinRule,
    is_moderator: Callable[[str], bool],
) -> dict[str, Any]:
    """The ``createRoom`` body every child shares, read once from the parent."""
    version = synapse_adapter.child_room_version(room_version(state))
    initial_state: list[dict[str, Any]] = []
    for event_type in COPIED_STATE:
        event = state.get((event_type, ""))
        if event is not None:
            initial_state.append(
                {"type": event_type, "state_key": "", "content": dict(event.content)}
            )
    rule: dict[str, Any] = {"join_rule": join_rule.value}
    if join_rule is JoinRule.RESTRICTED:
        rule["allow"] = [{"type": "m.room_membership", "room_id": parent}]
    initial_state.append(
        {"type": "m.room.join_rules", "state_key": "", "content": rule}
    )
    template: dict[str, Any] = {
        "preset": "public_chat" if join_rule is JoinRule.PUBLIC else "private_chat",
        "visibility": "private",
        "room_version": version,
        "initial_state": initial_state,
    }
    levels = child_power_levels(state, acting, version, is_moderator)
    if levels:
        template["power_level_content_override"] = levels
    return template


def child_config(
    template: Mapping[str, Any], parent: str, op_id: str, index: int, spec: ChildSpec
) -> dict[str, Any]:
    """One child's ``createRoom`` body: the template, its name, its marker."""
    config = dict(template)
    config["name"] = spec.name
    if spec.topic:
        config["topic"] = spec.topic
    # The index keeps siblings' create events (and so version 12 room IDs,
    # their hashes) distinct even within one millisecond.
    config["creation_content"] = {
        CREATION_MARKER: {"room_id": parent, "operation": op_id, "index": index}
    }
    return config


class Starter:
    """``POST /rooms/{parentRoomId}``, and rolling a crashed start forward."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        journal: Journal,
        parents: ParentRooms,
        placement: Placement,
        announcer: Announcer,
        closer: Closer,
    ):
        self._closer = closer
        self._config = config
        self._api = api
        self._store = store
        self._journal = journal
        self._parents = parents
        self._placement = placement
        self._announcer = announcer

    async def start(
        self,
        requester: str,
        parent: str,
        req: StartRequest,
        limited: bool = False,
        journalled: Callable[[str], None] | None = None,
    ) -> StartAnswer:
        """Start a break-out; its answer.

        Args:
            limited: the caller is a delegated moderator (no server admin):
                ``moderator_starts_per_hour`` applies (limits.py).
            journalled: told the operation's ID once it is journalled
                (progress.py).
        """
        started = time.monotonic()
        outcome = "error"
        try:
            if req.txn_id is not None:
                # A retry gets the first answer, whatever changed since.
                earlier = await self._store.find_txn(requester, req.txn_id)
                if earlier is not None:
                    check_same_parent(earlier, parent)
                    if journalled is not None:
                        journalled(earlier.op_id)
                    answer = replay(earlier, parent)
                    outcome = "ok"
                    return answer
            if limited:
                await check_start_rate(self._store, self._api, requester, self._config)
            with self._journal.holding():
                answer = await self._start(requester, parent, req, journalled)
            outcome = "ok"
            return answer
        except SynapseError as e:
            outcome = "conflict" if e.errcode == BREAKOUT_ACTIVE else "error"
            raise
        finally:
            OPERATIONS.labels("start", outcome).inc()
            OPERATION_SECONDS.labels("start").observe(time.monotonic() - started)

    async def _start(
        self,
        requester: str,
        parent: str,
        req: StartRequest,
        journalled: Callable[[str], None] | None,
    ) -> StartAnswer:
        acting = req.acting_user or requester
        listed = [u for spec in req.rooms or () for u in spec.users]
        everyone = req.auto_assign is not None and req.auto_assign.users is None
        if req.auto_assign is not None and req.auto_assign.users is not None:
            listed.extend(req.auto_assign.users)
        # Everyone joined: their IDs (cached by Synapse), not their events.
        joined = (
            await synapse_adapter.joined_users(self._api, parent) if everyone else None
        )
        state = await self._parents.state(parent, [acting, *listed])
        self._parents.check_acting_user(acting, state, self._config.event_type)
        plan = plan_children(req, state, acting, self._config, joined)
        users_in_event = users_fit(
            plan, req.placement, self._config.event_type, self._api.server_name
        )

        now = self._api.get_current_time_msec()
        op = Operation(
            op_id=f"{now}-{secrets.token_hex(6)}",
            kind="start",
            parent_room_id=parent,
            requester=requester,
            txn_id=req.txn_id,
            state=OperationState.PENDING,
            instance=self._journal.instance,
            process_token=self._journal.process_token,
            created_ts=now,
            updated_ts=now,
            response=None,
            acting_user=acting,
            request={
                "move": req.placement.value,
                "join_rule": req.join_rule.value,
                "duration_seconds": req.duration_seconds,
                "rooms_total": len(plan),
            },
        )
        suggest = req.placement is PlacementMode.SUGGEST
        got = await self._store.begin(
            op,
            [spec.users for spec in plan],
            UserState.LISTED if suggest else UserState.PLANNED,
        )
        if got is None:
            raise under_way(parent)
        if got.op_id != op.op_id:
            if journalled is not None:
                journalled(got.op_id)
            return replay(got, parent)

        try:
            # Read the break-out again under the lock: it may have changed.
            current = current_breakout(
                await self._api.get_room_state(parent, BREAKOUT_STATE)
            )
            if current.in_force and current.event is not None:
                if not req.replace:
                    raise BreakoutActiveError(
                        f"{parent} already has an active break-out "
                        f"({current.event.event_id}); end it first or pass "
                        "replace: true"
                    )
                if current.event.type != self._config.event_type:
                    # Its emptying is sent after the commit: check it can be.
                    self._parents.check_acting_user(acting, state, current.event.type)
                replaced = await self._closer.replaced(parent, current)
            else:
                replaced = None
            if journalled is not None:
                journalled(op.op_id)  # checked and journalled: 202 (progress.py)
            event, rooms = await self._create_rooms_and_send(
                op, req, plan, state, users_in_event
            )
        except SynapseError as e:
            await self._journal.roll_back(op, failure(e))
            raise
        except Exception as e:
            logger.exception("Break-out %s on %s failed", op.op_id, parent)
            error = SynapseError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "starting the break-out failed and was rolled back; the "
                "server's log has the cause",
                Codes.UNKNOWN,
            )
            await self._journal.roll_back(op, failure(error))
            raise error from e

        # The break-out event is in the parent: from here on nothing is undone,
        # unless recovery took the operation for dead and rolled it back.
        answer = await self.commit(op, event.event_id, event.origin_server_ts, rooms)
        if answer is None:
            await self._parents.withdraw(event, acting)
            raise ROLLED_BACK_MEANWHILE
        old = current.event if current.in_force else None
        if old is not None and old.type != event.type:
            # The old break-out of the other type would otherwise stay in force.
            try:
                await self._parents.send_emptied(old.type, parent, acting)
            except SynapseError as e:
                logger.warning(
                    "Could not end the old %s in %s: %s", old.type, parent, e.msg
                )
        if replaced is not None:
            # In the background: the answer and the placing do not wait.
            self._api.run_as_background_process(
                "breakout_close_replaced",
                self._closer.close_replaced,
                acting,
                parent,
                replaced,
            )
        return await self._placed_and_announced(op, answer)

    async def _placed_and_announced(
        self, op: Operation, answer: StartAnswer, resumed: bool = False
    ) -> StartAnswer:
        """Place the users, then tell everyone (in the background).

        Args:
            resumed: a placement a dead process began (placing.py).
        """
        try:
            answer = await self._placement.placer.place_start(op, answer, resumed)
        except TakenOverError as e:
            return e.answer  # the process that took it over announces it
        except EndedError as e:
            return e.answer  # ended meanwhile: its end was announced instead
        assert op.acting_user is not None  # every start operation has one
        self._announcer.after_start(
            op.acting_user,
            op.parent_room_id,
            answer["event_id"],
            answer["rooms"],
            answer["ends_at"],
        )
        return answer

    async def resume_placement(self, op: Operation, answer: StartAnswer) -> None:
        """Go on placing the users of ``op``, committed by a process that died
        while placing them; then announce it."""
        with self._journal.holding():
            await self._placed_and_announced(op, answer, resumed=True)

    async def commit(
        self, op: Operation, event_id: str, sent_ts: int, rooms: list[CreatedRoom]
    ) -> StartAnswer | None:
        """Record that ``op``'s break-out event was sent; returns the answer,
        or None if ``op`` is no longer pending (recovery rolled it back)."""
        duration = op.request.get("duration_seconds")
        ends_at = sent_ts + duration * 1000 if duration else None
        answer: StartAnswer = {
            "room_id": op.parent_room_id,
            "event_id": event_id,
            "rooms": [room.to_json() for room in rooms],
            "ends_at": ends_at,
            "failed_users": [],
        }
        assert op.acting_user is not None  # every start operation has one
        committed = await self._store.finish(
            op.op_id,
            OperationState.COMMITTED,
            {"status": HTTPStatus.OK, "body": answer},
            RunningBreakout(
                parent_room_id=op.parent_room_id,
                op_id=op.op_id,
                event_id=event_id,
                acting_user=op.acting_user,
                mode=op.request.get("move", PlacementMode.INVITE),
                started_ts=sent_ts,
                ends_at=ends_at,
            ),
        )
        if not committed:
            logger.warning("Break-out %s was rolled back before its commit", op.op_id)
            return None
        logger.info(
            "Started break-out %s in %s: %d rooms",
            op.op_id,
            op.parent_room_id,
            len(rooms),
        )
        return answer

    async def roll_forward(
        self, op: Operation, event: EventBase, content: BreakoutContent
    ) -> None:
        """The break-out event was sent before the crash: the operation stands,
        with its deadline, and its users are placed now (its own rooms only)."""
        own = await self._journal.operation_rooms(op)
        # The users as journalled: the event may leave them out.
        assigned = await self._placement.placer.assigned(
            op, [child.users for child in content.children]
        )
        rooms = [
            CreatedRoom(
                child.room_id,
                None,
                tuple(assigned.get(child.room_id, child.users)),
                child.via,
            )
            for child in content.children
            if child.room_id in own
        ]
        answer = await self.commit(op, event.event_id, event.origin_server_ts, rooms)
        if answer is None:
            return
        # This process places them now, and renews the operation's lease
        # while it does: recovery elsewhere (or here, a minute later) must not
        # take a placement in progress for the dead process's and run it twice.
        journal = self._journal
        if await self._placement.placer.assignment.claim(
            op.op_id, op.process_token, journal.instance, journal.process_token
        ):
            ours = attrs.evolve(
                op, instance=journal.instance, process_token=journal.process_token
            )
            # In the background: recovery's other work does not wait for it.
            self._api.run_as_background_process(
                "breakout_roll_forward_placement", self.resume_placement, ours, answer
            )

    async def _create_rooms_and_send(
        self,
        op: Operation,
        req: StartRequest,
        plan: tuple[ChildSpec, ...],
        state: StateMap[EventBase],
        users_in_event: bool,
    ) -> tuple[EventBase, list[CreatedRoom]]:
        acting = op.acting_user
        assert acting is not None
        parent = op.parent_room_id
        rooms: list[CreatedRoom] = []
        template = child_template(
            parent,
            state,
            acting,
            req.join_rule,
            lambda user: self._parents.is_moderator(user, state),
        )
        for index, spec in enumerate(plan):
            config = child_config(template, parent, op.op_id, index, spec)
            # Break-outs make up to max_child_rooms rooms at once, past
            # Synapse's room-creation limit; moderator_starts_per_hour and
            # the caller checks (limits.py) bound them instead.
            async with self._placement.placer.pacer.step():
                room_id, _ = await self._api.create_room(
                    acting, config, ratelimit=False
                )
                await self._store.record_room(op.op_id, room_id, index)
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
        if not users_in_event:
            content = without_users(content)
        event = await self._parents.send_state(
            self._config.event_type, parent, acting, content.to_json()
        )
        return event, rooms
