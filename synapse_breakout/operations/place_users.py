"""Placing a committed start's users: concurrently, journalled, resumable.

After the commit, the users still ``planned`` in the journal (journal/assignment.py)
are invited or joined, ``PLACEMENT_CONCURRENCY`` child rooms at a time (Synapse
changes memberships one at a time per room, so users of one room go one after
the other); each user is a step of the pacer (rooms/pacing.py), which shares the
process with other traffic and other break-outs. Results are written ``BATCH``
at a time. After a crash recovery (recovery.py) goes on with the users still planned,
checking first whether each already got in, so nobody is invited twice.
Failures are collected in ``failed_users``; nothing is rolled back
(docs/operations.md, docs/performance.md for the bound).

A pass that stops on an error of its own (a database error writing results,
say: one user's failure is only a ``failed_users`` entry) is tried again,
checking each user's membership first as after a crash, ``ATTEMPTS`` times in
all; then the users still planned fail with ``PLACEMENT_STOPPED``, so the
operation always gets its answer while its process lives.

Before each user the pass asks the journal whether to place them now
(``AssignmentStore.decide``): a move while the pass runs has placed them
itself, elsewhere or nowhere; an end or a replacement of the break-out stops
the placement: the users not yet placed fail with ``ENDED_BEFORE_PLACED`` and
the start is not announced (its ``ended`` notice has been sent).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from twisted.internet import defer
from twisted.python.failure import Failure

from synapse_breakout import synapse_adapter
from synapse_breakout.journal.assignment import AssignmentStore, Outcome, PlaceDecision
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import Operation, OperationState
from synapse_breakout.matrix.errors import ErrorJson
from synapse_breakout.matrix.model import JoinRule, PlacementMode, StartAnswer
from synapse_breakout.matrix.power import membership
from synapse_breakout.rooms.members import member_events
from synapse_breakout.rooms.memberships import Memberships

logger = logging.getLogger(__name__)

#: Child rooms placed into at once (measured: docs/performance.md).
PLACEMENT_CONCURRENCY = 8
#: Placement results written per transaction.
BATCH = 100
#: Passes over a start's planned users before giving up on the rest.
ATTEMPTS = 3
#: Seconds before the second pass; doubled before each next one.
RETRY_SECONDS = 5.0
#: What the users still planned get when every pass stopped on an error.
PLACEMENT_STOPPED: ErrorJson = {
    "errcode": "M_UNKNOWN",
    "error": "placing users stopped on a server error (see its log); "
    "this user may not be in the room",
}

#: What the users not yet placed get when the break-out ended (or was
#: replaced) while its users were being placed.
ENDED_BEFORE_PLACED: ErrorJson = {
    "errcode": "M_UNKNOWN",
    "error": "the break-out ended before this user was placed",
}


class TakenOverError(Exception):
    """This process was taken for dead while placing a start's users, and
    another one goes on with them (journal/ownership.py): this one stops, with the
    answer as far as it got, and neither stores nor announces it."""

    def __init__(self, answer: StartAnswer):
        super().__init__(answer["event_id"])
        self.answer = answer


class EndedError(Exception):
    """The break-out ended (or was replaced) while its users were being
    placed: the answer is stored, but the start is not announced."""

    def __init__(self, answer: StartAnswer):
        super().__init__(answer["event_id"])
        self.answer = answer


class Placer:
    """Places the users of committed starts."""

    def __init__(
        self,
        api: ModuleApi,
        store: OperationStore,
        assignment: AssignmentStore,
        memberships: Memberships,
        concurrency: int = PLACEMENT_CONCURRENCY,
    ):
        self.api = self._api = api
        self._store = store
        self.memberships = memberships
        self.assignment = assignment
        self.concurrency = concurrency

    async def place_one(
        self,
        parent: str,
        acting: str,
        user: str,
        room_id: str,
        mode: PlacementMode,
        join_rule: str,
        joined_to_parent: bool,
        invited: bool,
    ) -> ErrorJson | None:
        """One user of a pass placed (rooms/memberships.py); the error if not."""
        return await self.memberships.place(
            parent, acting, user, room_id, mode, join_rule, joined_to_parent, invited
        )

    async def place_start(
        self, op: Operation, answer: StartAnswer, resumed: bool = False
    ) -> StartAnswer:
        """Place ``op``'s planned users; store and return the final answer.

        Args:
            resumed: a previous process may have placed some users before
                it died: check each one's membership before acting.
        """
        mode = PlacementMode(op.request.get("move", PlacementMode.INVITE))
        if mode is not PlacementMode.SUGGEST and op.acting_user is not None:
            # Rooms journalled without their index: the answer's order.
            rooms = await self.assignment.room_ids(op.op_id) or {
                i: room["room_id"] for i, room in enumerate(answer["rooms"])
            }
            planned = await self.assignment.planned(op.op_id)
            by_room: dict[int, list[str]] = {}
            for assigned in planned:
                by_room.setdefault(assigned.room_index, []).append(assigned.user_id)
            joined: frozenset[str] = frozenset()
            if mode is PlacementMode.JOIN:
                joined = await self._joined_to_parent(
                    op.parent_room_id, [a.user_id for a in planned]
                )
            ours = await self._passes(
                op,
                op.acting_user,
                mode,
                resumed,
                joined,
                [
                    (i, rooms[i], users)
                    for i, users in sorted(by_room.items())
                    if i in rooms
                ],
            )
            if not ours:
                answer["failed_users"] = await self.assignment.failed(op.op_id)
                raise TakenOverError(answer)
        answer["failed_users"] = await self.assignment.failed(op.op_id)
        # "placed": the answer is final (GET /operations shows it from now on).
        await self._store.set_response(
            op.op_id, {"status": 200, "body": answer, "placed": True}
        )
        if not await self.still_running(op):
            raise EndedError(answer)
        return answer

    async def still_running(self, op: Operation) -> bool:
        """Whether ``op``'s break-out is still the parent's running one (an
        end or a replacement removes or replaces it)."""
        running = await self._store.get_running(op.parent_room_id)
        return running is not None and running.op_id == op.op_id

    async def _passes(
        self,
        op: Operation,
        acting: str,
        mode: PlacementMode,
        resumed: bool,
        joined: frozenset[str],
        rooms: list[tuple[int, str, list[str]]],
    ) -> bool:
        """Place ``rooms``' users, in up to ``ATTEMPTS`` passes; the users
        still planned after the last one fail (``PLACEMENT_STOPPED``).
        False if another process took the operation over meanwhile."""
        delay = RETRY_SECONDS
        owner = await self._owner(op.op_id)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await _Run(self, op, acting, mode, resumed, joined).all(rooms)
                return True
            except defer.CancelledError:
                raise  # the homeserver shuts down: recovery goes on after it
            except Exception:
                logger.exception(
                    "Placing the users of break-out %s stopped (pass %d of %d)",
                    op.op_id,
                    attempt,
                    ATTEMPTS,
                )
            if attempt < ATTEMPTS:
                await self._api.sleep(delay)
                delay *= 2
            if await self._owner(op.op_id) != owner:
                # Taken for dead meanwhile: the process that took it goes on.
                logger.warning("Break-out %s is placed by another process", op.op_id)
                return False
            if attempt < ATTEMPTS:
                # Some of the last pass may be in without their result written.
                resumed = True
                planned = {a.user_id for a in await self.assignment.planned(op.op_id)}
                rooms = [
                    (i, room, [u for u in users if u in planned])
                    for i, room, users in rooms
                ]
        given_up = await self.assignment.fail_planned(op.op_id, PLACEMENT_STOPPED)
        logger.error("Gave up placing %d users of break-out %s", given_up, op.op_id)
        return True

    async def _owner(self, op_id: str) -> str | None:
        """The token of the process placing ``op_id`` (ownership.py), None
        once it is no longer being placed."""
        op = await self._store.get(op_id)
        if op is None or op.state != OperationState.COMMITTED:
            return None
        return op.process_token

    async def _joined_to_parent(
        self, parent: str, users: Sequence[str]
    ) -> frozenset[str]:
        """Those of ``users`` joined to ``parent`` now: ``join`` joins only
        them, anyone else is invited."""
        return frozenset(users) & await synapse_adapter.joined_users(self._api, parent)


def placed_before(current: str | None, target: str) -> bool:
    """Whether a user whose membership in a new child room is ``current``
    was placed there before a crash: any membership counts (accepted,
    declined, banned since), except an invite where the target is a join,
    which the join completes."""
    return current is not None and (current != "invite" or target == "invite")


class _Run:
    """One placement pass: a queue of rooms, a few workers, a result buffer."""

    def __init__(
        self,
        placer: Placer,
        op: Operation,
        acting: str,
        mode: PlacementMode,
        resumed: bool,
        joined: frozenset[str],
    ):
        self._placer = placer
        self._joined = joined
        self._op = op
        self._acting = acting
        self._mode = mode
        self._rule = op.request.get("join_rule", JoinRule.RESTRICTED)
        self._resumed = resumed
        self._queue: list[tuple[int, str, list[str]]] = []
        self._buffer: list[Outcome] = []
        self._ended = False

    async def all(self, rooms: Sequence[tuple[int, str, list[str]]]) -> None:
        """Place the users of each (index, room ID, users)."""
        self._queue = [room for room in reversed(rooms) if room[2]]
        workers = [
            run_in_background(self._worker)
            for _ in range(min(self._placer.concurrency, len(self._queue)))
        ]
        # Every worker ends (one that fails stops the others taking rooms)
        # before the results are written and the first failure is raised.
        results = await make_deferred_yieldable(
            defer.DeferredList(workers, consumeErrors=True)
        )
        await self._flush()
        for ok, result in results:
            if not ok:
                cast(Failure, result).raiseException()

    async def _worker(self) -> None:
        try:
            while self._queue:
                await self._room(*self._queue.pop())
        except Exception:
            self._queue.clear()
            raise

    async def _room(self, index: int, room_id: str, users: list[str]) -> None:
        already: dict[str, Any] = {}
        if self._resumed:
            state = await member_events(self._placer.api, room_id, users)
            already = {user: membership(user, state) for user in users}
        for user in users:
            target = (
                "join"
                if self._mode is PlacementMode.JOIN
                and self._placer.api.is_mine(user)
                and user in self._joined
                else "invite"
            )
            decision = (
                PlaceDecision.ENDED
                if self._ended
                else await self._placer.assignment.decide(
                    self._op.op_id, self._op.parent_room_id, index, user
                )
            )
            if decision is PlaceDecision.MOVED:
                continue  # the move placed them elsewhere, or sent them back
            if decision is PlaceDecision.ENDED:
                # Ended or replaced meanwhile: nobody more is placed.
                self._ended = True
                error = ENDED_BEFORE_PLACED
            elif placed_before(already.get(user), target):
                error = None  # placed before the crash
            else:
                error = await self._placer.place_one(
                    self._op.parent_room_id,
                    self._acting,
                    user,
                    room_id,
                    self._mode,
                    self._rule,
                    user in self._joined,
                    already.get(user) == "invite",
                )
            self._buffer.append(Outcome(index, user, error))
            if len(self._buffer) >= BATCH:
                await self._flush()

    async def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        await self._placer.assignment.record(self._op.op_id, batch)
