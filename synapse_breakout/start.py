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
from typing import Any, cast

from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.assignment import UserState
from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import (
    BREAKOUT_STATE,
    BreakoutChild,
    BreakoutContent,
    current_breakout,
)
from synapse_breakout.journal import CREATION_MARKER, Journal, failure
from synapse_breakout.metrics import OPERATION_SECONDS, OPERATIONS
from synapse_breakout.model import (
    ChildSpec,
    CreatedRoom,
    JoinRule,
    PlacementMode,
    StartAnswer,
    StartRequest,
)
from synapse_breakout.parent import (
    BREAKOUT_ACTIVE,
    COPIED_STATE,
    BreakoutActiveError,
    ParentRooms,
    under_way,
)
from synapse_breakout.placement import Placement
from synapse_breakout.power import (
    CREATOR_POWER_LEVEL,
    joined_or_invited,
    membership,
    required_level_to_send,
    room_version,
    user_power_level,
)
from synapse_breakout.sizing import fitting, room_count, spread
from synapse_breakout.store import (
    Operation,
    OperationState,
    OperationStore,
    RunningBreakout,
)

logger = logging.getLogger(__name__)


def plan_children(
    req: StartRequest, state: StateMap[EventBase], acting: str, config: BreakoutConfig
) -> tuple[ChildSpec, ...]:
    """The child rooms with their users, checked against the parent."""
    if req.rooms is not None:
        plan = req.rooms
    else:
        assert req.auto_assign is not None
        if req.auto_assign.users is None:
            users = sorted(
                user
                for (kind, user) in state
                if kind == "m.room.member"
                and membership(user, state) == "join"
                and user != acting
                and user_power_level(user, state) < config.power_level
            )
        else:
            users = list(req.auto_assign.users)
        plan = tuple(
            ChildSpec(name=f"Room {i + 1}", users=tuple(bucket))
            for i, bucket in enumerate(
                spread(users, room_count(req.auto_assign, len(users), config))
            )
        )
    for i, spec in enumerate(plan):
        field = f"rooms[{i}].users" if req.rooms is not None else "auto_assign.users"
        if len(spec.users) > config.max_users_per_room:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"{field}: {len(spec.users)} users for one room; at most "
                f"{config.max_users_per_room} are allowed",
                Codes.INVALID_PARAM,
            )
        if config.users_must_be_members:
            for user in spec.users:
                if not joined_or_invited(user, state):
                    raise SynapseError(
                        HTTPStatus.BAD_REQUEST,
                        f"{field}: {user} is not joined to or invited into the "
                        "parent room",
                        Codes.INVALID_PARAM,
                    )
    return plan


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
    moderators: dict[str, int] = {}
    for kind, user in state:
        if kind == "m.room.member" and is_moderator(user):
            level = user_power_level(user, state)
            # A creator of a version 12 parent outranks everyone there;
            # in the child they get the usual top level.
            moderators[user] = 100 if level >= CREATOR_POWER_LEVEL else level
    if synapse_adapter.creators_outrank_everyone(version):
        moderators.pop(acting, None)  # a creator may not be listed
    else:
        moderators[acting] = max(moderators.get(acting, 100), 100)
    template: dict[str, Any] = {
        "preset": "public_chat" if join_rule is JoinRule.PUBLIC else "private_chat",
        "visibility": "private",
        "room_version": version,
        "initial_state": initial_state,
    }
    if moderators:
        template["power_level_content_override"] = {"users": moderators}
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
    ):
        self._config = config
        self._api = api
        self._store = store
        self._journal = journal
        self._parents = parents
        self._placement = placement

    async def start(
        self,
        requester: str,
        parent: str,
        req: StartRequest,
        journalled: Callable[[str], None] | None = None,
    ) -> StartAnswer:
        """Start a break-out; its answer. ``journalled`` is told the
        operation's ID once it is journalled (progress.py)."""
        started = time.monotonic()
        outcome = "error"
        try:
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
        state = await self._parents.state(
            parent, None if everyone else [acting, *listed]
        )
        self._check_acting_user(acting, state, self._config.event_type)
        plan = plan_children(req, state, acting, self._config)

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
            return self._replay(got, parent)

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
                    self._check_acting_user(acting, state, current.event.type)
            if journalled is not None:
                journalled(op.op_id)  # checked and journalled: 202 (progress.py)
            event, rooms = await self._create_rooms_and_send(op, req, plan, state)
        except SynapseError as e:
            await self._journal.roll_back(op, failure(e))
            raise
        except Exception as e:
            logger.exception("Break-out %s on %s failed", op.op_id, parent)
            error = SynapseError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"starting the break-out failed and was rolled back: {e}",
                Codes.UNKNOWN,
            )
            await self._journal.roll_back(op, failure(error))
            raise error from e

        # The break-out event is in the parent: from here on nothing is undone.
        answer = await self.commit(op, event.event_id, event.origin_server_ts, rooms)
        old = current.event if current.in_force else None
        if old is not None and old.type != event.type:
            # The old break-out of the other type would otherwise stay in force.
            try:
                await self._parents.send_emptied(old.type, parent, acting)
            except SynapseError as e:
                logger.warning(
                    "Could not end the old %s in %s: %s", old.type, parent, e.msg
                )
        return await self._placement.place_listed(op, answer)

    async def commit(
        self, op: Operation, event_id: str, sent_ts: int, rooms: list[CreatedRoom]
    ) -> StartAnswer:
        """Record that ``op``'s break-out event was sent; returns the answer."""
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
        await self._store.finish(
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
        with its deadline, and its users are placed now."""
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
        ]
        answer = await self.commit(op, event.event_id, event.origin_server_ts, rooms)
        await self._placement.place_listed(op, answer)

    def _check_acting_user(
        self, acting: str, state: StateMap[EventBase], event_type: str
    ) -> None:
        if not self._api.is_mine(acting):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"acting_user {acting} is not a user of this server",
                Codes.INVALID_PARAM,
            )
        if not self._parents.is_moderator(acting, state):
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"acting_user {acting} must be joined to the room with power level "
                f">= {self._config.power_level}",
                Codes.FORBIDDEN,
            )
        needed = required_level_to_send(event_type, state)
        if user_power_level(acting, state) < needed:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"acting_user {acting} may not send {event_type} in "
                f"this room (needs power level {needed})",
                Codes.FORBIDDEN,
            )

    async def _create_rooms_and_send(
        self,
        op: Operation,
        req: StartRequest,
        plan: tuple[ChildSpec, ...],
        state: StateMap[EventBase],
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
            room_id, _ = await self._api.create_room(acting, config, ratelimit=False)
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
        event = await self._parents.send_state(
            self._config.event_type, parent, acting, fitting(content, req.placement)
        )
        return event, rooms

    def _replay(self, earlier: Operation, parent: str) -> StartAnswer:
        """The first answer of an operation repeated with the same txn_id."""
        if earlier.parent_room_id != parent:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"txn_id: {earlier.txn_id!r} was already used for a break-out in "
                f"{earlier.parent_room_id}",
                Codes.INVALID_PARAM,
            )
        if earlier.state == OperationState.PENDING or earlier.response is None:
            raise BreakoutActiveError(
                f"the operation with txn_id {earlier.txn_id!r} is still under way"
            )
        stored = earlier.response
        if stored.get("status") == HTTPStatus.OK:
            return cast(StartAnswer, stored["body"])
        raise SynapseError(stored["status"], stored["error"], stored["errcode"])
