"""What a start may ask for, checked before anything is created.

- The size rule: a break-out event must stay within Synapse's event size
  limit; the users' lists are left out of it (``invite``, ``join``) or the
  start is refused (``suggest``) when they would not fit.
- ``moderator_starts_per_hour`` for delegated moderators.
- Restrained callers: shadow-banned or suspended users change nothing.

docs/security.md explains why each limit is there.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from http import HTTPStatus

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import (
    MAX_EVENT_BYTES,
    BreakoutChild,
    BreakoutContent,
    fits_in_event,
    without_users,
)
from synapse_breakout.model import ChildSpec, PlacementMode
from synapse_breakout.store import OperationStore

HOUR_MS = 3600 * 1000


def users_fit(
    plan: Sequence[ChildSpec], mode: PlacementMode, event_type: str, server_name: str
) -> bool:
    """Whether the break-out event can list the planned users.

    Raises:
        SynapseError: 400 ``M_TOO_LARGE`` when ``suggest`` (which must list
            them) would exceed the limit, or when even the bare room list would.
    """
    # The longest room ID a child can get: a version 12 hash (44 characters),
    # or "!", 18 random characters, ":" and this server's name.
    length = max(44, 20 + len(server_name))
    content = BreakoutContent(
        key=event_type,
        children=tuple(
            BreakoutChild(
                room_id=f"!{i:0{length - 1}d}", via=(server_name,), users=spec.users
            )
            for i, spec in enumerate(plan)
        ),
    )
    if fits_in_event(content.to_json()):
        return True
    if mode is PlacementMode.SUGGEST or not fits_in_event(
        without_users(content).to_json()
    ):
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"the break-out event would exceed Synapse's {MAX_EVENT_BYTES} bytes: "
            "assign fewer users (move: suggest must list them all in the event)",
            Codes.TOO_LARGE,
        )
    return False


async def check_start_rate(
    store: OperationStore, api: ModuleApi, requester: str, config: BreakoutConfig
) -> None:
    """429 ``M_LIMIT_EXCEEDED`` once ``requester`` made
    ``moderator_starts_per_hour`` starts in the last hour (``replace`` too)."""
    now = api.get_current_time_msec()
    count, oldest = await store.starts_since(requester, now - HOUR_MS)
    allowed = config.moderator_starts_per_hour
    if count < allowed:
        return
    retry_after = max(1, (oldest or now) + HOUR_MS - now) if allowed else HOUR_MS
    raise SynapseError(
        HTTPStatus.TOO_MANY_REQUESTS,
        f"at most {allowed} break-outs an hour may be started by a room moderator",
        Codes.LIMIT_EXCEEDED,
        additional_fields={"retry_after_ms": retry_after},
    )


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
