"""Who calls the admin API: authentication, and what a caller may change.

Authentication runs before anything of the request is read (even its path).
Shadow-banned and suspended callers (:class:`Restraint`) change nothing.
docs/security.md says who may do what.
"""

from __future__ import annotations

import enum
from http import HTTPStatus

import attrs
from synapse.module_api import ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.http.console.sessions import ConsoleSessions
from synapse_breakout.matrix.power import StateMap, is_moderator


class Restraint(enum.StrEnum):
    """Why a caller may change nothing."""

    SHADOW_BANNED = "shadow_banned"
    SUSPENDED = "suspended"


async def restraint(api: ModuleApi, user_id: str) -> Restraint | None:
    """Whether ``user_id`` (local) is shadow-banned or suspended."""
    if not api.is_mine(user_id):
        return None
    info = await api.get_userinfo_by_id(user_id)
    if info is None:
        return None
    if info.suspended:
        return Restraint.SUSPENDED
    if info.is_shadow_banned:
        return Restraint.SHADOW_BANNED
    return None


@attrs.frozen
class Caller:
    """An authenticated caller."""

    user_id: str
    #: A server admin, by their own access token (never through a console
    #: session).
    is_admin: bool
    #: Shadow-banned or suspended: may change nothing.
    restraint: Restraint | None = None
    #: A guest account: only the participants' endpoints are open to it.
    is_guest: bool = False
    #: A console session's: the one room it may act on (http/console/sessions.py).
    session_room: str | None = None
    #: A console session of a server admin: in its room, they count as a
    #: moderator even where delegated moderators are not let in.
    session_of_admin: bool = False

    def check_session_room(self, room_id: str) -> None:
        """403 unless a console session's caller acts on its own room."""
        if self.session_room is not None and room_id != self.session_room:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"this console session is for {self.session_room} only",
                Codes.FORBIDDEN,
            )

    def check_not_guest(self) -> None:
        """403 for a guest, on every endpoint but the participants'."""
        if self.is_guest:
            raise SynapseError(
                HTTPStatus.FORBIDDEN, "guests may not use this API", Codes.FORBIDDEN
            )

    def check_may_change(self, method: str) -> None:
        """A suspended caller may read, and is told it may not change (403
        ``M_USER_SUSPENDED``, Synapse's answer to suspended users)."""
        if method != "GET" and self.restraint is Restraint.SUSPENDED:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                "your account is suspended",
                Codes.USER_ACCOUNT_SUSPENDED,
            )


async def authenticate(
    api: ModuleApi, request: SynapseRequest, sessions: ConsoleSessions | None = None
) -> Caller:
    """The caller; 401 ``M_MISSING_TOKEN`` / ``M_UNKNOWN_TOKEN`` from Synapse's
    auth.

    Args:
        sessions: where console sessions are accepted (``console.enabled``): a
            console session acts for its user in its room only, with a
            moderator's rights at most (docs/security.md).
    """
    if sessions is not None:
        session = await sessions.user_from_request(request)
        if session is not None:
            return Caller(
                session.user_id,
                is_admin=False,
                restraint=await restraint(api, session.user_id),
                session_room=session.room_id,
                session_of_admin=await api.is_user_admin(session.user_id),
            )
    requester = await api.get_user_by_req(request, allow_guest=True)
    user_id = requester.user.to_string()
    restrained = (
        Restraint.SHADOW_BANNED
        if requester.shadow_banned
        else await restraint(api, user_id)
    )
    return Caller(
        user_id, await api.is_user_admin(user_id), restrained, requester.is_guest
    )


def may_host(caller: Caller, state: StateMap, config: BreakoutConfig) -> bool:
    """Whether the admin API lets ``caller`` run break-outs in the room whose
    state is ``state``: the one home of that rule (docs/security.md).

    A server admin by their own token may; a moderator of the room (joined,
    ``power_level``) may with ``admin_api.allow_room_moderators``; a console
    session, in its own room only, has a moderator's rights at most: a
    server admin's session counts as a moderator where they are one.
    """
    if not config.admin_api.enabled:
        return False
    if caller.is_admin:
        return True
    if not is_moderator(caller.user_id, state, config.power_level):
        return False
    if caller.session_of_admin:
        return True
    return config.admin_api.allow_room_moderators
