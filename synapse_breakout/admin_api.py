"""The admin REST API (docs/admin_api.md), under ``/_synapse/client/breakout/v1``.

Synapse serves module resources only under ``/_synapse/client``. Every request
is authenticated first (access token), then authorised (server admin; or, with
``admin_api.allow_room_moderators``, a moderator of the parent for the room
endpoints), then its body is checked field by field; every mistake is a 4xx
``{"errcode", "error"}`` naming the field. The work itself is in start.py,
running.py and placement.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import pretend
from synapse_breakout.access import Caller, authenticate, path_segments
from synapse_breakout.bodies import (
    bad,
    check_keys,
    get_bool,
    get_choice,
    get_int,
    get_str,
    get_user_list,
    read_json_body,
    require_id,
    require_str,
)
from synapse_breakout.config import BreakoutConfig
from synapse_breakout.console_session import ConsoleSessions
from synapse_breakout.content import is_valid_room_id, is_valid_user_id
from synapse_breakout.deadlines import MAX_DEADLINE_MS, Deadlines
from synapse_breakout.help import HelpDesk
from synapse_breakout.limits import restraint
from synapse_breakout.model import (
    AutoAssign,
    ChildSpec,
    DeadlineChange,
    JoinRule,
    PlacementMode,
    StartRequest,
)
from synapse_breakout.parent import ParentRooms
from synapse_breakout.placement import Placement
from synapse_breakout.progress import Progress
from synapse_breakout.running import RunningBreakouts
from synapse_breakout.start import Starter

logger = logging.getLogger(__name__)

BASE_PATH = "/_synapse/client/breakout/v1"
MAX_DURATION_SECONDS = 7 * 24 * 3600
MAX_BROADCAST_LENGTH = 32000
MAX_HELP_LENGTH = 1000
#: The endpoints any member of a child room may call, without moderator rights.
PARTICIPANT_ACTIONS = ("help",)

Handler = Callable[[SynapseRequest, Caller, str], Awaitable[tuple[int, Any]]]
FlagsHandler = Callable[[SynapseRequest], Awaitable[tuple[int, Any]]]


@attrs.frozen
class Operations:
    """What the room endpoints call."""

    parents: ParentRooms
    starter: Starter
    running: RunningBreakouts
    placement: Placement
    deadlines: Deadlines
    help: HelpDesk
    progress: Progress


def parse_start_request(
    body: Mapping[str, Any], config: BreakoutConfig
) -> StartRequest:
    """Check a ``POST /rooms/{parentRoomId}`` body field by field."""
    check_keys(
        body,
        (
            "rooms",
            "auto_assign",
            "join_rule",
            "move",
            "acting_user",
            "duration_seconds",
            "replace",
            "txn_id",
            "wait",
        ),
    )
    limit = config.max_child_rooms
    rooms: tuple[ChildSpec, ...] | None = None
    auto_assign: AutoAssign | None = None
    if ("rooms" in body) == ("auto_assign" in body):
        raise bad("rooms", "give either rooms or auto_assign", Codes.MISSING_PARAM)
    if "rooms" in body:
        raw_rooms = body["rooms"]
        if not isinstance(raw_rooms, list) or not 1 <= len(raw_rooms) <= limit:
            raise bad("rooms", f"must be a list of 1 to {limit} rooms")
        specs = []
        seen: set[str] = set()
        for i, raw in enumerate(raw_rooms):
            where = f"rooms[{i}]."
            if not isinstance(raw, dict):
                raise bad(f"rooms[{i}]", "must be an object with a name")
            check_keys(raw, ("name", "topic", "users"), where)
            users = get_user_list(raw.get("users", []), f"rooms[{i}].users")
            twice = seen.intersection(users)
            if twice:
                raise bad(
                    f"rooms[{i}].users", f"{sorted(twice)[0]} is in another room too"
                )
            seen.update(users)
            name = require_str(raw, "name", where=where)
            specs.append(
                ChildSpec(
                    name=name,
                    topic=get_str(raw, "topic", max_length=1000, where=where),
                    users=users,
                )
            )
        rooms = tuple(specs)
    else:
        auto = body["auto_assign"]
        if not isinstance(auto, dict):
            raise bad(
                "auto_assign",
                'must be an object {"rooms": N, "users": "joined" or [...]}',
            )
        check_keys(auto, ("rooms", "room_size", "users"), "auto_assign.")
        auto_rooms = get_int(auto, "rooms", 1, limit, "auto_assign.")
        size = get_int(auto, "room_size", 1, config.max_users_per_room, "auto_assign.")
        if (auto_rooms is None) == (size is None):
            raise bad(
                "auto_assign.rooms",
                "give either auto_assign.rooms or auto_assign.room_size",
                Codes.MISSING_PARAM,
            )
        raw_users = auto.get("users", "joined")
        auto_assign = AutoAssign(
            rooms=auto_rooms,
            room_size=size,
            users=None
            if raw_users == "joined"
            else get_user_list(raw_users, "auto_assign.users"),
        )
    acting_user = get_str(body, "acting_user")
    if acting_user is not None and not is_valid_user_id(acting_user):
        raise bad("acting_user", f"{acting_user!r} is not a valid user ID")
    return StartRequest(
        rooms=rooms,
        auto_assign=auto_assign,
        join_rule=get_choice(body, "join_rule", JoinRule),
        placement=get_choice(body, "move", PlacementMode),
        acting_user=acting_user,
        duration_seconds=get_int(body, "duration_seconds", 1, MAX_DURATION_SECONDS),
        replace=get_bool(body, "replace", False),
        txn_id=get_str(body, "txn_id"),
        wait=get_bool(body, "wait", True),
    )


class BreakoutAdminResource(DirectServeJsonResource):
    """Routes ``/rooms/{parentRoomId}[/broadcast|/move]`` and ``/flags``."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        operations: Operations,
        flags: FlagsHandler,
    ):
        super().__init__()
        self._config = config
        self._api = api
        self._ops = operations
        self._flags = flags
        self._console_sessions = ConsoleSessions(api)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _async_render_DELETE(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _route(self, request: SynapseRequest) -> tuple[int, Any]:
        # Authentication comes first: nothing of the request is read before.
        caller = await authenticate(
            self._api,
            request,
            self._console_sessions if self._config.console.enabled else None,
        )
        segments = path_segments(request)
        method = request.method.decode("ascii")
        routes: dict[tuple[str, str], Handler] = {
            ("GET", ""): self._get,
            ("POST", ""): self._start,
            ("DELETE", ""): self._end,
            ("POST", "broadcast"): self._broadcast,
            ("POST", "move"): self._move,
            ("POST", "deadline"): self._deadline,
            ("POST", "help"): self._help,
        }
        if segments == ["flags"]:
            if method != "GET":
                raise self._unsupported(method)
            caller.check_not_guest()
            if not caller.is_admin:
                raise SynapseError(
                    HTTPStatus.FORBIDDEN, "server admins only", Codes.FORBIDDEN
                )
            return await self._flags(request)
        if len(segments) == 2 and segments[0] == "operations":
            if method != "GET":
                raise self._unsupported(method)
            caller.check_not_guest()
            return HTTPStatus.OK, await self._ops.progress.view.operation(
                segments[1], caller.user_id, caller.is_admin
            )
        if len(segments) in (2, 3) and segments[0] == "rooms":
            action = segments[2] if len(segments) == 3 else ""
            handler = routes.get((method, action))
            if handler is None:
                if any(a == action for (_, a) in routes):
                    raise self._unsupported(method)
                raise self._not_found()
            participant = action in PARTICIPANT_ACTIONS
            if not participant:
                caller.check_not_guest()
            parent = segments[1]
            if not is_valid_room_id(parent):
                raise bad("parentRoomId", f"{parent!r} is not a valid room ID")
            if not participant:
                # A participant's endpoint checks its caller's rooms itself.
                await self._authorise(caller, parent)
            caller.check_may_change(method)
            return await handler(request, caller, parent)
        raise self._not_found()

    @staticmethod
    def _not_found() -> SynapseError:
        return SynapseError(
            HTTPStatus.NOT_FOUND, "unrecognised request", Codes.UNRECOGNIZED
        )

    @staticmethod
    def _unsupported(method: str) -> SynapseError:
        return SynapseError(
            HTTPStatus.METHOD_NOT_ALLOWED,
            f"{method} is not supported here",
            Codes.UNRECOGNIZED,
        )

    async def _authorise(self, caller: Caller, parent: str) -> None:
        if caller.is_admin:
            return
        if self._config.admin_api.allow_room_moderators:
            try:
                state = await self._ops.parents.state(parent, [caller.user_id])
            except SynapseError:
                state = {}
            if self._ops.parents.is_moderator(caller.user_id, state):
                return
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"only server admins and moderators (power level >= "
                f"{self._config.power_level}) joined to {parent} may do this",
                Codes.FORBIDDEN,
            )
        raise SynapseError(HTTPStatus.FORBIDDEN, "server admins only", Codes.FORBIDDEN)

    async def _acting_user_allowed(
        self, caller: str, parent: str, req: StartRequest
    ) -> None:
        """A moderator acts as themselves; only admins name another acting user."""
        if req.acting_user not in (None, caller) and not await self._api.is_user_admin(
            caller
        ):
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                "acting_user: only server admins may act as another user",
                Codes.FORBIDDEN,
            )

    # --- the endpoints ----------------------------------------------------------

    async def _get(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        return HTTPStatus.OK, await self._ops.running.describe(parent)

    async def _start(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        req = parse_start_request(read_json_body(request), self._config)
        await self._acting_user_allowed(caller.user_id, parent, req)
        acting = req.acting_user or caller.user_id
        if caller.restraint or await restraint(self._api, acting):
            now = self._api.get_current_time_msec()
            if not req.wait:
                return HTTPStatus.ACCEPTED, {"operation_id": pretend.operation_id(now)}
            return HTTPStatus.OK, pretend.start(parent, req, self._api.server_name, now)
        limited = not caller.is_admin
        if not req.wait:
            op_id = await self._ops.progress.start_in_background(
                caller.user_id, parent, req, limited
            )
            return HTTPStatus.ACCEPTED, {"operation_id": op_id}
        return HTTPStatus.OK, await self._ops.starter.start(
            caller.user_id, parent, req, limited
        )

    async def _end(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request, optional=True)
        check_keys(body, ("message", "close_rooms"))
        message = get_str(body, "message", max_length=MAX_BROADCAST_LENGTH)
        close_rooms = get_bool(body, "close_rooms", False)
        if caller.restraint:
            return HTTPStatus.OK, pretend.end()
        return HTTPStatus.OK, await self._ops.running.end(
            caller.user_id, parent, message, close_rooms
        )

    async def _broadcast(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request)
        check_keys(body, ("body",))
        text = require_str(body, "body", max_length=MAX_BROADCAST_LENGTH)
        if caller.restraint:
            return HTTPStatus.OK, pretend.broadcast()
        return HTTPStatus.OK, await self._ops.running.broadcast(
            caller.user_id, parent, text
        )

    async def _move(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request)
        check_keys(body, ("user_id", "to"))
        user_id = require_id(body, "user_id", is_valid_user_id, "user ID")
        if "to" not in body:
            raise bad(
                "to",
                "is required (a child room ID, or null for the main room)",
                Codes.MISSING_PARAM,
            )
        to = body["to"]
        if to is not None and not is_valid_room_id(to):
            raise bad("to", f"{to!r} is not a valid room ID")
        if caller.restraint:
            return HTTPStatus.OK, pretend.move(user_id, to)
        return HTTPStatus.OK, await self._ops.placement.reassign(
            caller.user_id, parent, user_id, to
        )

    async def _deadline(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request)
        check_keys(body, ("ends_at", "add_seconds"))
        if len(body) != 1:
            raise bad(
                "ends_at",
                "give exactly one of ends_at (ms or null) and add_seconds",
                Codes.MISSING_PARAM if not body else Codes.INVALID_PARAM,
            )
        if "ends_at" in body:
            ends_at = body["ends_at"]
            if ends_at is not None and (
                isinstance(ends_at, bool) or not isinstance(ends_at, int)
            ):
                raise bad("ends_at", "must be a time in ms since the epoch, or null")
            change = DeadlineChange(ends_at=ends_at)
        else:
            limit = MAX_DEADLINE_MS // 1000
            add = get_int(body, "add_seconds", -limit, limit)
            if add is None:
                raise bad("add_seconds", f"must be an integer from {-limit} to {limit}")
            change = DeadlineChange(add_seconds=add)
        if caller.restraint:
            return HTTPStatus.OK, pretend.deadline(
                change, self._api.get_current_time_msec()
            )
        return HTTPStatus.OK, await self._ops.deadlines.move(
            caller.user_id, parent, change
        )

    async def _help(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request)
        check_keys(body, ("room_id", "message"))
        room_id = require_id(body, "room_id", is_valid_room_id, "room ID")
        message = get_str(body, "message", max_length=MAX_HELP_LENGTH)
        if caller.restraint:
            return HTTPStatus.OK, pretend.help_request()
        return HTTPStatus.OK, await self._ops.help.ask(
            caller.user_id, parent, room_id, message
        )
