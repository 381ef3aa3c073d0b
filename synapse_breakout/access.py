"""Who calls the admin API: authentication, and what a caller may change.

Authentication runs before anything of the request is read (even its path).
docs/security.md says who may do what.
"""

from __future__ import annotations

import urllib.parse
from http import HTTPStatus

import attrs
from synapse.module_api import ModuleApi, SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.limits import Restraint, restraint


@attrs.frozen
class Caller:
    """An authenticated caller."""

    user_id: str
    is_admin: bool
    #: Shadow-banned or suspended: may change nothing (limits.py).
    restraint: Restraint | None = None

    def check_may_change(self, method: str) -> None:
        """A suspended caller may read, and is told it may not change (403
        ``M_USER_SUSPENDED``, Synapse's answer to suspended users)."""
        if method != "GET" and self.restraint is Restraint.SUSPENDED:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                "your account is suspended",
                Codes.USER_ACCOUNT_SUSPENDED,
            )


async def authenticate(api: ModuleApi, request: SynapseRequest) -> Caller:
    """The caller; 401 ``M_MISSING_TOKEN`` / ``M_UNKNOWN_TOKEN`` from Synapse's
    auth, 403 for guests."""
    requester = await api.get_user_by_req(request, allow_guest=True)
    user_id = requester.user.to_string()
    if requester.is_guest:
        raise SynapseError(
            HTTPStatus.FORBIDDEN, "guests may not use this API", Codes.FORBIDDEN
        )
    restrained = (
        Restraint.SHADOW_BANNED
        if requester.shadow_banned
        else await restraint(api, user_id)
    )
    return Caller(user_id, await api.is_user_admin(user_id), restrained)


def path_segments(request: SynapseRequest) -> list[str]:
    """The path below the API's base, decoded; 400 if it is not UTF-8."""
    try:
        return [
            urllib.parse.unquote(s.decode("utf-8"), errors="strict")
            for s in request.postpath or []
        ]
    except UnicodeDecodeError:
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the path must be UTF-8", Codes.INVALID_PARAM
        ) from None
