"""Starts in the background and their progress: ``wait: false`` and
``GET /operations/{operationId}`` (docs/admin_api.md, "Conference scale").

A start with ``wait: false`` runs as one of Synapse's background processes;
the request is answered as soon as the operation is journalled. Its progress
is read from the journal (rooms recorded, users placed), so every worker
answers alike.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import cast

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.model import ErrorJson, OperationAnswer, StartAnswer, StartRequest
from synapse_breakout.start import Starter
from synapse_breakout.store import (
    Operation,
    OperationState,
    OperationStore,
    RunningBreakout,
)

logger = logging.getLogger(__name__)

#: How often a ``wait: false`` request looks whether its start is journalled.
TOLD_TICK_SECONDS = 0.005


def _not_found(op_id: str) -> SynapseError:
    return SynapseError(
        HTTPStatus.NOT_FOUND, f"no operation {op_id} is known", Codes.NOT_FOUND
    )


class Progress:
    """Starts in the background; ``view`` reads their progress."""

    def __init__(self, api: ModuleApi, store: OperationStore, starter: Starter):
        self._api = api
        self._starter = starter
        self.view = OperationView(api, store)

    async def start_in_background(
        self, requester: str, parent: str, req: StartRequest, limited: bool = False
    ) -> str:
        """Start a break-out in a background process; its operation's ID, as
        soon as it is journalled. A request that fails before (checks, 409)
        raises here, as with ``wait: true``."""
        # What the start told: its operation ID, or why it failed first. The
        # request looks every tick rather than being woken by a Deferred: a
        # Deferred fired from the background process would hand that
        # process's logging context to the request and leave the rest of the
        # start in none (Synapse's logcontext rules; pacing.py waits so too).
        told: list[str | Exception] = []

        def tell(op_id: str) -> None:
            if not told:
                told.append(op_id)

        async def run() -> None:
            try:
                await self._starter.start(requester, parent, req, limited, tell)
            except Exception as e:
                if not told:
                    told.append(e)
                elif not isinstance(e, SynapseError):
                    # Rolled back and journalled by the start itself.
                    logger.warning("Background start on %s failed: %s", parent, e)

        self._api.run_as_background_process("breakout_start", run)
        while not told:
            await self._api.sleep(TOLD_TICK_SECONDS)
        if isinstance(told[0], Exception):
            raise told[0]
        return told[0]


class OperationView:
    """What the journal says of an operation."""

    def __init__(self, api: ModuleApi, store: OperationStore):
        self._store = store
        self._assignment = store.assignments

    async def operation(
        self, op_id: str, caller: str, is_admin: bool
    ) -> OperationAnswer:
        """``GET /operations/{operationId}``: for its caller and server admins."""
        op = await self._store.get(op_id)
        if (
            op is None
            or op.kind != "start"
            or (op.requester != caller and not is_admin)
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
