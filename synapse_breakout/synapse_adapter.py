"""The few Synapse internals the public module API does not offer, in one place.

Everything else goes through ``synapse.module_api``. Each function here says
why it must reach further and falls back safely when a release changes what
it touches; ``require_internals`` refuses an unfit release at start-up;
``tests/test_synapse_adapter.py`` runs them against the installed Synapse.
SQL on Synapse's own tables lives here too: its schema is an internal.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

from synapse.api.errors import ModuleFailedException, SynapseError
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.logging import context as logcontext
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import ConfigError
from synapse.storage.database import LoggingTransaction, make_in_list_sql_clause
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
    """Whether the room version has the "restricted" join rule (why
    internal: as ``creators_outrank_everyone``; unknown: False)."""
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


def _in_txn(
    txn: LoggingTransaction, sql: str, column: str, ids: list[str], extra: list[Any]
) -> list[tuple[Any, ...]] | int:
    clause, args = make_in_list_sql_clause(txn.database_engine, column, ids)
    txn.execute(sql.format(ids=clause), [*args, *extra])
    return txn.rowcount if sql.startswith("DELETE") else [tuple(r) for r in txn]


async def _rows_among(
    api: ModuleApi, desc: str, sql: str, column: str, ids: Iterable[str], *extra: Any
) -> Any:
    """One query on Synapse's tables for all of ``ids`` (none for no ids):
    ``sql``'s ``{ids}`` is a clause ``column IN ids``. Its rows, or how many
    rows a ``DELETE`` deleted."""
    wanted = sorted(set(ids))
    if not wanted:
        return 0 if sql.startswith("DELETE") else []
    return await api.run_db_interaction(desc, _in_txn, sql, column, wanted, list(extra))


async def _ids_among(
    api: ModuleApi, desc: str, sql: str, column: str, ids: Iterable[str], *extra: Any
) -> set[str]:
    """The first column of :func:`_rows_among`'s rows."""
    return {row[0] for row in await _rows_among(api, desc, sql, column, ids, *extra)}


async def existing_rooms(api: ModuleApi, room_ids: Iterable[str]) -> set[str]:
    """The rooms among ``room_ids`` that Synapse still has (not purged).

    Why internal: a purged room, or a shell a crash left, has no state for
    ``get_room_state``; only Synapse's ``rooms`` table says (in one query).
    """
    return await _ids_among(
        api,
        "breakout_existing_rooms",
        "SELECT room_id FROM rooms WHERE {ids}",
        "room_id",
        room_ids,
    )


async def rooms_with_create_event(api: ModuleApi, room_ids: Iterable[str]) -> set[str]:
    """The rooms among ``room_ids`` whose create event this server holds.

    Why internal: the module API looks up one room at a time (``get_room_state``,
    which raises for unknown rooms); a break-out lists up to ``max_child_rooms``
    children and must cost one query. So this reads Synapse's ``state_events``
    (every state event the server stored) through ``run_db_interaction``.
    """
    return await _ids_among(
        api,
        "breakout_rooms_with_create_event",
        "SELECT DISTINCT room_id FROM state_events"
        " WHERE type = 'm.room.create' AND state_key = '' AND {ids}",
        "room_id",
        room_ids,
    )


async def members_of_rooms(
    api: ModuleApi, room_ids: Iterable[str], memberships: Collection[str]
) -> dict[str, dict[str, str]]:
    """Who has one of ``memberships`` in each of ``room_ids`` now:
    ``{room_id: {user_id: membership}}``, rooms without any left out.

    Why internal: the module API's only way to a room's members is
    ``get_room_state``, which loads every member event: the ejection check
    (every child of every break-out, each 5 s) took about a second of the
    reactor every 5 s at 5,000 users (docs/performance.md). This is one query
    on ``current_state_events``, whose ``membership`` column Synapse's room
    member store reads the same way (rejected events have none).
    """
    kinds = sorted(memberships)
    found: dict[str, dict[str, str]] = {}
    for room_id, user_id, membership in await _rows_among(
        api,
        "breakout_members_of_rooms",
        "SELECT room_id, state_key, membership FROM current_state_events"
        " WHERE type = 'm.room.member' AND {ids} AND membership IN ("
        + ", ".join("?" for _ in kinds)
        + ")",
        "room_id",
        room_ids if kinds else (),
        *kinds,
    ):
        found.setdefault(room_id, {})[user_id] = membership
    return found


def skip_state_load_for_other_event_types(
    api: ModuleApi, callback: Callable[..., Any], event_types: Collection[str]
) -> bool:
    """Keep Synapse from loading a room's state for events the module ignores.

    Why internal: once any ``check_event_allowed`` callback is registered,
    Synapse fetches the room's full state before every local event for the
    callbacks: for a message in a large room whose state is not in the event
    cache that is the whole cost (docs/performance.md), and the module API
    cannot say which event types a callback wants. So this wraps Synapse's
    dispatcher: an event whose type is not in ``event_types``, while the only
    registered callbacks are ``callback`` (which would allow it), is "allowed"
    without loading state; any other callback or break-out event goes through
    Synapse's dispatcher unchanged. The callbacks are read on every call.

    Returns:
        Whether the shortcut is in place (False: Synapse's layout is not the
        one this was written for, and everything stays as Synapse does it).
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
            if event.type not in event_types:
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


async def rooms_created_by(api: ModuleApi, sender: str, since_ts: int) -> set[str]:
    """Rooms whose create event ``sender`` sent at or after ``since_ts`` (ms).

    Why internal: a crash can fall between Synapse persisting a child room's
    create event and the module journalling the room; recovery finds such
    rooms by their creator and creation time (then checks the operation marker
    in their create event through the public ``get_room_state``). No module
    API lists rooms by creator.
    """
    return await _ids_among(
        api,
        "breakout_rooms_created_by",
        "SELECT room_id FROM events WHERE type = 'm.room.create' AND {ids}"
        " AND origin_server_ts >= ?",
        "sender",
        [sender],
        since_ts,
    )


async def stored_events(
    api: ModuleApi, event_ids: Iterable[str], rejected: bool = False
) -> set[str]:
    """The events among ``event_ids`` that Synapse stored and did not reject
    (``rejected``: that it stored as rejected).

    Why internal: the spam-checker hook runs before Synapse authorises an
    event, and the module API has no callback for an event's outcome nor a
    way to ask whether an event was rejected (``rejections`` table). One
    query for all of them.
    """
    test = "EXISTS" if rejected else "NOT EXISTS"
    return await _ids_among(
        api,
        "breakout_stored_events",
        "SELECT e.event_id FROM events e WHERE {ids} AND "
        + test
        + " (SELECT 1 FROM rejections r WHERE r.event_id = e.event_id)",
        "e.event_id",
        event_ids,
    )


async def release_other_processes_room_locks(
    api: ModuleApi, room_ids: Iterable[str]
) -> int:
    """Drop the room locks other processes hold on rooms of a dead operation.

    Why internal: no module API touches locks. A process killed while sending
    into a room leaves its read lock in Synapse's ``worker_read_write_locks``
    until it times out (2 minutes), and purging the room waits for it. No live
    process locks a dead operation's rooms: their locks are dropped as
    Synapse's reaper drops stale ones (a plain delete), this process's kept.

    Returns:
        How many locks were dropped.
    """
    dropped: int = await _rows_among(
        api,
        "breakout_release_room_locks",
        "DELETE FROM worker_read_write_locks WHERE {ids} AND instance_name != ?",
        "lock_key",
        room_ids,
        api._hs.get_instance_id(),
    )
    return dropped


async def user_for_openid_token(api: ModuleApi, token: str) -> str | None:
    """The local user an OpenID token of this homeserver was issued to, if valid.

    Why internal: no module API checks OpenID tokens; the public way is the
    federation endpoint ``/_matrix/federation/v1/openid/userinfo``, which the
    server often cannot reach itself (behind a proxy, another port, federation
    off). It answers through ``get_user_id_for_open_id_token(token, now)`` on
    Synapse's ``open_id_tokens``; this makes the same call, so a token is valid
    here exactly when the endpoint would accept it (this server's, unexpired).

    Returns:
        The user ID; None for an unknown or expired token (or no such method).
    """
    store = api._hs.get_datastores().main
    lookup = getattr(store, "get_user_id_for_open_id_token", None)
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

    Why internal: sessions are signed, not stored, so that any worker can
    check them and nothing accumulates. The only secret shared by every
    process that a module can reach is Synapse's ``macaroon_secret_key`` (it
    signs Synapse's login tokens; derived from the signing key if unset). The
    module derives its own key from it with HMAC-SHA256 and a label.
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
    """The rooms a local user is joined to (why internal: no module API lists
    them; ``get_rooms_for_user`` is the cached store method of ``/joined_rooms``)."""
    # Typed as Any: mypy reads Synapse's @cached descriptor as an unbound method.
    store: Any = api._hs.get_datastores().main
    return frozenset(await store.get_rooms_for_user(user_id))


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
        "store.get_rooms_for_user": lambda: hs.get_datastores().main.get_rooms_for_user,
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
