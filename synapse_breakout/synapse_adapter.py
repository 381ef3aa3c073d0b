"""The few Synapse internals the public module API does not offer, in one place.

Everything else goes through ``synapse.module_api``. Each function here says
why it must reach further and falls back safely when a release changes what
it touches; ``require_internals`` refuses an unfit release at start-up;
``tests/test_synapse_adapter.py`` runs them against the installed Synapse.
Reads of Synapse's own tables are journal/synapse_tables.py's.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from synapse.api.errors import ModuleFailedException, SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.logging import context as logcontext
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import ConfigError
from synapse.rest.client.openid import IdTokenServlet
from synapse.storage.engines._base import IsolationLevel
from synapse.types import UserID, create_requester
from twisted.internet import defer

logger = logging.getLogger(__name__)


def creators_outrank_everyone(room_version: str) -> bool:
    """Whether the room version gives its creators unlimited power (MSC4289).

    Why internal: the module API does not describe room versions; Synapse's
    ``KNOWN_ROOM_VERSIONS`` is where their rules live. An unknown version
    answers False (the rules of the versions before 12).
    """
    known = KNOWN_ROOM_VERSIONS.get(room_version)
    return known is not None and known.msc4289_creator_power_enabled


def allows_restricted_join_rule(room_version: str) -> bool:
    """Whether the room version has the "restricted" join rule.

    Why internal: as ``creators_outrank_everyone`` (an unknown version: False).
    """
    known = KNOWN_ROOM_VERSIONS.get(room_version)
    return known is not None and known.restricted_join_rule


def wake(waiter: defer.Deferred[None]) -> None:
    """Fire ``waiter`` (awaited through ``make_deferred_yieldable``) if unfired.

    Why internal: the woken coroutine runs inside this call and takes its own
    logging context back; fired in the caller's, it would leave the caller in
    the sentinel context. Synapse's ``Linearizer`` and ``Notifier`` fire their
    waiters in ``PreserveLoggingContext()``, which the module API lacks.
    """
    if not waiter.called:
        with logcontext.PreserveLoggingContext():
            waiter.callback(None)


def skip_state_load_for_other_event_types(
    api: ModuleApi,
    callback: Callable[..., Any],
    event_types: Collection[str],
    concerns: Callable[[EventBase], Awaitable[bool]],
) -> bool:
    """Keep Synapse from loading a room's state for events the module ignores.

    Why internal: once any ``check_event_allowed`` callback is registered,
    Synapse fetches the full state of the room before every local event, to
    hand it to the callbacks; in a large room whose state is not in the event
    cache that is the whole cost of a message (docs/performance.md). The module
    API cannot say which events a callback wants. So this wraps Synapse's
    dispatcher: for an event whose type is not in ``event_types`` and that
    ``concerns`` (cheap: no database access for most events) does not claim,
    when the only registered callbacks are ``callback`` (which would allow it),
    it answers "allowed" without loading state. Anything else goes through
    Synapse's dispatcher. The callbacks are read on every call.

    Returns:
        Whether the shortcut is in place (False: Synapse is not as expected).
    """
    hs = getattr(api, "_hs", None)
    rules = hs.get_module_api_callbacks().third_party_event_rules if hs else None
    original = getattr(rules, "check_event_allowed", None)
    if (
        not isinstance(getattr(rules, "_check_event_allowed_callbacks", None), list)
        or original is None
        or list(inspect.signature(original).parameters) != ["event", "context"]
    ):
        logger.warning(
            "synapse_breakout: this Synapse's third-party rules dispatcher is not "
            "the one expected; every event will load its room's state"
        )
        return False
    if getattr(original, "_breakout_filtered", False):
        return True
    freezes = dispatcher_freezes_events(original)
    if freezes:
        logger.info(
            "synapse_breakout: this Synapse freezes events before the third-party"
            " rules; break-out events are checked without freezing them"
        )

    @functools.wraps(original)
    async def check_event_allowed(
        event: EventBase, context: Any
    ) -> tuple[bool, dict[str, Any] | None]:
        callbacks = getattr(rules, "_check_event_allowed_callbacks", None)
        if isinstance(callbacks, list) and all(cb == callback for cb in callbacks):
            if event.type not in event_types and not await concerns(event):
                return True, None
            if freezes:
                return await _check_unfrozen(hs, callback, event, context)
        result: tuple[bool, dict[str, Any] | None] = await original(event, context)
        return result

    check_event_allowed._breakout_filtered = True  # type: ignore[attr-defined]
    rules.check_event_allowed = check_event_allowed  # type: ignore[union-attr]
    return True


def dispatcher_freezes_events(check_event_allowed: Callable[..., Any]) -> bool:
    """Whether Synapse's third-party rules dispatcher freezes the event it checks.

    Why it matters: some releases (1.141 among them) call ``event.freeze()``
    before the callbacks, which turns the event's ``auth_events`` list into a
    tuple; in a room version 12 room Synapse then fails to send the event
    ("can only concatenate tuple (not list) to tuple", a 500). Newer releases
    do not freeze. Read from the dispatcher's source; where the source cannot
    be read, assume it freezes (the unfrozen path is correct on every release).
    """
    try:
        source = inspect.getsource(check_event_allowed)
    except (OSError, TypeError):
        return True
    return ".freeze()" in source


async def _check_unfrozen(
    hs: Any, callback: Callable[..., Any], event: EventBase, context: Any
) -> tuple[bool, dict[str, Any] | None]:
    """Run ``callback`` as Synapse's dispatcher does, without freezing ``event``.

    Why internal: see ``dispatcher_freezes_events``. The state handed over is
    the one Synapse's dispatcher loads: the event's previous state, from the
    event store. A failure other than a ``SynapseError`` becomes Synapse's
    ``ModuleFailedException``, as in the dispatcher.
    """
    prev_state_ids = await context.get_prev_state_ids()
    events = await hs.get_datastores().main.get_events(prev_state_ids.values())
    state = {(e.type, e.state_key): e for e in events.values()}
    try:
        allowed, replacement = await callback(event, state)
    except SynapseError:
        raise
    except Exception as e:
        raise ModuleFailedException(
            "Failed to run `check_event_allowed` module API callback"
        ) from e
    if allowed is False:
        return False, None
    return True, replacement if isinstance(replacement, dict) else None


async def update_membership(
    api: ModuleApi, sender: str, target: str, room_id: str, membership: str
) -> str:
    """Change a membership as a local user, without rate limiting.

    Why internal: ``ModuleApi.update_room_membership`` applies the invite and
    join rate limits (``rc_invites``, ``rc_joins``: bursts of about 10), and a
    break-out moves up to ``max_users_per_room`` users per room in one call.
    Authorization is unchanged: the sender still needs the power to invite or
    kick, and a join still obeys the room's join rule.

    Returns:
        The event ID of the membership event.
    """
    requester = create_requester(sender, authenticated_entity=api.server_name)
    event_id, _ = await api._hs.get_room_member_handler().update_membership(
        requester=requester,
        target=UserID.from_string(target),
        room_id=room_id,
        action=membership,
        ratelimit=False,
    )
    return event_id


def read_committed(api: ModuleApi) -> dict[str, Any]:
    """Keyword arguments that run a ``run_db_interaction`` at READ COMMITTED.

    Why internal: Synapse runs transactions at REPEATABLE READ on PostgreSQL.
    A start must wait for a concurrent start of the same moderator, then see
    what it committed (``moderator_starts_per_hour``, counted and recorded in
    one transaction); at REPEATABLE READ the waiting one fails with a
    serialization error, which Synapse retries 5 times only: 30 starts at once
    would exhaust that. ``runInteraction`` takes ``isolation_level`` (the
    module API hands keyword arguments on to it); the levels are Synapse's.
    Without it (another release): {} and Synapse's retries.
    """
    run = api._hs.get_datastores().main.db_pool.runInteraction
    if "isolation_level" not in inspect.signature(run).parameters:
        return {}
    return {"isolation_level": IsolationLevel.READ_COMMITTED}


def instance_id(api: ModuleApi) -> str:
    """The ID of this process among the homeserver's (a new one each start).

    Why internal: room locks in Synapse's ``worker_read_write_locks`` name the
    process holding them by this ID, and recovery drops a dead process's locks
    only (journal/synapse_tables.py); the module API does not expose it.
    """
    return str(api._hs.get_instance_id())


def openid_lifetime_ms() -> int:
    """How long Synapse's OpenID tokens are valid after they are issued.

    Why internal: a console session is made only from a fresh OpenID token,
    and ``open_id_tokens`` says only until when a token is valid; the
    lifetime is ``IdTokenServlet.EXPIRES_MS`` (one hour on every supported
    release; one hour where a release drops the constant).
    """
    return int(getattr(IdTokenServlet, "EXPIRES_MS", 3600 * 1000))


async def joined_users(api: ModuleApi, room_id: str) -> frozenset[str]:
    """The users joined to a room now, by ID.

    Why internal: the module API's only way to a room's members is
    ``get_room_state`` of every member event: 10,000 in a 10,000-member parent
    (Synapse's whole default event cache) on each ``auto_assign: joined`` start
    and ejection check (docs/performance.md). ``get_users_in_room``, the cached
    store method of Synapse's ``/joined_members`` and sync, returns IDs only.
    """
    store: Any = api._hs.get_datastores().main
    return frozenset(await store.get_users_in_room(room_id))


def missing_internals(api: ModuleApi) -> list[str]:
    """The handler methods (with their ``ratelimit`` parameter) and accessors
    this adapter calls that this Synapse lacks. (Its SQL on Synapse's tables
    runs in the tests against the lowest and the newest release.)"""
    hs = getattr(api, "_hs", None)
    if hs is None:
        return ["ModuleApi._hs"]
    wanted: dict[str, Callable[[], Any]] = {
        "RoomMemberHandler.update_membership(ratelimit=)": lambda: (
            hs.get_room_member_handler().update_membership
        ),
        "HomeServer.get_instance_id()": lambda: hs.get_instance_id,
        "store.get_users_in_room": lambda: hs.get_datastores().main.get_users_in_room,
        "logcontext.PreserveLoggingContext": lambda: logcontext.PreserveLoggingContext,
    }
    missing = []
    for name, get in wanted.items():
        try:
            target = get()
            if "(ratelimit=)" in name and (
                "ratelimit" not in inspect.signature(target).parameters
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
