"""The few Synapse internals the public module API does not offer, in one place.

Everything else in the module goes through ``synapse.module_api``. Each function
here says why it must reach further, checks the shape of what it touches and
falls back safely when a Synapse release changes it. ``tests/test_synapse_adapter.py``
runs them against the installed Synapse.

One module per subject: ``rooms``, ``events``, ``users``; this package's
namespace holds them all (callers write ``synapse_adapter.send_event``), and
the check, at start-up, that this Synapse has every one of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from synapse_breakout.synapse_adapter.events import (
    dispatcher_freezes_events,
    send_event,
    skip_state_load_for_other_event_types,
    stored_events,
    update_membership,
)
from synapse_breakout.synapse_adapter.rooms import (
    DEFAULT_CHILD_VERSION,
    child_room_version,
    creators_outrank_everyone,
    existing_rooms,
    release_other_processes_room_locks,
    rooms_created_by,
    rooms_with_create_event,
)
from synapse_breakout.synapse_adapter.users import (
    console_session_key,
    joined_rooms,
    joined_users,
    user_for_openid_token,
)

__all__ = [
    "DEFAULT_CHILD_VERSION",
    "child_room_version",
    "console_session_key",
    "creators_outrank_everyone",
    "dispatcher_freezes_events",
    "existing_rooms",
    "joined_rooms",
    "joined_users",
    "missing_internals",
    "release_other_processes_room_locks",
    "require_internals",
    "rooms_created_by",
    "rooms_with_create_event",
    "send_event",
    "skip_state_load_for_other_event_types",
    "stored_events",
    "update_membership",
    "user_for_openid_token",
]


def missing_internals(api: ModuleApi) -> list[str]:
    """The handler methods (with their ``ratelimit`` parameter) and accessors
    this adapter calls that this Synapse lacks. (Its SQL on Synapse's tables
    runs in the tests against the lowest and the newest release.)"""
    hs = getattr(api, "_hs", None)
    if hs is None:
        return ["ModuleApi._hs"]
    wanted: list[tuple[str, Callable[[], Any], str | None]] = [
        (
            "EventCreationHandler.create_and_send_nonmember_event(ratelimit=)",
            lambda: hs.get_event_creation_handler().create_and_send_nonmember_event,
            "ratelimit",
        ),
        (
            "RoomMemberHandler.update_membership(ratelimit=)",
            lambda: hs.get_room_member_handler().update_membership,
            "ratelimit",
        ),
        ("HomeServer.get_instance_id()", lambda: hs.get_instance_id, None),
        ("HomeServer.get_datastores().main", lambda: hs.get_datastores().main, None),
        (
            "store.get_users_in_room",
            lambda: hs.get_datastores().main.get_users_in_room,
            None,
        ),
        (
            "store.get_rooms_for_user",
            lambda: hs.get_datastores().main.get_rooms_for_user,
            None,
        ),
    ]
    missing = []
    for name, get, parameter in wanted:
        try:
            target = get()
            if parameter is not None and (
                parameter not in inspect.signature(target).parameters
            ):
                missing.append(name)
        except (AttributeError, TypeError, ValueError):
            missing.append(name)
    return missing


def require_internals(api: ModuleApi) -> None:
    """Stop start-up with a ``ConfigError`` naming the internals Synapse lacks."""
    if missing := missing_internals(api):
        raise ConfigError(
            f"synapse_breakout cannot run on this Synapse: it lacks {', '.join(missing)}"
            " (see docs/operations.md, Supported Synapse releases)"
        )
