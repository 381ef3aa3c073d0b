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

from synapse_breakout.http.console.sessions import ConsoleSessions


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
    is_admin: bool
    #: Shadow-banned or suspended: may change nothing.
    restraint: Restraint | None = None
    #: A guest account: only the participants' endpoints are open to it.
    is_guest: bool = False

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
            console session acts as its user's own token would
            (docs/console.md).
    """
    if sessions is not None:
        session_user = await sessions.user_from_request(request)
        if session_user is not None:
            return Caller(
                session_user,
                await api.is_user_admin(session_user),
                await restraint(api, session_user),
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
