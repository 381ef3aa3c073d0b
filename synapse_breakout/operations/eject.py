"""Ejection (``eject_on_parent_leave``): a user who left or was banned from a
parent is removed from the own children of its break-out (the conferencing
draft's rule: who leaves the group room leaves the conference). Run by the
background loop every few seconds (background/loops.py)."""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.journal.rows import RunningBreakout
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.matrix.content import BREAKOUT_STATE, current_breakout
from synapse_breakout.matrix.power import IN_ROOM, membership
from synapse_breakout.rooms.members import member_events
from synapse_breakout.rooms.memberships import Memberships
from synapse_breakout.rooms.parent import ParentRooms

logger = logging.getLogger(__name__)


class Ejector:
    """Removes parent leavers from the children."""

    def __init__(
        self,
        api: ModuleApi,
        tables: SynapseTables,
        parents: ParentRooms,
        memberships: Memberships,
    ):
        self._api = api
        self._tables = tables
        self._parents = parents
        self._memberships = memberships

    async def eject_leavers(self, running: RunningBreakout) -> int:
        """Remove from the children of ``running`` every user who left or was
        banned from its parent; returns how many were removed."""
        parent = running.parent_room_id
        current = current_breakout(
            await self._api.get_room_state(parent, BREAKOUT_STATE)
        )
        if not current.in_force or current.content is None:
            return 0
        here = await self._tables.rooms_with_create_event(
            await self._parents.own_rooms(parent, current.content)
        )
        # The children's members, then only their memberships in the parent:
        # never the whole membership of a large parent.
        in_children: dict[str, list[str]] = {}
        members = await self._tables.members_of_rooms(here, IN_ROOM)
        for room_id in sorted(members):
            for user in members[room_id]:
                in_children.setdefault(user, []).append(room_id)
        if not in_children:
            return 0
        # Those still joined stay: only the others' events are read.
        joined = await synapse_adapter.joined_users(self._api, parent)
        in_parent = await member_events(
            self._api, parent, [user for user in in_children if user not in joined]
        )
        removed = 0
        for user, rooms in sorted(in_children.items()):
            if membership(user, in_parent) not in ("leave", "ban"):
                continue
            for room_id in rooms:
                try:
                    await self._memberships.remove(
                        parent, running.acting_user, user, room_id
                    )
                    removed += 1
                    logger.info(
                        "Removed %s from %s: they left %s", user, room_id, parent
                    )
                except SynapseError as e:
                    logger.warning(
                        "Could not remove %s from %s: %s", user, room_id, e.msg
                    )
        return removed
