"""Starts in the background and their progress: ``wait``, and
``GET /operations/{operationId}`` (docs/admin_api.md, "Conference scale").

Every start is checked and journalled while the request waits (start.py,
``prepare``: every error it can answer before it creates anything), then runs
as one of Synapse's background processes. ``wait: false`` answers 202 with the
operation's ID at once; ``wait: true`` waits for it, woken when it is done, and
answers 202 as ``wait: false`` would if it is not done within
:data:`WAIT_SECONDS` (SPEC section 11): the operation goes on. Its progress is
read from the journal (rooms recorded, users placed), so every worker answers
alike.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from typing import Any, cast

from synapse.module_api import ModuleApi, make_deferred_yieldable
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import defer

from synapse_breakout import synapse_adapter
from synapse_breakout.journal.assignment import AssignmentStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import Operation, OperationState, RunningBreakout
from synapse_breakout.matrix.errors import ErrorJson
from synapse_breakout.matrix.model import OperationAnswer, StartAnswer, StartRequest
from synapse_breakout.operations.outcomes import count, measured
from synapse_breakout.operations.start import Prepared, Replayed, Starter
from synapse_breakout.operations.stored_answers import check_same_parent, replay

logger = logging.getLogger(__name__)

#: How long a ``wait: true`` start is waited for before it answers 202 with
#: its operation's ID (reverse proxies end requests at about 60 s).
WAIT_SECONDS = 50.0


def _not_found(op_id: str) -> SynapseError:
    return SynapseError(
        HTTPStatus.NOT_FOUND, f"no operation {op_id} is known", Codes.NOT_FOUND
    )


class Outcome:
    """What a start running in the background came to, once it is done; a
    request waiting for it is woken then (or by its timer)."""

    def __init__(self) -> None:
        self.done = False
        self.answer: StartAnswer | None = None
        self.error: BaseException | None = None
        self._waiter: defer.Deferred[None] = defer.Deferred()

    def finish(self, answer: StartAnswer | None, error: BaseException | None) -> None:
        self.done, self.answer, self.error = True, answer, error
        synapse_adapter.wake(self._waiter)

    async def wait(self, api: ModuleApi, seconds: float) -> bool:
        """Wait until the start is done, ``seconds`` at most; whether it is."""
        if not self.done:
            # Any: mypy reads Twisted's IDelayedCall interface without self.
            timer: Any = api.delayed_background_call(
                seconds * 1000,
                synapse_adapter.wake,
                self._waiter,
                desc="breakout_start_waited",
            )
            try:
                await make_deferred_yieldable(self._waiter)
            finally:
                if timer.active():
                    timer.cancel()
        return self.done


class BackgroundStarts:
    """Starts, run in the background, waited for (``wait: true``) or not."""

    def __init__(self, api: ModuleApi, starter: Starter):
        self._api = api
        self._starter = starter

    async def start(
        self, requester: str, parent: str, req: StartRequest, limited: bool = False
    ) -> StartAnswer | str:
        """Check and journal a start, then run the rest in a background
        process. A request that fails before it (checks, 409) raises here.

        Args:
            limited: the caller is a delegated moderator (no server admin):
                ``moderator_starts_per_hour`` applies.

        Returns:
            The answer (200), or the operation's ID (202): with ``wait:
            false``, or when the start took more than :data:`WAIT_SECONDS`.
        """
        started = time.monotonic()
        try:
            prepared = await self._starter.prepare(requester, parent, req, limited)
        except Exception as e:
            count("start", started, e)
            raise
        if isinstance(prepared, Replayed):
            with measured("start", started):
                if req.wait:
                    return replay(prepared.op, parent)
                check_same_parent(prepared.op, parent)
                return prepared.op.op_id
        outcome = Outcome()
        self._api.run_as_background_process(
            "breakout_start", self._run, prepared, started, outcome
        )
        if not req.wait or not await outcome.wait(self._api, WAIT_SECONDS):
            return prepared.op.op_id
        if outcome.error is not None:
            raise outcome.error
        assert outcome.answer is not None
        return outcome.answer

    async def _run(self, prepared: Prepared, started: float, outcome: Outcome) -> None:
        answer: StartAnswer | None = None
        error: BaseException | None = None
        try:
            with measured("start", started):
                answer = await self._starter.run(prepared)
        except SynapseError as e:
            error = e  # rolled back and journalled by the start itself
        except Exception as e:
            error = e
            logger.warning(
                "Background start on %s failed: %s", prepared.op.parent_room_id, e
            )
        outcome.finish(answer, error)


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
