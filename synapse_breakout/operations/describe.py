"""``GET /rooms/{parentRoomId}``: the break-out in force, as the admin API and
the console show it (docs/admin_api.md)."""

from __future__ import annotations

import attrs
from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.assignment import AssignmentStore
from synapse_breakout.journal.capacity import CapacityStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import RunningBreakout
from synapse_breakout.matrix.capacity import counted_members
from synapse_breakout.matrix.child_room import creation_marker
from synapse_breakout.matrix.content import CurrentBreakout, current_breakout
from synapse_breakout.matrix.model import DescribeAnswer, DescribedRoom
from synapse_breakout.operations.progress import OperationView
from synapse_breakout.rooms.parent import ParentRooms

#: Where GET lists a room that no operation of this module created.
_LAST = ("~", 0)


@attrs.frozen
class _Summary:
    """What GET says of an own room, read from its state."""

    name: str | None = None
    joined: int | None = None
    counted: int | None = None
    order: tuple[str, int] = _LAST


class Describer:
    """Describes a parent's break-out."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        assignment: AssignmentStore,
        capacity: CapacityStore,
        parents: ParentRooms,
        operations: OperationView,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._assignment = assignment
        self._capacity = capacity
        self._parents = parents
        self._operations = operations

    async def describe(self, parent: str) -> DescribeAnswer:
        """The ``GET /rooms/{parentRoomId}`` answer: the break-out in force."""
        state = await self._parents.state(parent, members=())
        current = current_breakout(state)
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
        rooms = await self._rooms(parent, state, current, running)
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
            "rooms": rooms,
            "operation": operation,
        }

    async def _rooms(
        self,
        parent: str,
        state: StateMap[EventBase],
        current: CurrentBreakout,
        running: RunningBreakout | None,
    ) -> list[DescribedRoom]:
        """The break-out's rooms, in the order they were started."""
        children = current.content.children if current.content else ()
        own = (
            await self._parents.own_rooms(parent, current.content)
            if current.content
            else frozenset()
        )
        # The assignment of the break-out's own rooms, as journalled (moves
        # update it; the event may leave the users out).
        assigned = await self._assignment.rooms(running.op_id) if running else {}
        capacities = await self._capacity.of_operation(running.op_id) if running else {}
        rooms: list[tuple[tuple[str, int], DescribedRoom]] = []
        for child in children:
            managed = child.room_id in own
            capacity = capacities.get(child.room_id) if managed else None
            # A room this break-out does not own is not read: its name and
            # size are no business of whoever listed it.
            summary = (
                await self._child_summary(child.room_id, state)
                if managed
                else _Summary()
            )
            users = assigned.get(child.room_id, child.users) if managed else child.users
            room: DescribedRoom = {
                "room_id": child.room_id,
                "name": summary.name,
                "via": list(child.via),
                "users": list(users),
                "joined_members": summary.joined,
                "managed": managed,
                "capacity": capacity,
                "counted_members": summary.counted,
            }
            rooms.append((summary.order, room))
        return [room for _, room in sorted(rooms, key=lambda r: r[0])]

    async def _child_summary(
        self, room_id: str, parent: StateMap[EventBase]
    ) -> _Summary:
        """A child's name, joined member count (all, and those a capacity
        counts: not the ``parent``'s moderators) and place in the order rooms
        were created (the marker of the operation that made it; rooms it does
        not mark come last); nothing if unknown here."""
        try:
            state = await self._api.get_room_state(
                room_id,
                [("m.room.create", ""), ("m.room.name", ""), ("m.room.member", None)],
            )
        except SynapseError:
            return _Summary()
        if not state:
            return _Summary()
        name_event = state.get(("m.room.name", ""))
        name = name_event.content.get("name") if name_event else None
        joined = sum(
            1
            for (kind, _), e in state.items()
            if kind == "m.room.member" and e.content.get("membership") == "join"
        )
        counted = len(counted_members(state, parent, self._config.power_level))
        create = state.get(("m.room.create", ""))
        marker = creation_marker(create.content) if create is not None else None
        order = _LAST
        if marker is not None and marker[1] is not None:
            order = (marker[0], marker[1])
        return _Summary(name if isinstance(name, str) else None, joined, counted, order)
