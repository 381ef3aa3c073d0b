"""``room_capacity``: a local user's join into an own room that already has
that many members is refused (docs/rules.md, "Room capacity").

A part of the ``check_event_allowed`` callback. Membership events of rooms
that are not capped cost a cached lookup and nothing more: :meth:`concerns` is
what the event rules' shortcut asks before Synapse loads a room's state
(synapse_adapter.py); the decision is made on the state Synapse hands over.
Joins racing for the last place take turns in the journal
(journal/capacity.py), on one process and across workers.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import EventBase, ModuleApi

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.capacity import CapacityStore, CappedRoom
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix.capacity import counted_members, is_counted, room_label
from synapse_breakout.matrix.errors import RoomFullError
from synapse_breakout.matrix.power import StateMap, membership
from synapse_breakout.metrics import JOINS_REFUSED

logger = logging.getLogger(__name__)

MEMBER = "m.room.member"
#: What a join's check reads of the parent: who its moderators are.
PARENT_POWER = (("m.room.create", ""), ("m.room.power_levels", ""))


class RoomCapacity:
    """The capacity rule on membership events."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        capacity: CapacityStore,
        store: OperationStore,
    ):
        self._config = config
        self._api = api
        self._capacity = capacity
        self._store = store

    async def concerns(self, event: EventBase) -> bool:
        """Whether the rule needs the room's state for ``event``: a membership
        event in a capped room. Cached: no database access per event."""
        return (
            event.type == MEMBER
            and await self._capacity.capped(event.room_id) is not None
        )

    async def check_event_allowed(
        self, event: EventBase, state: StateMap
    ) -> tuple[bool, dict[str, Any] | None]:
        """Allow, or raise :class:`RoomFullError`; a leave frees its place."""
        capped = (
            await self._capacity.capped(event.room_id) if event.type == MEMBER else None
        )
        if capped is None:
            return True, None
        user, value = event.state_key, event.content.get("membership")
        if value in ("leave", "ban"):
            await self._capacity.release(event.room_id, user)
        if value != "join":
            return True, None
        if membership(user, state) == "join" or not self._api.is_mine(user):
            return True, None  # a profile change, or a remote join
        running = await self._store.get_running(capped.parent_room_id)
        if running is None or running.op_id != capped.op_id:
            return True, None  # its break-out ended: the room is on its own
        await self._claim(event, state, capped)
        return True, None

    async def _claim(
        self, event: EventBase, state: StateMap, capped: CappedRoom
    ) -> None:
        user, level = event.state_key, self._config.power_level
        parent = await self._api.get_room_state(capped.parent_room_id, PARENT_POWER)
        if not is_counted(user, parent, level):
            return  # a moderator of the parent
        members = counted_members(state, parent, level) - {user}
        taken = await self._capacity.claim(
            event.room_id, user, members, capped.capacity
        )
        if taken is None:
            return
        JOINS_REFUSED.inc()
        logger.info("Refused %s's join to %s: full (%d)", user, event.room_id, taken)
        raise RoomFullError(room_label(state, event.room_id), taken, capped.capacity)
