"""``POST /rooms/{parentRoomId}/help``: a participant asks the host for help.

Who may ask: a user joined to an own child room of the active break-out
**and** to the parent, once a minute per user and room (journal/help.py:
claimed compare-and-set, so every worker shares the limit). The ``help``
message in the parent is an ``m.text`` that mentions the break-out's acting
user and the caller of the start where that was someone else, so their
clients alert them (docs/participants.md). The participant sends it where
they may post in the parent; where they may not (muted), the acting user
sends a fixed text naming them and the room: the module never lends its
voice to a muted user's words. The request is recorded with who asked: the
host's console lists help requests from that record, not from messages that
look like one (docs/security.md).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.journal.help import HelpStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import RunningBreakout
from synapse_breakout.matrix import notices
from synapse_breakout.matrix.model import HelpAnswer
from synapse_breakout.matrix.power import may_post, membership
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.rooms.announcer import Announcer
from synapse_breakout.rooms.parent import InForce, ParentRooms

logger = logging.getLogger(__name__)

#: One help request per user and room this often.
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
        """Post a ``help`` message in the parent for ``requester`` in ``room_id``."""
        found, running = await self._check_asker(requester, parent, room_id)
        wait = await self._requests.claim(parent, room_id, requester, HELP_INTERVAL_MS)
        if wait is not None:
            raise SynapseError(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"you asked for help from {room_id} less than a minute ago",
                Codes.LIMIT_EXCEEDED,
                additional_fields={"retry_after_ms": wait},
            )
        hosts = await self._hosts(running)
        link = await self._announcer.room_link(room_id)
        event_id: str | None = None
        muted = not may_post(requester, found.state)
        if not muted:
            event_id = await self._send(
                requester,
                parent,
                notices.help_request(
                    found.event.event_id, hosts, requester, link, message
                ),
            )
            muted = event_id is None  # refused: asked for them, without their words
        if event_id is None:
            event_id = await self._send(
                running.acting_user,
                parent,
                notices.help_request(
                    found.event.event_id, hosts, requester, link, None, muted=True
                ),
            )
        if event_id is None:
            OPERATIONS.labels("help", "error").inc()
            return {"event_id": None}
        await self._requests.sent(room_id, requester, event_id, muted)
        OPERATIONS.labels("help", "ok").inc()
        return {"event_id": event_id}

    async def _check_asker(
        self, requester: str, parent: str, room_id: str
    ) -> tuple[InForce, RunningBreakout]:
        """403 unless ``requester`` is joined to the parent and to ``room_id``,
        an own room of its active break-out."""
        forbidden = SynapseError(
            HTTPStatus.FORBIDDEN,
            f"room_id: you must be joined to {parent} and to {room_id}, a room "
            f"of its active break-out",
            Codes.FORBIDDEN,
        )
        try:
            found = await self._parents.in_force(parent, [requester])
        except SynapseError:
            raise forbidden from None
        running = await self._store.get_running(parent)
        if running is None or membership(requester, found.state) != "join":
            raise forbidden
        if room_id not in await self._parents.own_rooms(parent, found.content):
            raise forbidden
        member = await self._api.get_room_state(room_id, [("m.room.member", requester)])
        if membership(requester, member) != "join":
            raise forbidden
        return found, running

    async def _hosts(self, running: RunningBreakout) -> list[str]:
        """Whom a help request alerts: the break-out's acting user, and the
        caller of its start where that was someone else."""
        hosts = [running.acting_user]
        start = await self._store.get(running.op_id)
        if start is not None and start.requester not in hosts:
            hosts.append(start.requester)
        return hosts

    async def _send(
        self, sender: str, parent: str, content: dict[str, object]
    ) -> str | None:
        result = (await self._announcer.send(parent, sender, [(parent, content)]))[
            parent
        ]
        return result if isinstance(result, str) else None
