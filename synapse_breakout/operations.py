"""The admin API's operations on a parent room: start, end, move, broadcast.

Starting a break-out is atomic through a journal (``store.OperationStore``):
the operation is written down before anything is created, every child room is
recorded as soon as it exists, and the break-out event in the parent commits
it. A failure before the commit deletes (shuts down and purges) every room the
operation made; a crash leaves a pending journal row that ``lifecycle.py``
rolls back (or forward, if the event was sent) after a restart. Moving users
happens after the commit and is best effort, reported in ``failed_users``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import attrs
from synapse.api.errors import Codes, SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from synapse_breakout import synapse_adapter
from synapse_breakout.config import (
    BREAKOUT_EVENT_TYPES,
    BreakoutConfig,
)
from synapse_breakout.content import (
    BreakoutChild,
    BreakoutContent,
    BreakoutContentError,
    parse_breakout_content,
)
from synapse_breakout.metrics import OPERATION_SECONDS, OPERATIONS
from synapse_breakout.power import (
    CREATOR_POWER_LEVEL,
    membership,
    required_level_to_send,
    user_power_level,
)
from synapse_breakout.store import (
    ActiveBreakout,
    Operation,
    OperationState,
    OperationStore,
)

logger = logging.getLogger(__name__)

BREAKOUT_ACTIVE = "ORG.MATRIX.MSC3985.BREAKOUT_ACTIVE"
#: Key of the create-event content that marks a child room as made by an operation.
CREATION_MARKER = "org.matrix.msc3985.breakout_parent"
TIME_IS_UP = "Time is up"
#: The version of child rooms when the parent's cannot have a "restricted" rule.
DEFAULT_CHILD_VERSION = "12"
COPIED_STATE = ("m.room.encryption", "m.room.history_visibility", "m.room.guest_access")


#: What every read of a parent needs, besides memberships.
PARENT_STATE = (
    ("m.room.create", ""),
    ("m.room.power_levels", ""),
    ("m.room.join_rules", ""),
    *((event_type, "") for event_type in COPIED_STATE),
    *((event_type, "") for event_type in sorted(BREAKOUT_EVENT_TYPES)),
)


def _named_users(state: StateMap[EventBase]) -> set[str]:
    """Users the parent's state names: in its power levels, as creators, as
    senders of its break-out events. Moderators are among them."""
    named: set[str] = set()
    power_levels = state.get(("m.room.power_levels", ""))
    users = power_levels.content.get("users") if power_levels else None
    if isinstance(users, Mapping):
        named.update(u for u in users if isinstance(u, str))
    create = state.get(("m.room.create", ""))
    if create is not None:
        named.add(create.sender)
        extra = create.content.get("additional_creators")
        if isinstance(extra, list):
            named.update(u for u in extra if isinstance(u, str))
    for event_type in BREAKOUT_EVENT_TYPES:
        event = state.get((event_type, ""))
        if event is not None:
            named.add(event.sender)
    return named


class BreakoutActiveError(SynapseError):
    """409: the parent already has a break-out, or an operation is under way."""

    def __init__(self, msg: str):
        super().__init__(HTTPStatus.CONFLICT, msg, BREAKOUT_ACTIVE)


@attrs.frozen
class ChildSpec:
    """A child room asked for in a start request."""

    name: str
    topic: str | None = None
    users: tuple[str, ...] = ()


@attrs.frozen
class StartRequest:
    """A validated ``POST /rooms/{parentRoomId}`` body (see admin_api.py)."""

    rooms: tuple[ChildSpec, ...] | None = None
    auto_rooms: int | None = None
    #: "joined", or an explicit list of users to spread over ``auto_rooms``.
    auto_users: str | tuple[str, ...] | None = None
    join_rule: str = "restricted"
    move: str = "invite"
    acting_user: str | None = None
    duration_seconds: int | None = None
    replace: bool = False
    txn_id: str | None = None


@attrs.frozen
class CurrentBreakout:
    """The break-out event in force in a parent room, if any."""

    event: EventBase | None
    content: BreakoutContent | None

    @property
    def active(self) -> bool:
        return self.content is not None and not self.content.ended


def spread(users: Sequence[str], rooms: int) -> list[list[str]]:
    """Deal ``users`` round-robin into ``rooms`` lists: sizes differ by at most one."""
    buckets: list[list[str]] = [[] for _ in range(rooms)]
    for i, user in enumerate(users):
        buckets[i % rooms].append(user)
    return buckets


def _error_body(e: SynapseError) -> dict[str, Any]:
    return {"status": e.code, "errcode": e.errcode, "error": e.msg}


class BreakoutOperations:
    """Start, end, move and broadcast, for the admin API and the lifecycle."""

    def __init__(self, config: BreakoutConfig, api: ModuleApi, store: OperationStore):
        self._config = config
        self._api = api
        self._store = store
        self.instance = api.worker_name or "master"
        #: Tells this process's operations from a crashed predecessor's.
        self.process_token = secrets.token_hex(8)

    # --- reading the parent ---------------------------------------------------

    async def parent_state(
        self, parent: str, members: Iterable[str] | None = None
    ) -> StateMap[EventBase]:
        """The parent's current state; 404 when this server does not know it.

        Args:
            members: whose membership events to read; None: everyone's. The
                moderators (users named in the power levels, the creators) and
                the break-out events' senders are always read, with the
                create, power-level, join-rule, copied and break-out events. A
                large parent's whole membership is read only when needed.
        """
        state = await self._api.get_room_state(
            parent, None if members is None else PARENT_STATE
        )
        if ("m.room.create", "") not in state:
            raise SynapseError(
                HTTPStatus.NOT_FOUND, f"room {parent} is not known", Codes.NOT_FOUND
            )
        if members is None:
            return state
        wanted = set(members) | _named_users(state)
        if not wanted:
            return state
        found = await self._api.get_room_state(
            parent, [("m.room.member", user) for user in sorted(wanted)]
        )
        return {**state, **found}

    @staticmethod
    def current(state: StateMap[EventBase]) -> CurrentBreakout:
        """The newest break-out event of either type in ``state``."""
        events = [
            e for t in BREAKOUT_EVENT_TYPES if (e := state.get((t, ""))) is not None
        ]
        if not events:
            return CurrentBreakout(None, None)
        event: EventBase = max(events, key=lambda e: (e.depth, e.origin_server_ts))
        try:
            content = parse_breakout_content(event.type, event.content)
        except BreakoutContentError:
            content = None
        return CurrentBreakout(event, content)

    def lock_id(self, kind: str) -> str:
        """A parent-lock holder ID naming this process, for recovery."""
        return f"{kind}:{self.instance}:{self.process_token}:{secrets.token_hex(4)}"

    def is_moderator(self, user_id: str, state: StateMap[EventBase]) -> bool:
        return (
            membership(user_id, state) == "join"
            and user_power_level(user_id, state) >= self._config.power_level
        )

    # --- start ------------------------------------------------------------------

    async def start(
        self, requester: str, parent: str, req: StartRequest
    ) -> tuple[int, dict[str, Any]]:
        """Start a break-out; returns (HTTP status, response body)."""
        started = time.monotonic()
        outcome = "error"
        try:
            status, body = await self._start(requester, parent, req)
            outcome = "ok" if status == HTTPStatus.OK else "error"
            return status, body
        except SynapseError as e:
            outcome = "conflict" if e.errcode == BREAKOUT_ACTIVE else "error"
            raise
        finally:
            OPERATIONS.labels("start", outcome).inc()
            OPERATION_SECONDS.labels("start").observe(time.monotonic() - started)

    async def _start(
        self, requester: str, parent: str, req: StartRequest
    ) -> tuple[int, dict[str, Any]]:
        acting = req.acting_user or requester
        listed = [u for spec in req.rooms or () for u in spec.users]
        if isinstance(req.auto_users, tuple):
            listed.extend(req.auto_users)
        state = await self.parent_state(
            parent, None if req.auto_users == "joined" else [acting, *listed]
        )
        self._check_acting_user(acting, state, self._config.event_type)
        plan = self._plan(req, state, acting)

        now = self._api.get_current_time_msec()
        op = Operation(
            op_id=f"{now}-{secrets.token_hex(6)}",
            kind="start",
            parent_room_id=parent,
            requester=requester,
            txn_id=req.txn_id,
            state=OperationState.PENDING,
            instance=self.instance,
            process_token=self.process_token,
            created_ts=now,
            updated_ts=now,
            response=None,
            acting_user=acting,
            request={
                "move": req.move,
                "join_rule": req.join_rule,
                "duration_seconds": req.duration_seconds,
            },
        )
        got = await self._store.begin(op)
        if got is None:
            raise BreakoutActiveError(
                f"another break-out operation on {parent} is under way"
            )
        if got.op_id != op.op_id:
            return self._replay(got, parent)

        try:
            # Read the break-out again under the lock: it may have changed.
            current = self.current(
                await self._api.get_room_state(
                    parent, [(t, "") for t in BREAKOUT_EVENT_TYPES]
                )
            )
            if current.active and current.event is not None:
                if not req.replace:
                    raise BreakoutActiveError(
                        f"{parent} already has an active break-out "
                        f"({current.event.event_id}); end it first or pass "
                        "replace: true"
                    )
                if current.event.type != self._config.event_type:
                    # Its emptying is sent after the commit: check it can be.
                    self._check_acting_user(acting, state, current.event.type)
            event, rooms = await self._create_rooms_and_send(op, req, plan, state)
        except SynapseError as e:
            await self.roll_back(op, _error_body(e))
            raise
        except Exception as e:
            logger.exception("Break-out %s on %s failed", op.op_id, parent)
            error = SynapseError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"starting the break-out failed and was rolled back: {e}",
                Codes.UNKNOWN,
            )
            await self.roll_back(op, _error_body(error))
            raise error from e

        # The break-out event is in the parent: from here on nothing is undone.
        response = await self.commit(op, event.event_id, event.origin_server_ts, rooms)
        if (
            current.active
            and current.event is not None
            and current.event.type != event.type
        ):
            # The old break-out of the other type would otherwise stay in force.
            try:
                await self._send_empty(current.event.type, parent, acting)
            except SynapseError as e:
                logger.warning(
                    "Could not end the old %s in %s: %s",
                    current.event.type,
                    parent,
                    e.msg,
                )
        return HTTPStatus.OK, await self.move_users(op, response)

    async def commit(
        self, op: Operation, event_id: str, sent_ts: int, rooms: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Record that ``op``'s break-out event was sent; returns the response."""
        duration = op.request.get("duration_seconds")
        ends_at = sent_ts + duration * 1000 if duration else None
        response: dict[str, Any] = {
            "room_id": op.parent_room_id,
            "event_id": event_id,
            "rooms": rooms,
            "ends_at": ends_at,
            "failed_users": [],
        }
        assert op.acting_user is not None  # every start operation has one
        await self._store.finish(
            op.op_id,
            OperationState.COMMITTED,
            {"status": HTTPStatus.OK, "body": response},
            ActiveBreakout(
                parent_room_id=op.parent_room_id,
                op_id=op.op_id,
                event_id=event_id,
                acting_user=op.acting_user,
                move=op.request.get("move", "invite"),
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
        return response

    async def move_users(
        self, op: Operation, response: dict[str, Any]
    ) -> dict[str, Any]:
        """Invite or join the listed users (best effort); stores the final response."""
        move = op.request.get("move", "invite")
        if move == "suggest" or op.acting_user is None:
            return response
        response["failed_users"] = await self._move_all(
            op.acting_user,
            response["rooms"],
            move,
            op.request.get("join_rule", "restricted"),
        )
        await self._store.set_response(
            op.op_id, {"status": HTTPStatus.OK, "body": response}
        )
        return response

    def _check_acting_user(
        self, acting: str, state: StateMap[EventBase], event_type: str
    ) -> None:
        if not self._api.is_mine(acting):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"acting_user {acting} is not a user of this server",
                Codes.INVALID_PARAM,
            )
        if not self.is_moderator(acting, state):
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

    def _plan(
        self, req: StartRequest, state: StateMap[EventBase], acting: str
    ) -> tuple[ChildSpec, ...]:
        """The child rooms with their users, checked against the parent."""
        if req.rooms is not None:
            plan = req.rooms
        else:
            assert req.auto_rooms is not None
            if req.auto_users == "joined":
                users = sorted(
                    user
                    for (kind, user) in state
                    if kind == "m.room.member"
                    and membership(user, state) == "join"
                    and user != acting
                    and user_power_level(user, state) < self._config.power_level
                )
            else:
                assert isinstance(req.auto_users, tuple)
                users = list(req.auto_users)
            plan = tuple(
                ChildSpec(name=f"Room {i + 1}", users=tuple(bucket))
                for i, bucket in enumerate(spread(users, req.auto_rooms))
            )
        for i, spec in enumerate(plan):
            field = (
                f"rooms[{i}].users" if req.rooms is not None else "auto_assign.users"
            )
            if len(spec.users) > self._config.max_users_per_room:
                raise SynapseError(
                    HTTPStatus.BAD_REQUEST,
                    f"{field}: {len(spec.users)} users for one room; at most "
                    f"{self._config.max_users_per_room} are allowed",
                    Codes.INVALID_PARAM,
                )
            if self._config.users_must_be_members:
                for user in spec.users:
                    if membership(user, state) not in ("join", "invite"):
                        raise SynapseError(
                            HTTPStatus.BAD_REQUEST,
                            f"{field}: {user} is not joined to or invited into the "
                            "parent room",
                            Codes.INVALID_PARAM,
                        )
        return plan

    def _child_template(
        self,
        parent: str,
        state: StateMap[EventBase],
        acting: str,
        join_rule: str,
    ) -> dict[str, Any]:
        """The ``createRoom`` body every child shares, read once from the parent."""
        create = state[("m.room.create", "")]
        version = str(create.content.get("room_version", "1"))
        known = KNOWN_ROOM_VERSIONS.get(version)
        if known is None or not known.restricted_join_rule:
            # Too old for "restricted" (or unknown here): Synapse's default.
            version, known = (
                DEFAULT_CHILD_VERSION,
                KNOWN_ROOM_VERSIONS[DEFAULT_CHILD_VERSION],
            )
        initial_state: list[dict[str, Any]] = []
        for event_type in COPIED_STATE:
            event = state.get((event_type, ""))
            if event is not None:
                initial_state.append(
                    {
                        "type": event_type,
                        "state_key": "",
                        "content": dict(event.content),
                    }
                )
        rule: dict[str, Any] = {"join_rule": join_rule}
        if join_rule == "restricted":
            rule["allow"] = [{"type": "m.room_membership", "room_id": parent}]
        initial_state.append(
            {"type": "m.room.join_rules", "state_key": "", "content": rule}
        )
        moderators: dict[str, int] = {}
        for kind, user in state:
            if kind == "m.room.member" and self.is_moderator(user, state):
                level = user_power_level(user, state)
                # A creator of a version 12 parent outranks everyone there;
                # in the child they get the usual top level.
                moderators[user] = 100 if level >= CREATOR_POWER_LEVEL else level
        if known.msc4289_creator_power_enabled:
            moderators.pop(acting, None)  # a creator may not be listed
        else:
            moderators[acting] = max(moderators.get(acting, 100), 100)
        template: dict[str, Any] = {
            "preset": "public_chat" if join_rule == "public" else "private_chat",
            "visibility": "private",
            "room_version": version,
            "initial_state": initial_state,
        }
        if moderators:
            template["power_level_content_override"] = {"users": moderators}
        return template

    @staticmethod
    def _child_config(
        template: Mapping[str, Any],
        parent: str,
        op_id: str,
        index: int,
        spec: ChildSpec,
    ) -> dict[str, Any]:
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

    async def _create_rooms_and_send(
        self,
        op: Operation,
        req: StartRequest,
        plan: tuple[ChildSpec, ...],
        state: StateMap[EventBase],
    ) -> tuple[EventBase, list[dict[str, Any]]]:
        acting = op.acting_user
        assert acting is not None
        parent = op.parent_room_id
        rooms: list[dict[str, Any]] = []
        template = self._child_template(parent, state, acting, req.join_rule)
        for index, spec in enumerate(plan):
            config = self._child_config(template, parent, op.op_id, index, spec)
            room_id, _ = await self._api.create_room(acting, config, ratelimit=False)
            await self._store.record_room(op.op_id, room_id)
            rooms.append(
                {
                    "room_id": room_id,
                    "name": spec.name,
                    "users": list(spec.users),
                    "via": [self._api.server_name],
                }
            )
        event_type = self._config.event_type
        content = BreakoutContent(
            key=event_type,
            children=tuple(
                BreakoutChild(
                    room_id=r["room_id"], via=tuple(r["via"]), users=tuple(r["users"])
                )
                for r in rooms
            ),
        )
        event = await synapse_adapter.send_event(
            self._api,
            {
                "type": event_type,
                "room_id": parent,
                "sender": acting,
                "state_key": "",
                "content": content.to_json(),
            },
        )
        return event, rooms

    async def _send_empty(self, event_type: str, parent: str, sender: str) -> EventBase:
        return await synapse_adapter.send_event(
            self._api,
            {
                "type": event_type,
                "room_id": parent,
                "sender": sender,
                "state_key": "",
                "content": {event_type: {}},
            },
        )

    def _replay(self, earlier: Operation, parent: str) -> tuple[int, dict[str, Any]]:
        """The first response of an operation repeated with the same txn_id."""
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
            return HTTPStatus.OK, stored["body"]
        raise SynapseError(stored["status"], stored["error"], stored["errcode"])

    async def _move_all(
        self, acting: str, rooms: Iterable[Mapping[str, Any]], move: str, join_rule: str
    ) -> list[dict[str, str]]:
        failed: list[dict[str, str]] = []
        for room in rooms:
            for user in room["users"]:
                error = await self.move_into(
                    acting, user, room["room_id"], move, join_rule
                )
                if error is not None:
                    failed.append({"user_id": user, **error})
        return failed

    async def move_into(
        self, acting: str, user: str, room_id: str, move: str, join_rule: str
    ) -> dict[str, str] | None:
        """Invite or join one user; the error (errcode, error) if it failed."""
        try:
            if move == "join" and self._api.is_mine(user):
                if join_rule == "invite":
                    await synapse_adapter.update_membership(
                        self._api, acting, user, room_id, "invite"
                    )
                await synapse_adapter.update_membership(
                    self._api, user, user, room_id, "join"
                )
            elif move in ("invite", "join"):
                await synapse_adapter.update_membership(
                    self._api, acting, user, room_id, "invite"
                )
        except SynapseError as e:
            return {"errcode": e.errcode, "error": e.msg}
        except Exception as e:
            logger.warning("Moving %s into %s failed: %s", user, room_id, e)
            return {"errcode": Codes.UNKNOWN, "error": str(e) or type(e).__name__}
        return None

    # --- roll back ----------------------------------------------------------------

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
            except Exception:
                logger.exception("Could not delete room %s of %s", room_id, op.op_id)
        if not remaining:
            await self._store.finish(op.op_id, OperationState.ROLLED_BACK, error)
        logger.info(
            "Rolling back break-out %s in %s: %d rooms to delete (%s)",
            op.op_id,
            op.parent_room_id,
            len(remaining),
            error.get("error"),
        )
        return not remaining

    # --- inspect, end, broadcast, move -----------------------------------------

    async def describe(self, parent: str) -> dict[str, Any]:
        """The ``GET /rooms/{parentRoomId}`` answer: the break-out in force."""
        current = self.current(await self.parent_state(parent, members=()))
        active = await self._store.get_active(parent)
        if current.event is None:
            return {
                "active": False,
                "event_id": None,
                "sender": None,
                "started_at": None,
                "ends_at": None,
                "rooms": [],
            }
        children = current.content.children if current.content else ()
        rooms = []
        for child in children:
            name, joined = await self._child_summary(child.room_id)
            rooms.append(
                {
                    "room_id": child.room_id,
                    "name": name,
                    "via": list(child.via),
                    "users": list(child.users),
                    "joined_members": joined,
                }
            )
        return {
            "active": current.active,
            "event_id": current.event.event_id,
            "sender": current.event.sender,
            "started_at": current.event.origin_server_ts,
            "ends_at": active.ends_at if active and current.active else None,
            "rooms": rooms,
        }

    async def _child_summary(self, room_id: str) -> tuple[str | None, int | None]:
        """A child's name and joined member count; (None, None) if unknown here."""
        try:
            state = await self._api.get_room_state(
                room_id, [("m.room.name", ""), ("m.room.member", None)]
            )
        except SynapseError:
            return None, None
        if not state:
            return None, None
        name_event = state.get(("m.room.name", ""))
        name = name_event.content.get("name") if name_event else None
        joined = sum(
            1
            for (kind, _), e in state.items()
            if kind == "m.room.member" and e.content.get("membership") == "join"
        )
        return (name if isinstance(name, str) else None), joined

    async def _active(
        self, parent: str, users: Iterable[str]
    ) -> tuple[StateMap[EventBase], EventBase, BreakoutContent]:
        """The parent's state (with ``users``' and the acting user's memberships)
        and its active break-out; 404 if there is none."""
        active = await self._store.get_active(parent)
        acting = [active.acting_user] if active is not None else []
        state = await self.parent_state(parent, [*users, *acting])
        current = self.current(state)
        if not current.active or current.event is None or current.content is None:
            raise SynapseError(
                HTTPStatus.NOT_FOUND,
                f"{parent} has no active break-out",
                Codes.NOT_FOUND,
            )
        return state, current.event, current.content

    async def actor(
        self, requester: str, parent: str, state: StateMap[EventBase]
    ) -> str:
        """The local user who acts for the parent's break-out.

        The acting user of a break-out started through the API; otherwise the
        caller, if a moderator of the parent; otherwise the sender of the
        break-out event, if local.
        """
        active = await self._store.get_active(parent)
        if active is not None and self.is_moderator(active.acting_user, state):
            return active.acting_user
        if self._api.is_mine(requester) and self.is_moderator(requester, state):
            return requester
        current = self.current(state)
        if current.event is not None and self._api.is_mine(current.event.sender):
            return current.event.sender
        raise SynapseError(
            HTTPStatus.FORBIDDEN,
            f"no local moderator of {parent} can act for its break-out",
            Codes.FORBIDDEN,
        )

    async def end(
        self,
        requester: str,
        parent: str,
        message: str | None,
        close_rooms: bool,
    ) -> dict[str, Any]:
        """End the parent's break-out, as ``DELETE`` (and the timer) does.

        Sends the emptied event, posts ``message`` as an ``m.notice`` in every
        child, and with ``close_rooms`` removes every member from the children.
        The rooms themselves live on.
        """
        started = time.monotonic()
        outcome = "error"
        try:
            result = await self._end(requester, parent, message, close_rooms)
            outcome = "ok"
            return result
        finally:
            OPERATIONS.labels("end", outcome).inc()
            OPERATION_SECONDS.labels("end").observe(time.monotonic() - started)

    async def _end(
        self, requester: str, parent: str, message: str | None, close_rooms: bool
    ) -> dict[str, Any]:
        state, event, content = await self._active(parent, [requester])
        acting = await self.actor(requester, parent, state)
        lock_id = self.lock_id("end")
        if not await self._store.lock(parent, lock_id):
            raise BreakoutActiveError(
                f"another break-out operation on {parent} is under way"
            )
        try:
            ended = await self._send_empty(event.type, parent, acting)
            active = await self._store.get_active(parent)
            if active is not None:
                await self._store.claim_end(parent, active.op_id)
        finally:
            await self._store.unlock(parent, lock_id)
        failed_rooms: list[dict[str, str]] = []
        for child in content.children:
            error = await self._close_child(acting, child.room_id, message, close_rooms)
            if error is not None:
                failed_rooms.append({"room_id": child.room_id, **error})
        logger.info("Ended the break-out in %s (%s)", parent, ended.event_id)
        return {
            "event_id": ended.event_id,
            "rooms": list(content.room_ids),
            "failed_rooms": failed_rooms,
        }

    async def _close_child(
        self, acting: str, room_id: str, message: str | None, close_rooms: bool
    ) -> dict[str, str] | None:
        try:
            if message:
                await self._notice(acting, room_id, message)
            if close_rooms:
                members = await self._api.get_room_state(
                    room_id, [("m.room.member", None)]
                )
                for (_, user), event in members.items():
                    if user != acting and event.content.get("membership") in (
                        "join",
                        "invite",
                    ):
                        await synapse_adapter.update_membership(
                            self._api, acting, user, room_id, "leave"
                        )
        except SynapseError as e:
            return {"errcode": e.errcode, "error": e.msg}
        return None

    async def _notice(self, sender: str, room_id: str, body: str) -> EventBase:
        return await synapse_adapter.send_event(
            self._api,
            {
                "type": "m.room.message",
                "room_id": room_id,
                "sender": sender,
                "content": {"msgtype": "m.notice", "body": body},
            },
        )

    async def broadcast(self, requester: str, parent: str, body: str) -> dict[str, Any]:
        """Post ``body`` as an ``m.notice`` in every child room."""
        state, _, content = await self._active(parent, [requester])
        acting = await self.actor(requester, parent, state)
        sent: dict[str, str] = {}
        failed: list[dict[str, str]] = []
        for room_id in content.room_ids:
            try:
                sent[room_id] = (await self._notice(acting, room_id, body)).event_id
            except SynapseError as e:
                failed.append(
                    {"room_id": room_id, "errcode": e.errcode, "error": e.msg}
                )
        OPERATIONS.labels("broadcast", "ok" if not failed else "partial").inc()
        return {"event_ids": sent, "failed_rooms": failed}

    async def move(
        self, requester: str, parent: str, user_id: str, to: str | None
    ) -> dict[str, Any]:
        """Reassign one user (``to`` None: back to the main room)."""
        state, event, content = await self._active(parent, [requester, user_id])
        if to is not None and to not in content.room_ids:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"to: {to} is not a child room of the break-out in {parent}",
                Codes.INVALID_PARAM,
            )
        if (
            to is not None
            and self._config.users_must_be_members
            and membership(user_id, state) not in ("join", "invite")
        ):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"user_id: {user_id} is not joined to or invited into {parent}",
                Codes.INVALID_PARAM,
            )
        acting = await self.actor(requester, parent, state)
        previous = [c.room_id for c in content.children if user_id in c.users]
        children = tuple(
            attrs.evolve(
                child,
                users=tuple(u for u in child.users if u != user_id)
                + ((user_id,) if child.room_id == to else ()),
            )
            for child in content.children
        )
        lock_id = self.lock_id("move")
        if not await self._store.lock(parent, lock_id):
            raise BreakoutActiveError(
                f"another break-out operation on {parent} is under way"
            )
        try:
            event = await synapse_adapter.send_event(
                self._api,
                {
                    "type": event.type,
                    "room_id": parent,
                    "sender": acting,
                    "state_key": "",
                    "content": {
                        **event.content,
                        **BreakoutContent(content.key, children).to_json(),
                    },
                },
            )
            await self._store.set_active_event(parent, event.event_id)
        finally:
            await self._store.unlock(parent, lock_id)
        errors: list[dict[str, str]] = []
        for room_id in previous:
            if room_id == to:
                continue
            members = await self._api.get_room_state(
                room_id, [("m.room.member", user_id)]
            )
            member = members.get(("m.room.member", user_id))
            if member is not None and member.content.get("membership") in (
                "join",
                "invite",
            ):
                try:
                    await synapse_adapter.update_membership(
                        self._api, acting, user_id, room_id, "leave"
                    )
                except SynapseError as e:
                    errors.append(
                        {"room_id": room_id, "errcode": e.errcode, "error": e.msg}
                    )
        if to is not None:
            active = await self._store.get_active(parent)
            how = active.move if active is not None else "invite"
            rule = await self._join_rule(to)
            error = await self.move_into(acting, user_id, to, how, rule)
            if error is not None:
                errors.append({"room_id": to, **error})
        OPERATIONS.labels("move", "ok" if not errors else "partial").inc()
        return {
            "event_id": event.event_id,
            "user_id": user_id,
            "from": previous,
            "to": to,
            "failed": errors,
        }

    async def _join_rule(self, room_id: str) -> str:
        state = await self._api.get_room_state(room_id, [("m.room.join_rules", "")])
        event = state.get(("m.room.join_rules", ""))
        rule = event.content.get("join_rule") if event else None
        return rule if isinstance(rule, str) else "invite"
