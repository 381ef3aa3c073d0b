"""Starts in the background and their progress: ``wait: false`` and
``GET /operations/{operationId}`` (docs/admin_api.md, "Conference scale").

A start with ``wait: false`` is checked and journalled while the request waits
(start.py, ``prepare``), then runs as one of Synapse's background processes. Its progress
is read from the journal (rooms recorded, users placed), so every worker
answers alike.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from typing import cast

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.journal.assignment import AssignmentStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import Operation, OperationState, RunningBreakout
from synapse_breakout.matrix.errors import ErrorJson
from synapse_breakout.matrix.model import OperationAnswer, StartAnswer, StartRequest
from synapse_breakout.operations.outcomes import count, measured
from synapse_breakout.operations.start import Prepared, Replayed, Starter
from synapse_breakout.operations.stored_answers import check_same_parent

logger = logging.getLogger(__name__)


def _not_found(op_id: str) -> SynapseError:
    return SynapseError(
        HTTPStatus.NOT_FOUND, f"no operation {op_id} is known", Codes.NOT_FOUND
    )


class BackgroundStarts:
    """Starts answered before they are done (``wait: false``)."""

    def __init__(self, api: ModuleApi, starter: Starter):
        self._api = api
        self._starter = starter

    async def start(
        self, requester: str, parent: str, req: StartRequest, limited: bool = False
    ) -> str:
        """Check and journal a start, then run the rest in a background
        process; its operation's ID. A request that fails before (checks,
        409) raises here, as with ``wait: true``."""
        started = time.monotonic()
        try:
            prepared = await self._starter.prepare(requester, parent, req, limited)
        except Exception as e:
            count("start", started, e)
            raise
        if isinstance(prepared, Replayed):
            count("start", started, None)
            check_same_parent(prepared.op, parent)
            return prepared.op.op_id
        self._api.run_as_background_process(
            "breakout_start", self._run, prepared, started
        )
        return prepared.op.op_id

    async def _run(self, prepared: Prepared, started: float) -> None:
        try:
            with measured("start", started):
                await self._starter.run(prepared)
        except SynapseError:
            pass  # rolled back and journalled by the start itself
        except Exception as e:
            logger.warning(
                "Background start on %s failed: %s", prepared.op.parent_room_id, e
            )


class OperationView:
    """What the journal says of an operation."""

    def __init__(self, store: OperationStore, assignment: AssignmentStore):
        self._store = store
        self._assignment = assignment

    async def operation(
        self, op_id: str, caller: str, is_admin: bool, room: str | None = None
    ) -> OperationAnswer:
        """``GET /operations/{operationId}``: for its caller and server admins.

        Args:
            room: a console session's room: only operations on it are found.
        """
        op = await self._store.get(op_id)
        if (
            op is None
            or op.kind != "start"
            or (op.requester != caller and not is_admin)
            or (room is not None and op.parent_room_id != room)
        ):
            raise _not_found(op_id)
        return await self.describe(op)

    async def of_parent(self, parent: str) -> OperationAnswer | None:
        """The unfinished start on ``parent`` (GET's ``operation``), or None."""
        op_id = await self._assignment.unfinished_start(parent)
        op = await self._store.get(op_id) if op_id is not None else None
        return await self.describe(op) if op is not None else None

    async def assignment(self, running: RunningBreakout) -> dict[str, list[str]]:
        """The users of each own room of ``running``, as journalled."""
        return await self._assignment.rooms(running.op_id)

    async def describe(self, op: Operation) -> OperationAnswer:
        progress = await self._assignment.progress(
            op.op_id, op.request.get("rooms_total", 0)
        )
        stored = op.response if isinstance(op.response, dict) else {}
        state = {
            OperationState.PENDING: "pending",
            OperationState.COMMITTED: "committed",
        }.get(op.state, "rolled_back")
        response = None
        if state == "committed" and stored.get("placed"):
            response = cast(StartAnswer, stored["body"])
        error: ErrorJson | None = None
        if state == "rolled_back" and "errcode" in stored:
            error = {"errcode": stored["errcode"], "error": stored["error"]}
        return {
            "operation_id": op.op_id,
            "parent_room_id": op.parent_room_id,
            "state": state,
            "progress": progress,
            "response": response,
            "error": error,
        }
