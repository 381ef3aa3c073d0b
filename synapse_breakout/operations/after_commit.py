"""After a start's commit: what follows once its break-out event is in the
parent, for a start that ran here, one recovery rolled forward, and one whose
placing process died.

- the commit itself: the journal says ``committed`` and records the running
  break-out (:meth:`AfterCommit.commit`);
- the old break-out a ``replace`` ended gets what an end gives its own rooms
  (rooms/closing.py), in the background;
- the users are placed (place_users.py), then the ``started`` and ``welcome``
  notices go out (rooms/announcer.py) and the console is added to the parent
  as a room widget (``console.widget``, rooms/console_widget.py).

Nothing here is undone: users who cannot be placed are ``failed_users``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus

from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout.journal.assignment import AssignmentStore, UserState
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.ownership import Ownership
from synapse_breakout.journal.rows import Operation, OperationState, RunningBreakout
from synapse_breakout.matrix.content import BreakoutContent
from synapse_breakout.matrix.model import CreatedRoom, PlacementMode, StartAnswer
from synapse_breakout.operations.place_users import EndedError, Placer, TakenOverError
from synapse_breakout.operations.stored_answers import ROLLED_BACK_MEANWHILE
from synapse_breakout.rooms.announcer import Announcer
from synapse_breakout.rooms.breakout_event import BreakoutEvents
from synapse_breakout.rooms.closing import Closer, Replaced
from synapse_breakout.rooms.console_widget import ConsoleWidget

logger = logging.getLogger(__name__)


class AfterCommit:
    """Commits a start, and places and announces it."""

    def __init__(
        self,
        api: ModuleApi,
        store: OperationStore,
        assignment: AssignmentStore,
        ownership: Ownership,
        events: BreakoutEvents,
        placer: Placer,
        announcer: Announcer,
        closer: Closer,
        widget: ConsoleWidget,
    ):
        self._widget = widget
        self._api = api
        self._store = store
        self._assignment = assignment
        self._ownership = ownership
        self._events = events
        self._placer = placer
        self._announcer = announcer
        self._closer = closer

    async def committed(
        self,
        op: Operation,
        event: EventBase,
        rooms: list[CreatedRoom],
        old: EventBase | None,
        replaced: Replaced | None,
    ) -> StartAnswer:
        """``op``'s event is in the parent: commit, then close what it
        replaced (``old``: the break-out event in force before), place and
        announce. Nothing is undone, unless recovery took the operation for
        dead and rolled it back meanwhile."""
        assert op.acting_user is not None  # every start operation has one
        acting, parent = op.acting_user, op.parent_room_id
        answer = await self.commit(op, event.event_id, event.origin_server_ts, rooms)
        if answer is None:
            await self._events.withdraw(event, acting)
            raise ROLLED_BACK_MEANWHILE
        if old is not None and old.type != event.type:
            # The old break-out of the other type would otherwise stay in force.
            try:
                await self._events.send_emptied(old.type, parent, acting)
            except SynapseError as e:
                logger.warning(
                    "Could not end the old %s in %s: %s", old.type, parent, e.msg
                )
        if replaced is not None:
            # In the background: the answer and the placing do not wait.
            self._api.run_as_background_process(
                "breakout_close_replaced",
                self._closer.close_replaced,
                acting,
                parent,
                replaced,
            )
        return await self._placed_and_announced(
            op, answer, replacing=replaced.op_id if replaced is not None else None
        )

    async def commit(
        self, op: Operation, event_id: str, sent_ts: int, rooms: list[CreatedRoom]
    ) -> StartAnswer | None:
        """Record that ``op``'s break-out event was sent; returns the answer,
        or None if ``op`` is no longer pending (recovery rolled it back)."""
        duration = op.request.get("duration_seconds")
        ends_at = sent_ts + duration * 1000 if duration else None
        answer: StartAnswer = {
            "room_id": op.parent_room_id,
            "event_id": event_id,
            "rooms": [room.to_json() for room in rooms],
            "ends_at": ends_at,
            "failed_users": [],
        }
        assert op.acting_user is not None  # every start operation has one
        committed = await self._store.finish(
            op.op_id,
            OperationState.COMMITTED,
            {"status": HTTPStatus.OK, "body": answer},
            RunningBreakout(
                parent_room_id=op.parent_room_id,
                op_id=op.op_id,
                event_id=event_id,
                acting_user=op.acting_user,
                mode=op.request.get("move", PlacementMode.INVITE),
                started_ts=sent_ts,
                ends_at=ends_at,
            ),
        )
        if not committed:
            logger.warning("Break-out %s was rolled back before its commit", op.op_id)
            return None
        logger.info(
            "Started break-out %s in %s: %d rooms",
            op.op_id,
            op.parent_room_id,
            len(rooms),
        )
        return answer

    async def _placed_and_announced(
        self,
        op: Operation,
        answer: StartAnswer,
        resumed: bool = False,
        replacing: str | None = None,
    ) -> StartAnswer:
        """Place the users, then tell everyone (in the background).

        Args:
            resumed: a placement a dead process began (place_users.py).
            replacing: the start operation of the break-out this one replaced
                (its pinned ``started`` gives way to this one's).
        """
        try:
            answer = await self._placer.place_start(op, answer, resumed)
        except TakenOverError as e:
            return e.answer  # the process that took it over announces it
        except EndedError as e:
            return e.answer  # ended meanwhile: its end was announced instead
        # In the background: the answer does not wait for the notices.
        self._api.run_as_background_process(
            "breakout_start_notices", self._announce, op, answer, replacing
        )
        return answer

    async def _announce(
        self, op: Operation, answer: StartAnswer, replacing: str | None
    ) -> None:
        """``started`` right after the break-out event, ``welcome`` in each
        child (each pinned), then the console widget in the parent."""
        assert op.acting_user is not None  # every start operation has one
        await self._api.sleep(0)  # let the start answer first
        await self._announcer.after_start(op, answer, replacing)
        # The notices may take long on a busy server (rooms/pacing.py): a
        # break-out ended meanwhile gets no widget, or has it taken away
        # again if its end came between the look and the add (a replacement
        # keeps it: it wants the same widget).
        parent = op.parent_room_id
        running = await self._store.get_running(parent)
        if running is None or running.op_id != op.op_id:
            return
        added = await self._widget.add(parent, op.acting_user)
        if added and await self._store.get_running(parent) is None:
            await self._widget.remove(parent, op.acting_user)

    async def resume_placement(self, op: Operation, answer: StartAnswer) -> None:
        """Go on placing the users of ``op``, committed by a process that died
        while placing them; then announce it."""
        with self._ownership.hold():
            await self._placed_and_announced(op, answer, resumed=True)

    async def roll_forward(
        self,
        op: Operation,
        event: EventBase,
        content: BreakoutContent,
        own: Iterable[str],
    ) -> None:
        """The break-out event was sent before the crash: the operation stands,
        with its deadline, and its users are placed now (its ``own`` rooms
        only)."""
        own = set(own)
        assigned = await self._journalled_assignment(
            op, [child.users for child in content.children]
        )
        rooms = [
            CreatedRoom(
                child.room_id,
                None,
                tuple(assigned.get(child.room_id, child.users)),
                child.via,
            )
            for child in content.children
            if child.room_id in own
        ]
        answer = await self.commit(op, event.event_id, event.origin_server_ts, rooms)
        if answer is None:
            return
        # This process places them now, and renews the operation's lease
        # while it does: recovery elsewhere (or here, a minute later) must not
        # take a placement in progress for the dead process's and run it twice.
        ours = await self._ownership.claim(op)
        if ours is not None:
            # In the background: recovery's other work does not wait for it.
            self._api.run_as_background_process(
                "breakout_roll_forward_placement", self.resume_placement, ours, answer
            )

    async def _journalled_assignment(
        self, op: Operation, listed: list[tuple[str, ...]]
    ) -> dict[str, list[str]]:
        """The users of each room of ``op``, as journalled; an operation
        journalled without its plan gets ``listed`` (the event's) as its plan."""
        rooms = await self._assignment.rooms(op.op_id)
        if not rooms and not await self._assignment.planned(op.op_id):
            suggest = op.request.get("move") == PlacementMode.SUGGEST
            await self._assignment.insert_plan(
                op.op_id, listed, UserState.LISTED if suggest else UserState.PLANNED
            )
        return rooms
