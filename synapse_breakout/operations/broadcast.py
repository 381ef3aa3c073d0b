"""``POST /rooms/{parentRoomId}/broadcast``: the host's words as a
``broadcast`` notice in every own child room (docs/admin_api.md)."""

from __future__ import annotations

from synapse.module_api.errors import SynapseError

from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix import notices
from synapse_breakout.matrix.errors import error_json
from synapse_breakout.matrix.model import BroadcastAnswer
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.rooms.acting import ActingUsers
from synapse_breakout.rooms.announcer import Announcer
from synapse_breakout.rooms.memberships import Memberships
from synapse_breakout.rooms.parent import ParentRooms


class Broadcaster:
    """Posts a broadcast in every own child room."""

    def __init__(
        self,
        store: OperationStore,
        parents: ParentRooms,
        acting: ActingUsers,
        memberships: Memberships,
        announcer: Announcer,
    ):
        self._store = store
        self._parents = parents
        self._acting = acting
        self._memberships = memberships
        self._announcer = announcer

    async def broadcast(
        self, requester: str, parent: str, body: str
    ) -> BroadcastAnswer:
        """Post ``body`` as a ``broadcast`` notice in every own child room."""
        found = await self._parents.in_force(parent, [requester])
        acting = await self._acting.actor(requester, parent, found.state)
        running = await self._store.get_running(parent)
        inviter = running.acting_user if running is not None else None
        own = await self._parents.own_in_order(parent, found)
        entered, failed = await self._memberships.enter_all(
            parent, acting, own, inviter
        )
        results = await self._announcer.to_children(
            parent, acting, entered, notices.broadcast(found.event.event_id, body)
        )
        sent: dict[str, str] = {}
        for room_id, result in results.items():
            if isinstance(result, SynapseError):
                failed.append({"room_id": room_id, **error_json(result)})
            else:
                sent[room_id] = result
        OPERATIONS.labels("broadcast", "ok" if not failed else "partial").inc()
        return {"event_ids": sent, "failed_rooms": failed}
