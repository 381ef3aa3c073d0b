"""Users: OpenID tokens, the console's session key, and joined rooms and
members by ID (Synapse internals: see the package's docstring)."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from synapse.module_api import ModuleApi

logger = logging.getLogger(__name__)


async def user_for_openid_token(api: ModuleApi, token: str) -> str | None:
    """The local user an OpenID token of this homeserver was issued to, if valid.

    Why internal: the public way to check such a token is the homeserver's own
    federation endpoint ``/_matrix/federation/v1/openid/userinfo``, served on
    the federation listener, which the server often cannot reach itself (it
    may be behind a proxy, on another port, or federation may be off). That
    endpoint answers from Synapse's ``open_id_tokens`` table through
    ``get_user_id_for_open_id_token(token, now)``; this makes the same call,
    so a token is valid here exactly when the endpoint would accept it (issued
    by this server, not expired). No module API checks OpenID tokens.

    Returns:
        The user ID, or None for an unknown or expired token, or when this
        Synapse's store has no such method (then no token is accepted).
    """
    hs = api._hs
    lookup = getattr(hs.get_datastores().main, "get_user_id_for_open_id_token", None)
    if lookup is None:
        logger.warning(
            "synapse_breakout: this Synapse cannot check OpenID tokens; the "
            "console's widget sign-in is refused"
        )
        return None
    user_id = await lookup(token, api.get_current_time_msec())
    return user_id if isinstance(user_id, str) else None


def console_session_key(api: ModuleApi) -> bytes:
    """A secret key, the same on every worker, to sign console sessions with.

    Why internal: console sessions are signed rather than stored, so that any
    worker can check them and nothing accumulates in the database. The key
    must be secret and shared by every process of the homeserver, and the only
    such secret a module can reach is Synapse's ``macaroon_secret_key`` (the
    one it signs its own login tokens with; Synapse derives it from the
    signing key when it is not configured). The module never uses it
    directly: it derives its own key from it with HMAC-SHA256 and a label.
    """
    secret = api._hs.config.key.macaroon_secret_key
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not isinstance(secret, bytes) or not secret:
        raise RuntimeError("this Synapse has no macaroon_secret_key")
    return hmac.new(
        secret, b"synapse_breakout console session v1", hashlib.sha256
    ).digest()


async def joined_rooms(api: ModuleApi, user_id: str) -> frozenset[str]:
    """The rooms a local user is joined to.

    Why internal: the console lists the rooms where its user may start a
    break-out (the rooms they are joined to), and no module API lists a
    user's rooms; ``get_rooms_for_user`` is the cached store method Synapse's
    own ``/joined_rooms`` servlet uses.
    """
    # Typed as Any: mypy reads Synapse's @cached descriptor as an unbound method.
    store: Any = api._hs.get_datastores().main
    return frozenset(await store.get_rooms_for_user(user_id))


async def joined_users(api: ModuleApi, room_id: str) -> frozenset[str]:
    """The users joined to a room now, by ID.

    Why internal: the module API's only way to a room's members is
    ``get_room_state`` of every member event. In a 10,000-member parent that
    loads 10,000 events, as many as Synapse's whole default event cache, on
    each ``auto_assign: joined`` start and ejection check (docs/performance.md).
    ``get_users_in_room`` is the cached store method Synapse's own
    ``/joined_members`` and sync use; it returns IDs only.
    """
    store: Any = api._hs.get_datastores().main
    return frozenset(await store.get_users_in_room(room_id))
