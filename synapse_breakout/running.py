"""A break-out that runs: describe it, end it, broadcast to its child rooms.

``end`` is what ``DELETE /rooms/{parentRoomId}`` and the deadline timer do
(docs/admin_api.md).
"""

from __future__ import annotations

import logging
import time

from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.content import current_breakout
from synapse_breakout.metrics import OPERATION_SECONDS, OPERATIONS
from synapse_breakout.model import (
    BroadcastAnswer,
    DescribeAnswer,
    DescribedRoom,
    EndAnswer,
    ErrorJson,
    FailedRoom,
    error_json,
)
from synapse_breakout.parent import ParentRooms
from synapse_breakout.placement import Placement
from synapse_breakout.progress import OperationView
from synapse_breakout.store import OperationStore

logger = logging.getLogger(__name__)

#: The notice a deadline posts in every child room.
TIME_IS_UP = "Time is up"


class RunningBreakouts:
    """Describe, end and broadcast."""

    def __init__(
        self,
        api: ModuleApi,
        store: OperationStore,
        parents: ParentRooms,
        placement: Placement,
    ):
        self._api = api
        self._store = store
        self._parents = parents
        self._placement = placement
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
        # The assignment of the break-out's own rooms, as journalled.
        assigned = await self._operations.assignment(running) if running else {}
        rooms: list[DescribedRoom] = []
        for child in children:
            name, joined = await self._child_summary(child.room_id)
            rooms.append(
                {
                    "room_id": child.room_id,
                    "name": name,
                    "via": list(child.via),
                    "users": assigned.get(child.room_id, list(child.users)),
                    "joined_members": joined,
                }
            )
        return {
            "active": current.in_force,
            "event_id": current.event.event_id,
            "sender": current.event.sender,
            "started_at": current.event.origin_server_ts,
            "ends_at": running.ends_at if running and current.in_force else None,
            "rooms": rooms,
            "operation": operation,
        }

    async def _child_summary(self, room_id: str) -> tuple[str | None, int | None]:
        """A child's name and joined member count; (None, None) if unknown here."""
        try:
            state = await self._api.get_room_state(
                room_id, [("m.room.name", ""), ("m.room.member", None)]
            )
        except SynapseError:
            return None, None
        if not state:
            return None, None
        name_event = state.get(("m.room.name", ""))
        name = name_event.content.get("name") if name_event else None
        joined = sum(
            1
            for (kind, _), e in state.items()
            if kind == "m.room.member" and e.content.get("membership") == "join"
        )
        return (name if isinstance(name, str) else None), joined

    async def end(
        self,
        requester: str,
        parent: str,
        message: str | None,
        close_rooms: bool,
    ) -> EndAnswer:
        """End the parent's break-out, as ``DELETE`` (and the timer) does.

        Sends the emptied event, posts ``message`` as an ``m.notice`` in every
        child, and with ``close_rooms`` removes every member from the children.
        The rooms themselves live on.
        """
        started = time.monotonic()
        outcome = "error"
        try:
            result = await self._end(requester, parent, message, close_rooms)
            outcome = "ok"
            return result
        finally:
            OPERATIONS.labels("end", outcome).inc()
            OPERATION_SECONDS.labels("end").observe(time.monotonic() - started)

    async def _end(
        self, requester: str, parent: str, message: str | None, close_rooms: bool
    ) -> EndAnswer:
        found = await self._parents.in_force(parent, [requester])
        acting = await self._parents.actor(requester, parent, found.state)
        async with self._parents.lock(parent, "end"):
            ended = await self._parents.send_emptied(found.event.type, parent, acting)
            running = await self._store.get_running(parent)
            if running is not None:
                await self._store.claim_end(parent, running.op_id)
        failed_rooms: list[FailedRoom] = []
        for child in found.content.children:
            error = await self._close_child(acting, child.room_id, message, close_rooms)
            if error is not None:
                failed_rooms.append({"room_id": child.room_id, **error})
        logger.info("Ended the break-out in %s (%s)", parent, ended.event_id)
        return {
            "event_id": ended.event_id,
            "rooms": list(found.content.room_ids),
            "failed_rooms": failed_rooms,
        }

    async def _close_child(
        self, acting: str, room_id: str, message: str | None, close_rooms: bool
    ) -> ErrorJson | None:
        try:
            if message:
                await self._notice(acting, room_id, message)
            if close_rooms:
                await self._placement.remove_members(acting, room_id)
        except SynapseError as e:
            return error_json(e)
        return None

    async def _notice(self, sender: str, room_id: str, body: str) -> EventBase:
        return await synapse_adapter.send_event(
            self._api,
            {
                "type": "m.room.message",
                "room_id": room_id,
                "sender": sender,
                "content": {"msgtype": "m.notice", "body": body},
            },
        )

    async def broadcast(
        self, requester: str, parent: str, body: str
    ) -> BroadcastAnswer:
        """Post ``body`` as an ``m.notice`` in every child room."""
        found = await self._parents.in_force(parent, [requester])
        acting = await self._parents.actor(requester, parent, found.state)
        sent: dict[str, str] = {}
        failed: list[FailedRoom] = []
        for room_id in found.content.room_ids:
            try:
                sent[room_id] = (await self._notice(acting, room_id, body)).event_id
            except SynapseError as e:
                failed.append({"room_id": room_id, **error_json(e)})
        OPERATIONS.labels("broadcast", "ok" if not failed else "partial").inc()
        return {"event_ids": sent, "failed_rooms": failed}
