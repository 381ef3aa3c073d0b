"""The admin REST API (docs/admin_api.md), under ``/_synapse/client/breakout/v1``.

Synapse serves module resources only under ``/_synapse/client``. Every request
is authenticated first (access token), then authorised (server admin; or, with
``admin_api.allow_room_moderators``, a moderator of the parent for the room
endpoints), then its body is checked field by field; every mistake is a 4xx
``{"errcode", "error"}`` naming the field. The work itself is in start.py,
running.py and placement.py.
"""

from __future__ import annotations

import enum
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

import attrs
from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import is_valid_room_id, is_valid_user_id
from synapse_breakout.model import (
    AutoAssign,
    ChildSpec,
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
MAX_TEXT_LENGTH = 255

Handler = Callable[[SynapseRequest, str, str], Awaitable[tuple[int, Any]]]
FlagsHandler = Callable[[SynapseRequest], Awaitable[tuple[int, Any]]]
_E = TypeVar("_E", bound=enum.Enum)


@attrs.frozen
class Operations:
    """What the room endpoints call."""

    parents: ParentRooms
    starter: Starter
    running: RunningBreakouts
    placement: Placement
    progress: Progress


def bad(field: str, message: str, errcode: str = Codes.INVALID_PARAM) -> SynapseError:
    return SynapseError(HTTPStatus.BAD_REQUEST, f"{field}: {message}", errcode)


def read_json_body(request: SynapseRequest, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (400 M_NOT_JSON otherwise)."""
    raw = request.content.read() if request.content else b""
    if not raw.strip():
        if optional:
            return {}
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the body must be a JSON object", Codes.NOT_JSON
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the body is not valid JSON", Codes.NOT_JSON
        ) from None
    if not isinstance(body, dict):
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the body must be a JSON object", Codes.NOT_JSON
        )
    return body


def check_keys(
    body: Mapping[str, Any], known: tuple[str, ...], where: str = ""
) -> None:
    for key in body:
        if key not in known:
            raise bad(
                f"{where}{key}", "unknown field; known fields are " + ", ".join(known)
            )


def get_str(
    body: Mapping[str, Any],
    key: str,
    *,
    max_length: int = MAX_TEXT_LENGTH,
    where: str = "",
) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise bad(f"{where}{key}", f"must be a string of 1 to {max_length} characters")
    return value


def require_str(
    body: Mapping[str, Any],
    key: str,
    *,
    max_length: int = MAX_TEXT_LENGTH,
    where: str = "",
) -> str:
    value = get_str(body, key, max_length=max_length, where=where)
    if value is None:
        raise bad(f"{where}{key}", "is required", Codes.MISSING_PARAM)
    return value


def get_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad(key, "must be true or false")
    return value


def get_choice(body: Mapping[str, Any], key: str, choices: type[_E]) -> _E:
    """One of the enum's values; its first when absent."""
    values = [str(choice.value) for choice in choices]
    value = body.get(key, values[0])
    if value not in values or not isinstance(value, str):
        raise bad(key, "must be one of " + ", ".join(values))
    return choices(value)


def get_int(
    body: Mapping[str, Any], key: str, low: int, high: int, where: str = ""
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise bad(f"{where}{key}", f"must be an integer from {low} to {high}")
    return value


def get_user_list(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise bad(field, "must be a list of user IDs")
    for i, user in enumerate(value):
        if not is_valid_user_id(user):
            raise bad(f"{field}[{i}]", f"{user!r} is not a valid user ID")
    if len(set(value)) != len(value):
        raise bad(field, "lists a user more than once")
    return tuple(value)


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


@attrs.frozen
class Caller:
    user_id: str
    is_admin: bool


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

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _async_render_DELETE(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        return await self._route(request)

    async def _route(self, request: SynapseRequest) -> tuple[int, Any]:
        segments = [
            urllib.parse.unquote(s.decode("utf-8")) for s in request.postpath or []
        ]
        method = request.method.decode("ascii")
        routes: dict[tuple[str, str], Handler] = {
            ("GET", ""): self._get,
            ("POST", ""): self._start,
            ("DELETE", ""): self._end,
            ("POST", "broadcast"): self._broadcast,
            ("POST", "move"): self._move,
        }
        if segments == ["flags"]:
            if method != "GET":
                raise self._unsupported(method)
            caller = await self._authenticate(request)
            if not caller.is_admin:
                raise SynapseError(
                    HTTPStatus.FORBIDDEN, "server admins only", Codes.FORBIDDEN
                )
            return await self._flags(request)
        if len(segments) == 2 and segments[0] == "operations":
            if method != "GET":
                raise self._unsupported(method)
            caller = await self._authenticate(request)
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
            caller = await self._authenticate(request)
            parent = segments[1]
            if not is_valid_room_id(parent):
                raise bad("parentRoomId", f"{parent!r} is not a valid room ID")
            await self._authorise(caller, parent)
            return await handler(request, caller.user_id, parent)
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

    async def _authenticate(self, request: SynapseRequest) -> Caller:
        # 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN come from Synapse's auth.
        requester = await self._api.get_user_by_req(request, allow_guest=True)
        user_id = requester.user.to_string()
        if requester.is_guest:
            raise SynapseError(
                HTTPStatus.FORBIDDEN, "guests may not use this API", Codes.FORBIDDEN
            )
        return Caller(user_id, await self._api.is_user_admin(user_id))

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
        self, request: SynapseRequest, caller: str, parent: str
    ) -> tuple[int, Any]:
        return HTTPStatus.OK, await self._ops.running.describe(parent)

    async def _start(
        self, request: SynapseRequest, caller: str, parent: str
    ) -> tuple[int, Any]:
        req = parse_start_request(read_json_body(request), self._config)
        await self._acting_user_allowed(caller, parent, req)
        if not req.wait:
            op_id = await self._ops.progress.start_in_background(caller, parent, req)
            return HTTPStatus.ACCEPTED, {"operation_id": op_id}
        return HTTPStatus.OK, await self._ops.starter.start(caller, parent, req)

    async def _end(
        self, request: SynapseRequest, caller: str, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request, optional=True)
        check_keys(body, ("message", "close_rooms"))
        message = get_str(body, "message", max_length=MAX_BROADCAST_LENGTH)
        close_rooms = get_bool(body, "close_rooms", False)
        return HTTPStatus.OK, await self._ops.running.end(
            caller, parent, message, close_rooms
        )

    async def _broadcast(
        self, request: SynapseRequest, caller: str, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request)
        check_keys(body, ("body",))
        text = require_str(body, "body", max_length=MAX_BROADCAST_LENGTH)
        return HTTPStatus.OK, await self._ops.running.broadcast(caller, parent, text)

    async def _move(
        self, request: SynapseRequest, caller: str, parent: str
    ) -> tuple[int, Any]:
        body = read_json_body(request)
        check_keys(body, ("user_id", "to"))
        user_id = body.get("user_id")
        if user_id is None:
            raise bad("user_id", "is required", Codes.MISSING_PARAM)
        if not is_valid_user_id(user_id):
            raise bad("user_id", f"{user_id!r} is not a valid user ID")
        if "to" not in body:
            raise bad(
                "to",
                "is required (a child room ID, or null for the main room)",
                Codes.MISSING_PARAM,
            )
        to = body["to"]
        if to is not None and not is_valid_room_id(to):
            raise bad("to", f"{to!r} is not a valid room ID")
        return HTTPStatus.OK, await self._ops.placement.reassign(
            caller, parent, user_id, to
        )
