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
from synapse_breakout.parent import ParentRooms, changed_meanwhile
from synapse_breakout.placement import Placement
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

    async def describe(self, parent: str) -> DescribeAnswer:
        """The ``GET /rooms/{parentRoomId}`` answer: the break-out in force."""
        current = current_breakout(await self._parents.state(parent, members=()))
        running = await self._store.get_running(parent)
        if current.event is None:
            return {
                "active": False,
                "event_id": None,
                "sender": None,
                "started_at": None,
                "ends_at": None,
                "rooms": [],
            }
        children = current.content.children if current.content else ()
        own = (
            await self._parents.own_rooms(parent, current.content)
            if current.content
            else frozenset()
        )
        assigned = await self._store.assignments.of_op(running.op_id) if running else {}
        rooms: list[DescribedRoom] = []
        for child in children:
            managed = child.room_id in own
            # A room this break-out does not own is not read: its name and
            # size are no business of whoever listed it.
            name, joined = (
                await self._child_summary(child.room_id) if managed else (None, None)
            )
            users = child.users or (assigned.get(child.room_id, ()) if managed else ())
            rooms.append(
                {
                    "room_id": child.room_id,
                    "name": name,
                    "via": list(child.via),
                    "users": list(users),
                    "joined_members": joined,
                    "managed": managed,
                }
            )
        return {
            "active": current.in_force,
            "event_id": current.event.event_id,
            "sender": current.event.sender,
            "started_at": current.event.origin_server_ts,
            "ends_at": running.ends_at if running and current.in_force else None,
            "rooms": rooms,
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
        due_op: str | None = None,
    ) -> EndAnswer:
        """End the parent's break-out, as ``DELETE`` (and the timer) does.

        Sends the emptied event, posts ``message`` as an ``m.notice`` in every
        own child, and with ``close_rooms`` removes every member from the own
        children. The rooms themselves live on.

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
            own = await self._parents.own_rooms(parent, found.content)
            ended = await self._parents.send_emptied(found.event.type, parent, acting)
            if running is not None:
                await self._store.claim_end(parent, running.op_id)
        inviter = running.acting_user if running is not None else None
        failed_rooms: list[FailedRoom] = []
        for room_id in found.content.room_ids:
            if room_id not in own or not (message or close_rooms):
                continue
            error = await self._close_child(
                acting, inviter, room_id, message, close_rooms
            )
            if error is not None:
                failed_rooms.append({"room_id": room_id, **error})
        logger.info("Ended the break-out in %s (%s)", parent, ended.event_id)
        return {
            "event_id": ended.event_id,
            "rooms": list(found.content.room_ids),
            "failed_rooms": failed_rooms,
        }

    async def _close_child(
        self,
        acting: str,
        inviter: str | None,
        room_id: str,
        message: str | None,
        close_rooms: bool,
    ) -> ErrorJson | None:
        try:
            await self._placement.enter(acting, room_id, inviter)
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
        own = await self._parents.own_rooms(parent, found.content)
        running = await self._store.get_running(parent)
        inviter = running.acting_user if running is not None else None
        sent: dict[str, str] = {}
        failed: list[FailedRoom] = []
        for room_id in found.content.room_ids:
            if room_id not in own:
                continue
            try:
                await self._placement.enter(acting, room_id, inviter)
                sent[room_id] = (await self._notice(acting, room_id, body)).event_id
            except SynapseError as e:
                failed.append({"room_id": room_id, **error_json(e)})
        OPERATIONS.labels("broadcast", "ok" if not failed else "partial").inc()
        return {"event_ids": sent, "failed_rooms": failed}
