"""Console sessions: a widget's OpenID token exchanged for a short-lived token.

The host console, opened as a Matrix widget, never sees the user's access
token. It asks the client for an OpenID token (which only proves who the user
is), and exchanges it here for a console session: a token that the module's
own endpoints (the console's and the admin API's) accept as that user, with
exactly the rights the user's own access token has there, and nothing else
(the client-server API refuses it). The trust model is in docs/security.md.

A session is signed, not stored: ``bcs1.<payload>.<signature>``, where the
payload names the user and the expiry and the signature is an HMAC-SHA256
with a key every worker derives alike (``synapse_adapter.console_session_key``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter

SESSION_PREFIX = "bcs1."
#: How long a console session lasts; a widget exchanges a new OpenID token then.
SESSION_LIFETIME_MS = 30 * 60 * 1000
#: Synapse's OpenID tokens are 24 characters; anything much longer is not one.
MAX_OPENID_TOKEN_LENGTH = 255


@attrs.frozen
class ConsoleSession:
    """A console session handed to the widget."""

    access_token: str
    user_id: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_session(key: bytes, user_id: str, expires_at: int) -> str:
    """The session token for ``user_id``, valid until ``expires_at`` (ms)."""
    payload = _b64(json.dumps({"u": user_id, "e": expires_at}).encode("utf-8"))
    signature = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return f"{SESSION_PREFIX}{payload}.{_b64(signature)}"


def read_session(key: bytes, token: str, now_ms: int) -> str | None:
    """The user of a session token signed with ``key``; None if forged or expired."""
    if not token.startswith(SESSION_PREFIX):
        return None
    payload, _, signature = token[len(SESSION_PREFIX) :].partition(".")
    try:
        expected = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeError):
        return None
    if not isinstance(claims, dict):
        return None
    user_id, expires_at = claims.get("u"), claims.get("e")
    if not isinstance(user_id, str) or not isinstance(expires_at, int):
        return None
    return user_id if now_ms < expires_at else None


def _bearer(request: SynapseRequest) -> str | None:
    header = request.requestHeaders.getRawHeaders(b"Authorization")
    if not header:
        return None
    scheme, _, token = header[0].decode("ascii", "replace").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _unknown_token(message: str) -> SynapseError:
    return SynapseError(HTTPStatus.UNAUTHORIZED, message, Codes.UNKNOWN_TOKEN)


class ConsoleSessions:
    """Issues console sessions and recognises them on requests."""

    def __init__(self, api: ModuleApi):
        self._api = api
        self._key: bytes | None = None

    def _signing_key(self) -> bytes:
        if self._key is None:
            self._key = synapse_adapter.console_session_key(self._api)
        return self._key

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

    async def user_from_request(self, request: SynapseRequest) -> str | None:
        """The user of the console session the request carries.

        Returns:
            None when the request carries no console session (then Synapse's own
            authentication applies to it).

        Raises:
            SynapseError: 401 ``M_UNKNOWN_TOKEN`` for a console session that is
                forged or expired, or whose user was deactivated or locked since.
        """
        token = _bearer(request)
        if token is None or not token.startswith(SESSION_PREFIX):
            return None
        user_id = read_session(self._signing_key(), token, self._now())
        if user_id is None:
            raise _unknown_token("the console session is unknown or has expired")
        await self._check_user(user_id)
        return user_id

    async def exchange(self, body: dict[str, Any]) -> ConsoleSession:
        """A session for the user an OpenID token of this homeserver names.

        Args:
            body: the widget API's OpenID credentials, ``{"access_token",
                "matrix_server_name", ...}``.

        Raises:
            SynapseError: 400 for a malformed body; 401 ``M_UNKNOWN_TOKEN`` for
                a token this homeserver did not issue, or that has expired.
        """
        token = body.get("access_token")
        if not isinstance(token, str) or not 1 <= len(token) <= MAX_OPENID_TOKEN_LENGTH:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                "access_token: the OpenID token is required (a string)",
                Codes.MISSING_PARAM if token is None else Codes.INVALID_PARAM,
            )
        server = body.get("matrix_server_name", self._api.server_name)
        if server != self._api.server_name:
            raise _unknown_token(
                f"matrix_server_name: this console accepts OpenID tokens of "
                f"{self._api.server_name} only"
            )
        user_id = await synapse_adapter.user_for_openid_token(self._api, token)
        if user_id is None:
            raise _unknown_token("the OpenID token is unknown or has expired")
        await self._check_user(user_id)
        expires_at = self._now() + SESSION_LIFETIME_MS
        return ConsoleSession(
            access_token=sign_session(self._signing_key(), user_id, expires_at),
            user_id=user_id,
            expires_at=expires_at,
        )
