"""Rolling a start back: the rooms it made, and the one room-deletion routine.

Only rooms an operation can prove it created are ever deleted: journalled as
it made them, or marked with its ID in their create event (a crash can fall
between Synapse storing a room and the journal recording it). The parent's
state is never touched. docs/operations.md, "Crash recovery".
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import Operation, OperationState
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.matrix.child_room import creation_marker

logger = logging.getLogger(__name__)


class RollBack:
    """Finds an operation's rooms and deletes them."""

    def __init__(self, api: ModuleApi, store: OperationStore, tables: SynapseTables):
        self._api = api
        self._store = store
        self._tables = tables

    async def operation_rooms(self, op: Operation) -> set[str]:
        """Every room ``op`` can prove it created: journalled, or marked with
        its ID in its create event. Nothing else is ever deleted."""
        rooms = set(await self._store.rooms_of(op.op_id))
        if op.acting_user:
            for room_id in await self._tables.rooms_created_by(
                op.acting_user, op.created_ts
            ):
                if room_id in rooms:
                    continue
                create = (
                    await self._api.get_room_state(room_id, [("m.room.create", "")])
                ).get(("m.room.create", ""))
                marker = creation_marker(create.content) if create else None
                if marker is not None and marker[0] == op.op_id:
                    rooms.add(room_id)
        return rooms

    async def delete_rooms(self, op: Operation, crashed: bool) -> int:
        """Delete (shut down and purge) every room of ``op`` still here.

        Args:
            crashed: ``op``'s process is dead: other processes' room locks on
                its rooms are dropped first.

        Returns:
            How many of its rooms were still here: 0 when none is left.
        """
        rooms = await self.operation_rooms(op)
        remaining = await self._tables.existing_rooms(rooms)
        if crashed:
            # Only a dead process's locks: a live worker's are left alone.
            dropped = await self._tables.release_room_locks(
                remaining, synapse_adapter.instance_id(self._api)
            )
            if dropped:
                logger.info("Dropped %d locks a dead process held on them", dropped)
        for room_id in sorted(remaining):
            try:
                await self._api.delete_room(room_id)
            except SynapseError as e:
                # Typically: its purge is already running.
                logger.debug("Deleting %s again: %s", room_id, e.msg)
            except Exception:
                logger.exception("Could not delete room %s of %s", room_id, op.op_id)
        return len(remaining)

    async def roll_back(
        self, op: Operation, error: dict[str, Any], crashed: bool = False
    ) -> bool:
        """Delete every room ``op`` made; the parent's state is untouched.

        The journal says ``rolling_back`` (which releases the parent's lock and
        keeps ``error`` for a repeated txn_id) until no room of ``op`` is left;
        Synapse purges rooms in the background, so recovery finishes the job.

        Returns:
            Whether no room of ``op`` is left.
        """
        await self._store.finish(op.op_id, OperationState.ROLLING_BACK, error)
        remaining = await self.delete_rooms(op, crashed)
        if not remaining:
            await self._store.finish(op.op_id, OperationState.ROLLED_BACK, error)
        logger.info(
            "Rolling back break-out %s in %s: %d rooms to delete (%s)",
            op.op_id,
            op.parent_room_id,
            remaining,
            error.get("error"),
        )
        return not remaining
