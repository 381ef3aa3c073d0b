"""A break-out that runs: describe it, end it, broadcast to its child rooms.

``end`` is what ``DELETE /rooms/{parentRoomId}`` and the deadline timer do
(docs/admin_api.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout import notices
from synapse_breakout.announce import Announcer
from synapse_breakout.closing import Closer
from synapse_breakout.content import current_breakout
from synapse_breakout.journal import CREATION_MARKER
from synapse_breakout.metrics import OPERATION_SECONDS, OPERATIONS
from synapse_breakout.model import (
    BroadcastAnswer,
    DescribeAnswer,
    DescribedRoom,
    EndAnswer,
    error_json,
)
from synapse_breakout.parent import InForce, ParentRooms, changed_meanwhile
from synapse_breakout.placement import Placement
from synapse_breakout.progress import OperationView
from synapse_breakout.store import OperationStore

logger = logging.getLogger(__name__)

#: The notice a deadline posts in every child room.
TIME_IS_UP = "Time is up"
#: Where GET lists a room that no operation of this module created.
_LAST = ("~", 0)


class RunningBreakouts:
    """Describe, end and broadcast."""

    def __init__(
        self,
        api: ModuleApi,
        store: OperationStore,
        parents: ParentRooms,
        placement: Placement,
        announcer: Announcer,
        closer: Closer,
    ):
        self._closer = closer
        self._api = api
        self._store = store
        self._parents = parents
        self._placement = placement
        self._announcer = announcer
        self._operations = OperationView(api, store)

    async def describe(self, parent: str) -> DescribeAnswer:
        """The ``GET /rooms/{parentRoomId}`` answer: the break-out in force."""
        current = current_breakout(await self._parents.state(parent, members=()))
        running = await self._store.get_running(parent)
        operation = await self._operations.of_parent(parent)
        if current.event is None:
            return {
                "active": False,
                "event_id": None,
                "sender": None,
                "started_at": None,
                "ends_at": None,
                "rooms": [],
                "operation": operation,
            }
        children = current.content.children if current.content else ()
        own = (
            await self._parents.own_rooms(parent, current.content)
            if current.content
            else frozenset()
        )
        # The assignment of the break-out's own rooms, as journalled (moves
        # update it; the event may leave the users out).
        assigned = await self._operations.assignment(running) if running else {}
        rooms: list[tuple[tuple[str, int], DescribedRoom]] = []
        for child in children:
            managed = child.room_id in own
            # A room this break-out does not own is not read: its name and
            # size are no business of whoever listed it.
            name, joined, order = (
                await self._child_summary(child.room_id)
                if managed
                else (None, None, _LAST)
            )
            users = assigned.get(child.room_id, child.users) if managed else child.users
            room: DescribedRoom = {
                "room_id": child.room_id,
                "name": name,
                "via": list(child.via),
                "users": list(users),
                "joined_members": joined,
                "managed": managed,
            }
            rooms.append((order, room))
        started_at, ends_at = current.event.origin_server_ts, None
        if running is not None and current.in_force:
            # The start's time: a later move sends a new event.
            started_at, ends_at = running.started_ts, running.ends_at
        return {
            "active": current.in_force,
            "event_id": current.event.event_id,
            "sender": current.event.sender,
            "started_at": started_at,
            "ends_at": ends_at,
            # In the order they were started.
            "rooms": [room for _, room in sorted(rooms, key=lambda r: r[0])],
            "operation": operation,
        }

    async def _child_summary(
        self, room_id: str
    ) -> tuple[str | None, int | None, tuple[str, int]]:
        """A child's name, joined member count and place in the order rooms
        were created (the marker of the operation that made it; rooms it does
        not mark come last); (None, None, last) if unknown here."""
        last = _LAST
        try:
            state = await self._api.get_room_state(
                room_id,
                [("m.room.create", ""), ("m.room.name", ""), ("m.room.member", None)],
            )
        except SynapseError:
            return None, None, last
        if not state:
            return None, None, last
        name_event = state.get(("m.room.name", ""))
        name = name_event.content.get("name") if name_event else None
        joined = sum(
            1
            for (kind, _), e in state.items()
            if kind == "m.room.member" and e.content.get("membership") == "join"
        )
        create = state.get(("m.room.create", ""))
        marker = create.content.get(CREATION_MARKER) if create is not None else None
        order = last
        if isinstance(marker, Mapping):
            op, index = marker.get("operation"), marker.get("index")
            if isinstance(op, str) and isinstance(index, int):
                order = (op, index)
        return (name if isinstance(name, str) else None), joined, order

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
        them (closing.py: ``ended`` notices, with ``message``, there and in the
        parent; invitations withdrawn, or with ``close_rooms`` every member
        removed). The rooms themselves live on.

        Args:
            due_op: the timer's: end only if this operation's break-out is
                still the one running (409 otherwise).
        """
        started = time.monotonic()
        outcome = "error"
        try:
            result = await self._end(requester, parent, message, close_rooms, due_op)
            outcome = "ok"
            return result
        finally:
            OPERATIONS.labels("end", outcome).inc()
            OPERATION_SECONDS.labels("end").observe(time.monotonic() - started)

    async def _end(
        self,
        requester: str,
        parent: str,
        message: str | None,
        close_rooms: bool,
        due_op: str | None,
    ) -> EndAnswer:
        seen = await self._parents.in_force(parent, [requester])
        acting = await self._parents.actor(requester, parent, seen.state)
        async with self._parents.lock(parent, "end"):
            found = await self._parents.reread(parent, [requester], seen)
            running = await self._store.get_running(parent)
            if due_op is not None and (running is None or running.op_id != due_op):
                raise changed_meanwhile(parent)
            own = await self._own_in_order(parent, found)
            ended = await self._parents.send_emptied(found.event.type, parent, acting)
            if running is not None:
                await self._store.claim_end(parent, running.op_id)
        inviter = running.acting_user if running is not None else None
        failed_rooms = await self._closer.close(
            acting, parent, found.event.event_id, own, inviter, message, close_rooms
        )
        logger.info("Ended the break-out in %s (%s)", parent, ended.event_id)
        return {
            "event_id": ended.event_id,
            "rooms": list(found.content.room_ids),
            "failed_rooms": failed_rooms,
        }

    async def _own_in_order(self, parent: str, found: InForce) -> list[str]:
        """The break-out's own rooms, in the event's order."""
        own = await self._parents.own_rooms(parent, found.content)
        return [room_id for room_id in found.content.room_ids if room_id in own]

    async def broadcast(
        self, requester: str, parent: str, body: str
    ) -> BroadcastAnswer:
        """Post ``body`` as a ``broadcast`` notice in every own child room."""
        found = await self._parents.in_force(parent, [requester])
        acting = await self._parents.actor(requester, parent, found.state)
        running = await self._store.get_running(parent)
        inviter = running.acting_user if running is not None else None
        own = await self._own_in_order(parent, found)
        entered, failed = await self._placement.enter_all(acting, own, inviter)
        results = await self._announcer.to_children(
            acting, entered, notices.broadcast(found.event.event_id, body)
        )
        sent: dict[str, str] = {}
        for room_id, result in results.items():
            if isinstance(result, SynapseError):
                failed.append({"room_id": room_id, **error_json(result)})
            else:
                sent[room_id] = result
        OPERATIONS.labels("broadcast", "ok" if not failed else "partial").inc()
        return {"event_ids": sent, "failed_rooms": failed}
