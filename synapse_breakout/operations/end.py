"""Ending a break-out: ``DELETE /rooms/{parentRoomId}`` and its deadline's
timer (docs/admin_api.md).

The emptied break-out event is sent under the parent's lock; then the console
widget leaves the parent (rooms/console_widget.py) and the own rooms get what
an end gives them (rooms/closing.py). The rooms live on.
"""

from __future__ import annotations

import logging

from synapse_breakout.journal.locks import ParentLocks
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix.errors import changed_meanwhile
from synapse_breakout.matrix.model import EndAnswer
from synapse_breakout.operations.outcomes import measured
from synapse_breakout.rooms.acting import ActingUsers
from synapse_breakout.rooms.breakout_event import BreakoutEvents
from synapse_breakout.rooms.closing import Closer
from synapse_breakout.rooms.console_widget import ConsoleWidget
from synapse_breakout.rooms.parent import ParentRooms

logger = logging.getLogger(__name__)

#: The notice a deadline posts in every child room.
TIME_IS_UP = "Time is up"


class Ender:
    """Ends break-outs."""

    def __init__(
        self,
        store: OperationStore,
        locks: ParentLocks,
        parents: ParentRooms,
        acting: ActingUsers,
        events: BreakoutEvents,
        closer: Closer,
        widget: ConsoleWidget,
    ):
        self._widget = widget
        self._store = store
        self._locks = locks
        self._parents = parents
        self._acting = acting
        self._events = events
        self._closer = closer

    async def end(
        self,
        requester: str,
        parent: str,
        message: str | None,
        close_rooms: bool,
        due_op: str | None = None,
    ) -> EndAnswer:
        """End the parent's break-out, as ``DELETE`` (and the timer) does.

        Sends the emptied event, then gives the own children what an end gives
        them (``ended`` notices, with ``message``, there and in the parent;
        invitations withdrawn, or with ``close_rooms`` every member removed).

        Args:
            due_op: the timer's: end only if this operation's break-out is
                still the one running (409 otherwise).
        """
        with measured("end"):
            seen = await self._parents.in_force(parent, [requester])
            acting = await self._acting.actor(requester, parent, seen.state)
            async with self._locks.hold(parent, "end"):
                found = await self._parents.reread(parent, [requester], seen)
                running = await self._store.get_running(parent)
                if due_op is not None and (running is None or running.op_id != due_op):
                    raise changed_meanwhile(parent)
                own = await self._parents.own_in_order(parent, found)
                ended = await self._events.send_emptied(
                    found.event.type, parent, acting
                )
                if running is not None:
                    await self._store.claim_end(parent, running.op_id)
            await self._widget.remove(parent, acting)
            inviter = running.acting_user if running is not None else None
            failed_rooms = await self._closer.close(
                acting,
                parent,
                found.event.event_id,
                running.op_id if running is not None else None,
                own,
                inviter,
                message,
                close_rooms,
            )
            logger.info("Ended the break-out in %s (%s)", parent, ended.event_id)
            return {
                "event_id": ended.event_id,
                "rooms": list(found.content.room_ids),
                "failed_rooms": failed_rooms,
            }
