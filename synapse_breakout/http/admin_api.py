"""The admin REST API (docs/admin_api.md), under ``/_synapse/client/breakout/v1``.

Synapse serves module resources only under ``/_synapse/client``. Every request
is authenticated first (access token, access.py), then authorised (server
admin; or, with ``admin_api.allow_room_moderators``, a moderator of the parent
for the room endpoints), then its body is checked field by field
(decoding.py, start_request.py); every mistake is a 4xx ``{"errcode",
"error"}`` naming the field. The work itself is in operations/.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.http import pretend
from synapse_breakout.http.access import Caller, authenticate, may_host, restraint
from synapse_breakout.http.console.sessions import ConsoleSessions
from synapse_breakout.http.decoding import (
    bad,
    check_keys,
    get_bool,
    get_int,
    get_str,
    path_segments,
    read_json_body,
    require_id,
    require_str,
)
from synapse_breakout.http.flags import Flags
from synapse_breakout.http.start_request import (
    parse_plan_body,
    parse_plan_id,
    parse_start_request,
)
from synapse_breakout.matrix.content import is_valid_room_id, is_valid_user_id
from synapse_breakout.matrix.model import DeadlineChange
from synapse_breakout.operations.broadcast import Broadcaster
from synapse_breakout.operations.deadline import MAX_DEADLINE_MS, DeadlineKeeper
from synapse_breakout.operations.describe import Describer
from synapse_breakout.operations.end import Ender
from synapse_breakout.operations.help import HelpDesk
from synapse_breakout.operations.move import Mover
from synapse_breakout.operations.plans import Plans
from synapse_breakout.operations.progress import BackgroundStarts, OperationView
from synapse_breakout.operations.start_checks import StartChecks
from synapse_breakout.rooms.parent import ParentRooms

logger = logging.getLogger(__name__)

BASE_PATH = "/_synapse/client/breakout/v1"
MAX_BROADCAST_LENGTH = 32000
MAX_HELP_LENGTH = 1000
#: The endpoints any member of a child room may call, without moderator rights.
PARTICIPANT_ACTIONS = ("help",)

Handler = Callable[[SynapseRequest, Caller, str], Awaitable[tuple[int, Any]]]


@attrs.frozen
class Operations:
    """What the endpoints call: one per verb (operations/)."""

    parents: ParentRooms
    checks: StartChecks
    starts: BackgroundStarts
    view: OperationView
    describer: Describer
    ender: Ender
    broadcaster: Broadcaster
    mover: Mover
    deadlines: DeadlineKeeper
    help: HelpDesk
    plans: Plans


class BreakoutAdminResource(DirectServeJsonResource):
    """Routes ``/rooms/{parentRoomId}[/broadcast|/move]`` and ``/flags``."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        operations: Operations,
        flags: Flags,
        sessions: ConsoleSessions | None,
    ):
        """
        Args:
            sessions: console sessions, accepted where the console is enabled.
        """
        super().__init__()
        self._config = config
        self._api = api
        self._ops = operations
        self._flags = flags
        self._sessions = sessions

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _async_render_DELETE(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _async_render_PUT(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _route(self, request: SynapseRequest) -> tuple[int, Any]:
        # Authentication comes first: nothing of the request is read before.
        caller = await authenticate(self._api, request, self._sessions)
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
            ("GET", "plans"): self._plans,
            ("GET", "plans/{planId}"): self._plan,
            ("PUT", "plans/{planId}"): self._put_plan,
            ("DELETE", "plans/{planId}"): self._delete_plan,
        }
        if segments == ["flags"]:
            if method != "GET":
                raise self._unsupported(method)
            caller.check_not_guest()
            if not caller.is_admin:
                raise SynapseError(
                    HTTPStatus.FORBIDDEN, "server admins only", Codes.FORBIDDEN
                )
            return await self._flags.list(request)
        if len(segments) == 2 and segments[0] == "operations":
            if method != "GET":
                raise self._unsupported(method)
            caller.check_not_guest()
            return HTTPStatus.OK, await self._ops.view.operation(
                segments[1], caller.user_id, caller.is_admin, caller.session_room
            )
        if len(segments) in (2, 3, 4) and segments[0] == "rooms":
            action = "/".join(segments[2:3] + ["{planId}"] * (len(segments) == 4))
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
            caller.check_session_room(parent)
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
        if self._config.admin_api.allow_room_moderators or caller.session_of_admin:
            try:
                state = await self._ops.parents.state(parent, [caller.user_id])
            except SynapseError:
                state = {}
            if may_host(caller, state, self._config):
                return
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"only server admins and moderators (power level >= "
                f"{self._config.power_level}) joined to {parent} may do this",
                Codes.FORBIDDEN,
            )
        raise SynapseError(HTTPStatus.FORBIDDEN, "server admins only", Codes.FORBIDDEN)

    # --- the endpoints ----------------------------------------------------------

    async def _get(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        return HTTPStatus.OK, await self._ops.describer.describe(parent)

    async def _start(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request)
        if "plan" in body:
            plan_id = parse_plan_id(body["plan"], "plan")
            body = await self._ops.plans.start_body(parent, plan_id, body)
        req = parse_start_request(body, self._config)
        self._ops.checks.may_name(caller.user_id, caller.is_admin, req)
        acting = req.acting_user or caller.user_id
        if caller.restraint or await restraint(self._api, acting):
            now = self._api.get_current_time_msec()
            if not req.wait:
                return HTTPStatus.ACCEPTED, {"operation_id": pretend.operation_id(now)}
            return HTTPStatus.OK, pretend.start(parent, req, self._api.server_name, now)
        started = await self._ops.starts.start(
            caller.user_id, parent, req, limited=not caller.is_admin
        )
        if isinstance(started, str):  # wait: false, or not done within 50 s
            return HTTPStatus.ACCEPTED, {"operation_id": started}
        return HTTPStatus.OK, started

    # --- plans ----------------------------------------------------------------------

    async def _plans(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        return HTTPStatus.OK, await self._ops.plans.list(parent)

    async def _plan(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        plan_id = parse_plan_id(path_segments(request)[3])
        return HTTPStatus.OK, await self._ops.plans.get(parent, plan_id)

    async def _put_plan(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        plan_id = parse_plan_id(path_segments(request)[3])
        name, req, fields = parse_plan_body(read_json_body(request), self._config)
        return HTTPStatus.OK, await self._ops.plans.put(
            parent, plan_id, name, req, fields
        )

    async def _delete_plan(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        plan_id = parse_plan_id(path_segments(request)[3])
        return HTTPStatus.OK, await self._ops.plans.delete(parent, plan_id)

    # --- the running break-out ----------------------------------------------------

    async def _end(
        self, request: SynapseRequest, caller: Caller, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request, optional=True)
        check_keys(body, ("message", "close_rooms"))
        message = get_str(body, "message", max_length=MAX_BROADCAST_LENGTH)
        close_rooms = get_bool(body, "close_rooms", False)
        if caller.restraint:
            return HTTPStatus.OK, pretend.end()
        return HTTPStatus.OK, await self._ops.ender.end(
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
        return HTTPStatus.OK, await self._ops.broadcaster.broadcast(
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
        return HTTPStatus.OK, await self._ops.mover.reassign(
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
