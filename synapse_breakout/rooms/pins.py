"""Pinning the module's notices, so they stay in sight, and unpinning them.

Element Web (``PinnedMessageBanner``) and Element X show a room's pinned
messages as a banner at the top of the room. A start pins its ``started``
notice in the parent and each ``welcome`` in its room; the end (``DELETE``, the
timer, ``replace``) unpins exactly those, leaving every other pin as it was
(docs/participants.md). The sender must be allowed to change
``m.room.pinned_events``: where they are not, the pin is skipped and logged,
never a failure. Each change reads the list and sends it back changed, as
clients do; so that no two of the module's own changes of one room's list
overlap, a replacing start's ``started`` takes the place of the old one in one
change (the old break-out's end leaves the parent's pins to it). Each change
is a step of the pacer in its break-out's lane (pacing.py).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.pins import PinStore
from synapse_breakout.matrix.pins import (
    PIN_STATE,
    PINNED_EVENTS,
    may_pin,
    pinned,
    with_pin,
    without_pins,
)
from synapse_breakout.rooms.pacing import Pacer

logger = logging.getLogger(__name__)


class Pinner:
    """Pins and unpins a break-out's notices."""

    def __init__(
        self, api: ModuleApi, store: OperationStore, pins: PinStore, pacer: Pacer
    ):
        self._api = api
        self._store = store
        self._pins = pins
        self._pacer = pacer

    async def _change(
        self,
        parent: str,
        sender: str,
        room_id: str,
        pin: str | None,
        unpin: Collection[str],
    ) -> bool:
        """Unpin ``unpin`` and pin ``pin`` in ``room_id`` (of ``parent``'s
        break-out) as ``sender``, in one change; whether the room's pins
        changed (False: nothing to change, or not allowed)."""
        async with self._pacer.step(parent):
            return await self._change_now(sender, room_id, pin, unpin)

    async def _change_now(
        self, sender: str, room_id: str, pin: str | None, unpin: Collection[str]
    ) -> bool:
        state = await self._api.get_room_state(room_id, PIN_STATE)
        pins = pinned(state)
        new = without_pins(pins, unpin)
        if pin is not None:
            new = with_pin(new, pin)
        if new == pins:
            return False
        if not may_pin(sender, state):
            logger.info(
                "Not changing the pinned events of %s: %s may not", room_id, sender
            )
            return False
        await self._api.create_and_send_event_into_room(
            {
                "type": PINNED_EVENTS,
                "room_id": room_id,
                "sender": sender,
                "state_key": "",
                "content": {"pinned": new},
            }
        )
        return True

    async def pin(
        self,
        op_id: str,
        parent: str,
        sender: str,
        room_id: str,
        event_id: str | None,
        replacing: str | None = None,
    ) -> None:
        """Pin ``op_id``'s notice ``event_id`` in ``room_id``; best effort.

        Args:
            event_id: None: pin nothing (the notice could not be sent), only
                unpin what ``replacing`` pinned.
            replacing: the start operation of the break-out this one replaces,
                whose pins in ``room_id`` (its ``started``) this one's take
                the place of.

        A break-out that ended meanwhile (its end may have read the pins
        before this one) gets it unpinned again at once.
        """
        old = (await self._pins.of(replacing)).get(room_id, []) if replacing else []
        try:
            if not await self._change(parent, sender, room_id, event_id, old):
                return
            if event_id is None:
                return
            await self._pins.record(op_id, room_id, event_id)
            running = await self._store.get_running(parent)
            if running is None or running.op_id != op_id:
                await self._change(parent, sender, room_id, None, {event_id})
        except SynapseError as e:
            logger.warning("Could not pin %s in %s: %s", event_id, room_id, e.msg)

    async def unpin(
        self, op_id: str, parent: str, sender: str, rooms: Iterable[str]
    ) -> None:
        """Unpin what ``op_id``'s start (of ``parent``) pinned in ``rooms``;
        best effort."""
        pins = await self._pins.of(op_id)
        for room_id in rooms:
            if room_id not in pins:
                continue
            try:
                await self._change(parent, sender, room_id, None, set(pins[room_id]))
            except SynapseError as e:
                logger.warning("Could not unpin in %s: %s", room_id, e.msg)
