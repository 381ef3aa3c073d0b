"""Unknown senders of break-out events (docs/security.md), as a spam-checker hook.

Synapse runs the spam-checker's ``check_event_for_spam`` on every local send and
on every event arriving over federation (where the third-party event rules of
event_rules.py never run), so it is where the server judges the sender of a break-out
event. The sender is *trusted* at ``power_level`` or above in the parent room,
or as a server admin of this homeserver; otherwise *unknown*.

Which state the power level is read from: the room's **current state**, as this
server holds it when the hook runs, limited to the create and power-levels
events. Synapse calls the hook before the event is persisted: for a local event
that is exactly the state before it; for an event from another server it is
the state this server has accepted so far (its prev events may not even be
fetched yet at that point, and the module API offers no state at an arbitrary
event). So a remote event that is old (backfilled) or concurrent with a power
change is judged against the newer state. docs/security.md explains what that
means for each mode.

The decisions are plain functions (:func:`judge`, :func:`synapse_will_persist`);
:class:`SenderTrust` holds the thin callbacks. The verdicts are stored by
journal/verdicts.py and listed by ``GET /flags`` (http/flags.py).
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Generic, TypeVar

import attrs
from canonicaljson import encode_canonical_json
from synapse.module_api import NOT_SPAM, EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig, UnknownSenders
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.journal.verdicts import SenderVerdict, VerdictStore
from synapse_breakout.matrix.content import is_breakout_type
from synapse_breakout.matrix.power import (
    StateEvent,
    StateMap,
    required_level_to_send,
    served_level,
    user_power_level,
)
from synapse_breakout.metrics import SENDER_VERDICTS

logger = logging.getLogger(__name__)

#: The key of the annotation in a served event's ``unsigned``.
SENDER_TRUST_KEY = "org.matrix.msc3985.sender_trust"

#: Verdicts kept in memory per process (they never change once stored).
VERDICT_CACHE_SIZE = 10_000
#: When a recorded verdict's event is looked for (ms after recording, then
#: after that): accepted, it stays; rejected or still absent at the end, it goes.
CONFIRM_AFTER_MS = (5_000, 600_000)

_JUDGED_STATE = (("m.room.create", ""), ("m.room.power_levels", ""))


class TrustReason(enum.Enum):
    """Why a sender is trusted or unknown (``reason``; None: their power level)."""

    SERVER_ADMIN = "server_admin"
    LOW_POWER_LEVEL = "low_power_level"


@attrs.frozen
class Judgement:
    trusted: bool
    reason: TrustReason | None


def judge(power_level: int, required: int, server_admin: bool) -> Judgement:
    """Trusted at ``required`` or above, or as a server admin; else unknown."""
    if power_level >= required:
        return Judgement(True, None)
    if server_admin:
        return Judgement(True, TrustReason.SERVER_ADMIN)
    return Judgement(False, TrustReason.LOW_POWER_LEVEL)


def synapse_will_persist(
    event_type: str,
    state_key: str | None,
    sender: str,
    content: Mapping[str, Any],
    state: StateMap,
) -> bool:
    """Whether Synapse will go on to persist this local event after the hook.

    Synapse runs the spam-checker before its own authorization and before it
    drops a state event identical to the current one (same sender, same
    content), so the hook sees events that never come to exist. Recording
    verdicts on those would list event IDs in ``/flags`` that no one can fetch.
    These are the two cases that happen in practice (not for break-outs: a
    shadow-banned sender, a retried send); ``state`` must hold the create and
    power-levels events and, for a state event, the current ``(type,
    state_key)`` event.
    """
    if user_power_level(sender, state) < required_level_to_send(event_type, state):
        return False
    if state_key is None:
        return True
    current: StateEvent | None = state.get((event_type, state_key))
    return not (
        current is not None
        and current.sender == sender
        and encode_canonical_json(current.content) == encode_canonical_json(content)
    )


def annotation(verdict: SenderVerdict) -> dict[str, Any]:
    """The value of ``unsigned["org.matrix.msc3985.sender_trust"]``."""
    return {
        "trusted": verdict.trusted,
        "power_level": served_level(verdict.power_level),
        "required_power_level": verdict.required_power_level,
        "reason": verdict.reason,
    }


# --- the callbacks ------------------------------------------------------------

_K = TypeVar("_K")
_V = TypeVar("_V")


class LruCache(Generic[_K, _V]):
    """A small least-recently-used map.

    Synapse's ``@cached`` needs the homeserver's clock, which the module API
    does not expose; verdicts never change once stored, so a plain per-process
    map with no cross-worker invalidation is all the serving path needs.
    """

    def __init__(self, max_size: int):
        self._max_size = max_size
        self._items: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: _K, value: _V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._max_size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

    def forget(self, key: _K) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class SenderTrust:
    """The spam-checker hook and the unsigned annotation."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        verdicts: VerdictStore,
        tables: SynapseTables,
    ):
        self._config = config
        self._api = api
        self._verdicts = verdicts
        self._tables = tables
        self.cache: LruCache[str, SenderVerdict] = LruCache(VERDICT_CACHE_SIZE)

    async def check_event_for_spam(self, event: EventBase) -> Any:
        """Judge a break-out event's sender; any other event passes at once.

        Returns:
            ``NOT_SPAM``, or in ``reject`` mode ``Codes.FORBIDDEN`` for an
            unknown remote sender (Synapse then soft-fails the event).

        Raises:
            SynapseError: 403 ``M_FORBIDDEN`` for an unknown local sender in
                ``reject`` mode, naming the sender and the level needed.
        """
        if not is_breakout_type(event.type):
            return NOT_SPAM
        local = self._api.is_mine(event.sender)
        state = await self._state_for(event, with_own_type=local)
        if ("m.room.create", "") not in state:
            # Not in the room yet: the event is part of the state of a room
            # this server is joining. Nothing to judge against; it is judged
            # when first served.
            return NOT_SPAM
        if local and not synapse_will_persist(
            event.type, event.get_state_key(), event.sender, event.content, state
        ):
            return NOT_SPAM
        verdict = await self._judge(event, state, local)
        SENDER_VERDICTS.labels(
            "local" if local else "remote", "trusted" if verdict.trusted else "unknown"
        ).inc()
        reject = self._config.unknown_senders is UnknownSenders.REJECT
        if not verdict.trusted:
            logger.info(
                "%s in %s from unknown sender %s (power level %d < %d)%s",
                event.type,
                event.room_id,
                event.sender,
                verdict.power_level,
                verdict.required_power_level,
                ": rejected" if reject else "",
            )
        if reject and not verdict.trusted and local:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"sending {event.type} needs power level "
                f"{verdict.required_power_level} in this room, or a server admin; "
                f"{event.sender} has {verdict.power_level}",
                Codes.FORBIDDEN,
                additional_fields={SENDER_TRUST_KEY: annotation(verdict)},
            )
        await self._record(verdict)
        if reject and not verdict.trusted:
            return Codes.FORBIDDEN
        return NOT_SPAM

    async def add_unsigned(self, event: EventBase) -> dict[str, Any]:
        """The sender-trust annotation of a break-out event served to a client.

        One database query per event at most (then cached), none for other
        types; an event the hook never saw is judged now, once.
        """
        if not is_breakout_type(event.type):
            return {}
        verdict = self.cache.get(event.event_id)
        if verdict is None:
            verdict = await self._verdicts.get(event.event_id)
            if verdict is None:
                verdict = await self._judge_late(event)
                if verdict is None:
                    return {}
            self.cache.put(event.event_id, verdict)
        return {SENDER_TRUST_KEY: annotation(verdict)}

    # --- internals ------------------------------------------------------------

    async def _state_for(self, event: EventBase, with_own_type: bool) -> StateMap:
        wanted = list(_JUDGED_STATE)
        state_key = event.get_state_key()
        if with_own_type and state_key is not None:
            wanted.append((event.type, state_key))
        return await self._api.get_room_state(event.room_id, wanted)

    async def _judge(
        self, event: EventBase, state: StateMap, local: bool
    ) -> SenderVerdict:
        required = self._config.power_level
        level = user_power_level(event.sender, state)
        # Only this server knows its admins; ask only when it matters.
        admin = (
            level < required and local and await self._api.is_user_admin(event.sender)
        )
        judgement = judge(level, required, admin)
        return SenderVerdict(
            event_id=event.event_id,
            room_id=event.room_id,
            sender=event.sender,
            trusted=judgement.trusted,
            power_level=level,
            required_power_level=required,
            reason=judgement.reason.value if judgement.reason else None,
            received_ts=self._api.get_current_time_msec(),
        )

    async def _record(self, verdict: SenderVerdict) -> bool | None:
        """Store and cache ``verdict``.

        Returns:
            True if stored; False if the event already had a verdict (that one
            stays); None if the database failed (logged, not raised).
        """
        try:
            inserted = await self._verdicts.record(verdict)
        except Exception:
            # Never hold up an event (or a federation transaction) for the
            # module's own table: the event is judged again when served.
            logger.exception("Could not record the verdict on %s", verdict.event_id)
            return None
        if inserted:
            self.cache.put(verdict.event_id, verdict)
            self._api.delayed_background_call(
                CONFIRM_AFTER_MS[0], self._confirm, verdict.event_id, 0
            )
        return inserted

    async def _confirm(self, event_id: str, attempt: int) -> None:
        """Keep the verdict on ``event_id`` only if Synapse accepted the event.

        The hook runs before Synapse authorises an event: one it then rejects
        (a sender who never joined) or never stores leaves no verdict behind.
        """
        if await self._tables.stored_events([event_id]):
            return
        if await self._tables.stored_events(
            [event_id], rejected=True
        ) or attempt + 1 >= len(CONFIRM_AFTER_MS):
            await self._verdicts.forget(event_id)
            self.cache.forget(event_id)
            return
        self._api.delayed_background_call(
            CONFIRM_AFTER_MS[attempt + 1], self._confirm, event_id, attempt + 1
        )

    async def _judge_late(self, event: EventBase) -> SenderVerdict | None:
        """Judge an event the hook never saw, against the current state.

        Break-outs in a room's initial state (``createRoom``), in the state of a
        room joined over federation, or sent before the module was loaded.
        """
        state = await self._state_for(event, with_own_type=False)
        if ("m.room.create", "") not in state:
            return None
        verdict = await self._judge(event, state, self._api.is_mine(event.sender))
        if await self._record(verdict) is False:
            # Another process recorded one meanwhile: the first verdict stays.
            return await self._verdicts.get(event.event_id)
        return verdict
