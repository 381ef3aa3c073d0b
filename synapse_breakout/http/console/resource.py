"""The host console's web resources, under ``/_synapse/client/breakout/console``.

- ``/`` and the static files of ``static/`` (the page, shipped in the
  package, built by nobody at install);
- ``/api/session`` (POST): a widget's OpenID token for a console session
  (sessions.py);
- ``/api/rooms``, ``/api/rooms/{roomId}`` (``?since=``: "nothing changed"
  cheaply) and ``/api/rooms/{roomId}/members`` (``?from=&search=``: a page)
  (GET): what the page shows its user (view.py);
- ``/api/rooms/{roomId}/join`` (POST): a participant of a ``move: choose``
  break-out joins the room they choose (operations/choose.py).

Every other action the page takes goes to the admin API; docs/console.md.
"""

from __future__ import annotations

import importlib.resources
from http import HTTPStatus
from typing import Any, cast

from synapse.module_api import DirectServeJsonResource, ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError
from twisted.web.resource import IResource, Resource

from synapse_breakout.http.access import Caller, authenticate
from synapse_breakout.http.console.sessions import ConsoleSessions
from synapse_breakout.http.console.view import ConsoleView
from synapse_breakout.http.decoding import (
    check_keys,
    path_segments,
    query_param,
    read_json_body,
    require_id,
)
from synapse_breakout.matrix.content import is_valid_room_id
from synapse_breakout.operations.choose import Chooser

CONSOLE_PATH = "/_synapse/client/breakout/console"

_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".png": b"image/png",
}
# Only the page's own files; it may be framed by any client (as a widget).
_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors *"
)


def static_files() -> dict[bytes, tuple[bytes, bytes]]:
    """The page's files by URL name: (content type, content)."""
    folder = importlib.resources.files("synapse_breakout.http.console") / "static"
    files = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name.encode("ascii")] = (_TYPES[suffix], entry.read_bytes())
    files[b""] = files[b"index.html"]
    return files


class _File(Resource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(self, content_type: bytes, content: bytes):
        super().__init__()  # type: ignore[no-untyped-call]
        self._type = content_type
        self._content = content

    def render_GET(self, request: SynapseRequest) -> bytes:  # noqa: N802
        headers = request.responseHeaders
        headers.setRawHeaders(b"Content-Type", [self._type])
        headers.setRawHeaders(b"Content-Security-Policy", [_CSP])
        headers.setRawHeaders(b"X-Content-Type-Options", [b"nosniff"])
        headers.setRawHeaders(b"Referrer-Policy", [b"no-referrer"])
        headers.setRawHeaders(b"Cache-Control", [b"no-cache"])
        return self._content

    def render_HEAD(self, request: SynapseRequest) -> bytes:  # noqa: N802
        self.render_GET(request)
        return b""


class _NotFound(DirectServeJsonResource):
    isLeaf = True  # noqa: N815 (Twisted's name)

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        raise SynapseError(HTTPStatus.NOT_FOUND, "no such file", Codes.NOT_FOUND)


class ConsoleResource(Resource):
    """The page and its files; ``api/`` is the console's JSON endpoints."""

    def __init__(self, api_resource: Resource):
        super().__init__()  # type: ignore[no-untyped-call]
        self._files = {name: _File(*file) for name, file in static_files().items()}
        self.putChild(b"api", cast(IResource, api_resource))

    def getChild(self, path: bytes, request: SynapseRequest) -> Resource:  # noqa: N802
        return self._files.get(path) or _NotFound()

    def render_GET(self, request: SynapseRequest) -> bytes:  # noqa: N802
        # ".../console" without the slash: the page's relative links need it.
        request.setResponseCode(HTTPStatus.FOUND)
        request.responseHeaders.setRawHeaders(
            b"Location", [CONSOLE_PATH.encode("ascii") + b"/"]
        )
        return b""


def _room_id(segment: str) -> str:
    """The ``{roomId}`` of a path: 400 unless it is a room ID."""
    if not is_valid_room_id(segment):
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"roomId: {segment!r} is not a valid room ID",
            Codes.INVALID_PARAM,
        )
    return segment


class ConsoleApiResource(DirectServeJsonResource):
    """``api/session``, ``api/rooms``, ``api/rooms/{roomId}`` and
    ``api/rooms/{roomId}/join``."""

    isLeaf = True  # noqa: N815 (Twisted's name)

    def __init__(
        self,
        api: ModuleApi,
        sessions: ConsoleSessions,
        view: ConsoleView,
        chooser: Chooser,
    ):
        super().__init__()
        self._api = api
        self._sessions = sessions
        self._view = view
        self._chooser = chooser

    async def _caller(self, request: SynapseRequest) -> Caller:
        """The signed-in caller: a console session, or an access token."""
        caller = await authenticate(self._api, request, self._sessions)
        if caller.is_guest:
            raise SynapseError(
                HTTPStatus.FORBIDDEN, "guests may not use the console", Codes.FORBIDDEN
            )
        return caller

    async def _join(self, request: SynapseRequest, segment: str) -> dict[str, str]:
        """A participant's choice of room: authentication first, then the
        path, then the body."""
        caller = await self._caller(request)
        # Suspended: told so, as Synapse's join would. (A shadow-banned user
        # joins rooms in Synapse as anyone does.)
        caller.check_may_change("POST")
        parent = _room_id(segment)
        caller.check_session_room(parent)
        body = read_json_body(request)
        check_keys(body, ("room_id",))
        room_id = require_id(body, "room_id", is_valid_room_id, "room ID")
        return await self._chooser.choose(caller.user_id, parent, room_id)

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        segments = path_segments(request)
        if len(segments) == 3 and segments[0] == "rooms" and segments[2] == "join":
            return HTTPStatus.OK, await self._join(request, segments[1])
        if segments != ["session"]:
            raise SynapseError(
                HTTPStatus.NOT_FOUND, "unrecognised request", Codes.UNRECOGNIZED
            )
        session = await self._sessions.exchange(read_json_body(request))
        return HTTPStatus.OK, {
            "user_id": session.user_id,
            "room_id": session.room_id,
            "access_token": session.access_token,
            "expires_at": session.expires_at,
        }

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, Any]:  # noqa: N802
        # Authentication first: nothing of the request is read before.
        caller = await self._caller(request)
        segments = path_segments(request)
        if segments == ["rooms"]:
            return HTTPStatus.OK, await self._view.rooms(caller)
        if len(segments) in (2, 3) and segments[0] == "rooms":
            room_id = _room_id(segments[1])
            if len(segments) == 2:
                since = query_param(request, "since", 64)
                return HTTPStatus.OK, await self._view.room(caller, room_id, since)
            if segments[2] == "members":
                return HTTPStatus.OK, await self._view.members(
                    caller,
                    room_id,
                    query_param(request, "from") or "",
                    query_param(request, "search", 100) or "",
                )
        raise SynapseError(
            HTTPStatus.NOT_FOUND, "unrecognised request", Codes.UNRECOGNIZED
        )
