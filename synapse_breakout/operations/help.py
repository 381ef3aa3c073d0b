"""``POST /rooms/{parentRoomId}/help``: a participant asks the host for help.

Any user joined to an own child room of the active break-out may ask, once a
minute per room (journal/help.py: claimed compare-and-set, so every worker
shares the limit). The ``help`` notice goes into the parent and mentions the
break-out's acting user (docs/admin_api.md).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.journal.help import HelpStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix import notices
from synapse_breakout.matrix.model import HelpAnswer
from synapse_breakout.matrix.power import membership
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.rooms.announcer import Announcer
from synapse_breakout.rooms.parent import ParentRooms

logger = logging.getLogger(__name__)

#: One help request a room per this long.
HELP_INTERVAL_MS = 60_000


class HelpDesk:
    """Help requests from child rooms to the parent."""

    def __init__(
        self,
        api: ModuleApi,
        store: OperationStore,
        requests: HelpStore,
        parents: ParentRooms,
        announcer: Announcer,
    ):
        self._api = api
        self._store = store
        self._requests = requests
        self._parents = parents
        self._announcer = announcer

    async def ask(
        self, requester: str, parent: str, room_id: str, message: str | None
    ) -> HelpAnswer:
        """Post a ``help`` notice in the parent for ``requester`` in ``room_id``."""
        forbidden = SynapseError(
            HTTPStatus.FORBIDDEN,
            f"room_id: you are not joined to {room_id}, or it is not a room of "
            f"the active break-out in {parent}",
            Codes.FORBIDDEN,
        )
        try:
            found = await self._parents.in_force(parent, [requester])
        except SynapseError:
            raise forbidden from None
        running = await self._store.get_running(parent)
        if running is None:
            raise forbidden
        own = await self._parents.own_rooms(parent, found.content)
        if room_id not in own:
            raise forbidden
        member = await self._api.get_room_state(room_id, [("m.room.member", requester)])
        if membership(requester, member) != "join":
            raise forbidden
        wait = await self._requests.claim(room_id, HELP_INTERVAL_MS)
        if wait is not None:
            raise SynapseError(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"help was asked from {room_id} less than a minute ago",
                Codes.LIMIT_EXCEEDED,
                additional_fields={"retry_after_ms": wait},
            )
        content = notices.help_request(
            found.event.event_id,
            running.acting_user,
            requester,
            await self._announcer.room_link(room_id),
            message,
        )
        # From the participant, in their words; from the acting user when
        # they may not post in the parent.
        senders = [requester, running.acting_user]
        if membership(requester, found.state) != "join":
            senders = senders[1:]
        for sender in senders:
            sent = await self._announcer.send(parent, sender, [(parent, content)])
            result = sent[parent]
            if isinstance(result, str):
                OPERATIONS.labels("help", "ok").inc()
                return {"event_id": result}
        OPERATIONS.labels("help", "error").inc()
        return {"event_id": None}
