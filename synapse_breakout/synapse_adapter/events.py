"""Events: the dispatcher's state loading and freezing, sending events and
memberships without Synapse's rate limits, and which stored events were
accepted (Synapse internals: see the package's docstring)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any

from synapse.api.errors import ModuleFailedException, SynapseError
from synapse.module_api import EventBase, ModuleApi
from synapse.storage.database import LoggingTransaction, make_in_list_sql_clause
from synapse.types import UserID, create_requester

logger = logging.getLogger(__name__)


def skip_state_load_for_other_event_types(
    api: ModuleApi, callback: Callable[..., Any], event_types: Collection[str]
) -> bool:
    """Keep Synapse from loading a room's state for events the module ignores.

    Why internal: once any ``check_event_allowed`` callback is registered,
    Synapse fetches the full state of the room before every local event, to
    hand it to the callbacks; for a message in a large room whose state is not
    in the event cache that is the whole cost (see docs/performance.md). The
    module API offers no way to say which event types a callback wants. So this
    wraps Synapse's dispatcher: for an event whose type is not in
    ``event_types``, when the only registered callbacks are ``callback``
    (which would allow it), it answers "allowed" without loading state. Any
    other module's callback, or any break-out event, goes through Synapse's own
    dispatcher unchanged.

    Returns:
        Whether the shortcut is in place (False: Synapse's layout is not the
        one this was written for, and everything stays as Synapse does it).
    """
    hs = getattr(api, "_hs", None)
    rules = hs.get_module_api_callbacks().third_party_event_rules if hs else None
    callbacks = getattr(rules, "_check_event_allowed_callbacks", None)
    original = getattr(rules, "check_event_allowed", None)
    if (
        not isinstance(callbacks, list)
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
        if all(cb == callback for cb in callbacks):
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


async def send_event(api: ModuleApi, event_dict: dict[str, Any]) -> EventBase:
    """Send a non-membership event as a local user, without rate limiting.

    Why internal: ``ModuleApi.create_and_send_event_into_room`` applies the
    sender's message rate limit (``rc_message``). A host's break-out sends a
    notice to every child room at once (broadcast, end), which the default
    limit (0.2/s, burst 10) would refuse half-way. The event still passes every
    event rule and authorization check.
    """
    requester = create_requester(
        event_dict["sender"], authenticated_entity=api.server_name
    )
    handler = api._hs.get_event_creation_handler()
    event, _ = await handler.create_and_send_nonmember_event(
        requester, event_dict, ratelimit=False
    )
    return event


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


def _accepted_events_txn(
    txn: LoggingTransaction, event_ids: list[str], rejected: bool
) -> set[str]:
    clause, args = make_in_list_sql_clause(txn.database_engine, "e.event_id", event_ids)
    test = "EXISTS" if rejected else "NOT EXISTS"
    txn.execute(
        f"SELECT e.event_id FROM events e WHERE {clause} AND {test}"
        " (SELECT 1 FROM rejections r WHERE r.event_id = e.event_id)",
        args,
    )
    return {row[0] for row in txn}


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
    wanted = sorted(set(event_ids))
    if not wanted:
        return set()
    return await api.run_db_interaction(
        "breakout_stored_events", _accepted_events_txn, wanted, rejected
    )
