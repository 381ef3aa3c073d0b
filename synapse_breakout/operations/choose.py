"""A participant chooses their room in a ``move: choose`` break-out: the host
console's "Join" (docs/console.md).

The participant is joined to the own room they chose, as themselves, so the
room's join rule and ``room_capacity`` apply as to any join (403
``ORG.MATRIX.MSC3985.ROOM_FULL`` when it is full); then they leave the other
own rooms of the break-out they were in, so one person holds one place.
"""

from __future__ import annotations

from http import HTTPStatus

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix.model import PlacementMode
from synapse_breakout.matrix.power import membership
from synapse_breakout.rooms.memberships import Memberships
from synapse_breakout.rooms.parent import ParentRooms


def _forbidden(message: str) -> SynapseError:
    return SynapseError(HTTPStatus.FORBIDDEN, message, Codes.FORBIDDEN)


class Chooser:
    """Joins participants to the room they choose."""

    def __init__(
        self,
        api: ModuleApi,
        store: OperationStore,
        parents: ParentRooms,
        memberships: Memberships,
    ):
        self._api = api
        self._store = store
        self._parents = parents
        self._memberships = memberships

    async def choose(self, user: str, parent: str, room_id: str) -> dict[str, str]:
        """Join ``user`` to ``room_id``, an own room of ``parent``'s running
        ``move: choose`` break-out, and out of its other own rooms.

        Raises:
            SynapseError: 404 without an active break-out; 403 when ``user``
                is not joined to the parent, the break-out is not one whose
                members choose, or ``room_id`` is not one of its own rooms; the
                join's own error (403 ``ROOM_FULL``, say).
        """
        found = await self._parents.in_force(parent, [user])
        if membership(user, found.state) != "join":
            raise _forbidden(f"you are not a member of {parent}")
        running = await self._store.get_running(parent)
        if running is None or running.mode is not PlacementMode.CHOOSE:
            raise _forbidden("in this break-out the host assigns the rooms")
        own = await self._parents.own_rooms(parent, found.content)
        if room_id not in own:
            raise _forbidden(f"room_id: {room_id} is not a room of this break-out")
        await self._memberships.enter(parent, user, room_id, None)
        for other in sorted(own - {room_id}):
            state = await self._api.get_room_state(other, [("m.room.member", user)])
            if membership(user, state) == "join":
                await self._memberships.remove(parent, user, user, other)
        return {"room_id": room_id}
