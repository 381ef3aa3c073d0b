"""Console sessions: a widget's OpenID token exchanged for a short-lived token.

The host console, opened as a Matrix widget, never sees the user's access
token. It asks the client for an OpenID token (which only proves who the user
is) and exchanges it here for a console session: a token that the module's
own endpoints (the console's and the admin API's) accept, and the
client-server API refuses. Since clients hand OpenID tokens to identity
servers, integration managers and call services too, a session is narrow
(docs/security.md, "Console sessions"):

- bound to the widget's room (``room_id``, required, where the user is
  joined), with the rights of a moderator of that room at most: never a
  server admin's (no ``acting_user``, no ``/flags``, no other room);
- made once per OpenID token, and only from a fresh one (issued within
  :data:`FRESH_MS`);
- stored (journal/console_sessions.py), so every worker sees the same, and
  ended at once by any logout of its user (``logout/all`` included), a
  password change, deactivation or a lock; lowered power ends what it may do
  because every request is authorised against the room as it is now.

The session token is random; only its sha256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.journal.console_sessions import ConsoleSessionStore, StoredSession
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.matrix.content import is_valid_room_id
from synapse_breakout.matrix.power import membership

SESSION_PREFIX = "bcs2."
#: How long a console session lasts; a widget exchanges a new OpenID token then.
SESSION_LIFETIME_MS = 30 * 60 * 1000
#: An OpenID token issued longer ago than this makes no session.
FRESH_MS = 5 * 60 * 1000
#: Synapse's OpenID tokens are 24 characters; anything much longer is not one.
MAX_OPENID_TOKEN_LENGTH = 255


@attrs.frozen
class ConsoleSession:
    """A console session handed to the widget."""

    access_token: str
    user_id: str
    room_id: str
    expires_at: int


@attrs.frozen
class SessionUser:
    """Who a request's console session speaks for, and for which room."""

    user_id: str
    room_id: str


def digest(token: str) -> str:
    """What is stored of a token: its sha256."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _bearer(request: SynapseRequest) -> str | None:
    header = request.requestHeaders.getRawHeaders(b"Authorization")
    if not header:
        return None
    scheme, _, token = header[0].decode("ascii", "replace").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _unknown_token(message: str) -> SynapseError:
    return SynapseError(HTTPStatus.UNAUTHORIZED, message, Codes.UNKNOWN_TOKEN)


def _field(body: dict[str, Any], key: str, limit: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"{key}: required, a string of 1 to {limit} characters",
            Codes.MISSING_PARAM if value is None else Codes.INVALID_PARAM,
        )
    return value


class ConsoleSessions:
    """Issues console sessions, recognises them on requests, ends them."""

    def __init__(
        self, api: ModuleApi, store: ConsoleSessionStore, tables: SynapseTables
    ):
        self._api = api
        self._store = store
        self._tables = tables

    def _now(self) -> int:
        return self._api.get_current_time_msec()

    async def _check_user(self, user_id: str) -> None:
        """401 unless ``user_id`` is a local user who may still sign in."""
        info = await self._api.get_userinfo_by_id(user_id)
        if info is None or info.is_deactivated:
            raise _unknown_token(f"{user_id} may not sign in")
        if info.locked:  # as Synapse answers for a locked account's own token
            raise SynapseError(
                HTTPStatus.UNAUTHORIZED, "the account is locked", Codes.USER_LOCKED
            )
        if info.is_guest:
            raise SynapseError(
                HTTPStatus.FORBIDDEN, "guests may not use the console", Codes.FORBIDDEN
            )

    async def user_from_request(self, request: SynapseRequest) -> SessionUser | None:
        """The user and room of the console session the request carries.

        Returns:
            None when the request carries no console session (then Synapse's own
            authentication applies to it).

        Raises:
            SynapseError: 401 ``M_UNKNOWN_TOKEN`` for a console session that is
                unknown, expired or ended (a logout, a password change), or
                whose user was deactivated or locked since.
        """
        token = _bearer(request)
        if token is None or not token.startswith(SESSION_PREFIX):
            return None
        stored = await self._store.live(digest(token))
        if stored is None:
            raise _unknown_token("the console session is unknown or has ended")
        await self._check_user(stored.user_id)
        mark = await self._tables.password_mark(stored.user_id)
        if mark != stored.password_mark:
            raise _unknown_token("the password changed: the console session ended")
        return SessionUser(stored.user_id, stored.room_id)

    async def on_logged_out(
        self, user_id: str, device_id: str | None, access_token: str
    ) -> None:
        """Synapse's logout hook: any logout of ``user_id`` (one device,
        ``logout/all``, the other devices on a password change, deactivation)
        ends their console sessions."""
        if self._api.is_mine(user_id):
            await self._store.revoke(user_id)

    async def exchange(self, body: dict[str, Any]) -> ConsoleSession:
        """A session for the user a fresh OpenID token of this homeserver names,
        bound to the widget's room.

        Args:
            body: ``{"access_token", "matrix_server_name", "room_id"}``: the
                widget API's OpenID credentials and the widget's room.

        Raises:
            SynapseError: 400 for a malformed body; 401 ``M_UNKNOWN_TOKEN`` for
                a token this homeserver did not issue, an expired, stale or
                already exchanged one, or one issued before its user's last
                logout; 403 when the user is not joined to the room.
        """
        token = _field(body, "access_token", MAX_OPENID_TOKEN_LENGTH)
        room_id = _field(body, "room_id", 255)
        if not is_valid_room_id(room_id):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"room_id: {room_id!r} is not a valid room ID",
                Codes.INVALID_PARAM,
            )
        server = body.get("matrix_server_name", self._api.server_name)
        if server != self._api.server_name:
            raise _unknown_token(
                f"matrix_server_name: this console accepts OpenID tokens of "
                f"{self._api.server_name} only"
            )
        user_id = await self._fresh_token_owner(token)
        await self._check_user(user_id)
        await self._check_joined(user_id, room_id)
        return await self._store_new(token, user_id, room_id)

    async def _fresh_token_owner(self, token: str) -> str:
        found = await self._tables.openid_token(token)
        if found is None:
            raise _unknown_token("the OpenID token is unknown or has expired")
        user_id, valid_until = found
        issued = valid_until - synapse_adapter.openid_lifetime_ms()
        if self._now() - issued > FRESH_MS:
            raise _unknown_token(
                "the OpenID token is too old to start a console session: the "
                "console asks your client for a new one"
            )
        revoked = await self._store.revoked_ts(user_id)
        if revoked is not None and issued <= revoked:
            raise _unknown_token("the OpenID token was issued before a logout")
        return user_id

    async def _check_joined(self, user_id: str, room_id: str) -> None:
        try:
            state = await self._api.get_room_state(
                room_id, [("m.room.member", user_id)]
            )
        except SynapseError:
            state = {}
        if membership(user_id, state) != "join":
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"room_id: you are not joined to {room_id}",
                Codes.FORBIDDEN,
            )

    async def _store_new(
        self, openid_token: str, user_id: str, room_id: str
    ) -> ConsoleSession:
        now = self._now()
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        stored = StoredSession(
            session_hash=digest(token),
            openid_hash=digest(openid_token),
            user_id=user_id,
            room_id=room_id,
            password_mark=await self._tables.password_mark(user_id),
            created_ts=now,
            expires_ts=now + SESSION_LIFETIME_MS,
        )
        if not await self._store.insert(stored):
            raise _unknown_token("this OpenID token made a console session already")
        return ConsoleSession(token, user_id, room_id, stored.expires_ts)
