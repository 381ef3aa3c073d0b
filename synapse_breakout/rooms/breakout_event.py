"""Sending a parent's break-out event: a new one, an emptied one (the end),
and withdrawing one a roll back left pointing at deleted rooms. Each is a step
of the pacer in its break-out's lane (pacing.py): thirty moves or ends at once
send thirty events into thirty large rooms."""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout.matrix.content import BREAKOUT_STATE, current_breakout
from synapse_breakout.rooms.pacing import Pacer

logger = logging.getLogger(__name__)


class BreakoutEvents:
    """Sends the parent's break-out events, as a local user."""

    def __init__(self, api: ModuleApi, pacer: Pacer):
        self._api = api
        self._pacer = pacer

    async def send(
        self, event_type: str, parent: str, sender: str, content: dict[str, Any]
    ) -> EventBase:
        """Send the parent's break-out event of ``event_type``."""
        async with self._pacer.step(parent):
            return await self._api.create_and_send_event_into_room(
                {
                    "type": event_type,
                    "room_id": parent,
                    "sender": sender,
                    "state_key": "",
                    "content": content,
                },
            )

    async def send_emptied(
        self, event_type: str, parent: str, sender: str
    ) -> EventBase:
        """End the break-out of ``event_type``: its event with no children."""
        return await self.send(event_type, parent, sender, {event_type: {}})

    async def withdraw(self, event: EventBase, sender: str) -> None:
        """Empty ``event``'s break-out if ``event`` is still the one in force:
        it lists rooms a roll back deleted (a start recovery took for dead)."""
        state = await self._api.get_room_state(event.room_id, BREAKOUT_STATE)
        current = current_breakout(state).event
        if current is None or current.event_id != event.event_id:
            return
        try:
            await self.send_emptied(event.type, event.room_id, sender)
        except SynapseError as e:
            logger.warning("Could not withdraw %s: %s", event.event_id, e.msg)
