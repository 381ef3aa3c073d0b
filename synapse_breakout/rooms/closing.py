"""What a break-out's own rooms get when it ends: by ``DELETE``, by its timer,
or by a start that replaces it (``replace: true``).

The one home of that treatment (docs/admin_api.md): the acting user enters
each own room, an ``ended`` notice goes out (docs/participants.md), the
notices its start pinned are unpinned (in the parent too), and the
invitations nobody accepted are withdrawn, or with ``close_rooms`` every member
is removed. Rooms added to the event by hand are never touched (parent.py's
``own_rooms``). Best effort: each room that fails is reported, the rest go on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
from synapse.module_api.errors import SynapseError

from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix.content import CurrentBreakout
from synapse_breakout.matrix.errors import ErrorJson, error_json
from synapse_breakout.matrix.model import FailedRoom
from synapse_breakout.rooms.announcer import Announcer
from synapse_breakout.rooms.memberships import Memberships
from synapse_breakout.rooms.parent import ParentRooms
from synapse_breakout.rooms.pins import Pinner

logger = logging.getLogger(__name__)


@attrs.frozen
class Replaced:
    """The break-out a start replaces: its event, start operation and own
    rooms, and who can let the acting user into them."""

    event_id: str
    op_id: str
    own: list[str]
    inviter: str | None


class Closer:
    """Ends a break-out in its own rooms."""

    def __init__(
        self,
        store: OperationStore,
        parents: ParentRooms,
        memberships: Memberships,
        announcer: Announcer,
        pinner: Pinner,
    ):
        self._store = store
        self._parents = parents
        self._memberships = memberships
        self._announcer = announcer
        self._pinner = pinner

    async def close(
        self,
        acting: str,
        parent: str,
        event_id: str,
        op_id: str | None,
        own: Sequence[str],
        inviter: str | None,
        message: str | None = None,
        close_rooms: bool = False,
        tell_parent: bool = True,
    ) -> list[FailedRoom]:
        """End the break-out ``event_id`` of ``parent`` in its ``own`` rooms.

        Args:
            op_id: the start operation that made it (None: made by hand),
                whose pins are removed.
            inviter: who can invite ``acting`` into a room it is not in (the
                break-out's acting user).
            tell_parent: also post ``ended`` in the parent (not when a new
                break-out replaces this one: the parent hears of that one).

        Returns:
            The rooms where something failed, with the error.
        """
        entered, failed_rooms = await self._memberships.enter_all(
            parent, acting, own, inviter
        )
        sent = await self._announcer.ended(
            acting, parent, event_id, entered, message, in_parent=tell_parent
        )
        failed_rooms += [
            {"room_id": room_id, **error_json(result)}
            for room_id, result in sent.items()
            if isinstance(result, SynapseError)
        ]
        if op_id is not None:
            # A replacing start's `started` takes the place of this one's in
            # the parent's pins (rooms/pins.py).
            pinned_in = [parent, *entered] if tell_parent else entered
            await self._pinner.unpin(op_id, parent, acting, pinned_in)
        for room_id in entered:
            error = await self._empty(parent, acting, room_id, close_rooms)
            if error is not None:
                failed_rooms.append({"room_id": room_id, **error})
        return failed_rooms

    async def _empty(
        self, parent: str, acting: str, room_id: str, close_rooms: bool
    ) -> ErrorJson | None:
        """Withdraw the pending invitations, or with ``close_rooms`` remove
        every member."""
        try:
            if close_rooms:
                await self._memberships.remove_members(parent, acting, room_id)
            else:
                await self._memberships.withdraw_invitations(parent, acting, room_id)
        except SynapseError as e:
            return error_json(e)
        return None

    async def replaced(self, parent: str, current: CurrentBreakout) -> Replaced | None:
        """What a replacing start must close of the break-out in force: its
        own rooms (read before the commit makes the new one the parent's
        running break-out), in the event's order."""
        if current.event is None or current.content is None:
            return None
        own = await self._parents.own_rooms(parent, current.content)
        if not own:
            return None
        running = await self._store.get_running(parent)
        if running is None:
            return None
        return Replaced(
            current.event.event_id,
            running.op_id,
            [r for r in current.content.room_ids if r in own],
            running.acting_user,
        )

    async def close_replaced(
        self, acting: str, parent: str, replaced: Replaced
    ) -> None:
        """The replaced break-out's own rooms get what an end gives them,
        without closing them and without a notice in the
        parent: its notice is the new break-out's."""
        failed = await self.close(
            acting,
            parent,
            replaced.event_id,
            replaced.op_id,
            replaced.own,
            replaced.inviter,
            tell_parent=False,
        )
        for room in failed:
            logger.warning(
                "Could not end the replaced break-out %s in %s: %s",
                replaced.event_id,
                room["room_id"],
                room["error"],
            )
