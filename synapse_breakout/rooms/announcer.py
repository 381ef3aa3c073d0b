"""Sending the notices (matrix/notices.py) when a break-out changes.

Always after the change is committed, and best effort: a notice that cannot
be sent is logged (or, where the caller asked for it, reported), never rolled
back. Notices for several rooms go out a few at a time in parallel, each a
step of the pacer in its break-out's lane (pacing.py); a start's go out in the
background, after its answer (docs/participants.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any

from synapse.module_api import (
    ModuleApi,
    make_deferred_yieldable,
    run_in_background,
)
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import defer

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.rows import Operation
from synapse_breakout.matrix import notices
from synapse_breakout.matrix.calls import CALL_STATE, parent_calls
from synapse_breakout.matrix.model import PlacementMode, StartAnswer
from synapse_breakout.matrix.notices import RoomLink
from synapse_breakout.rooms.pacing import Pacer
from synapse_breakout.rooms.pins import Pinner

logger = logging.getLogger(__name__)

#: How many notices are sent at once.
PARALLEL_SENDS = 4

#: A room and the content of the notice it gets.
Notice = tuple[str, dict[str, Any]]


async def bounded(
    items: Iterable[Any], work: Callable[[Any], Awaitable[None]], limit: int
) -> None:
    """Run ``work`` on every item, at most ``limit`` at once."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    await make_deferred_yieldable(
        defer.gatherResults(
            [run_in_background(worker) for _ in range(limit)], consumeErrors=True
        )
    )


class Announcer:
    """Posts the notices of each occasion, as the user acting for the break-out."""

    def __init__(
        self, config: BreakoutConfig, api: ModuleApi, pinner: Pinner, pacer: Pacer
    ):
        self._config = config
        self._api = api
        self._pinner = pinner
        self._pacer = pacer

    @property
    def enabled(self) -> bool:
        """Whether the notices nobody asked for are sent (``notices``)."""
        return self._config.notices

    async def send(
        self, parent: str, sender: str, batch: Sequence[Notice]
    ) -> dict[str, str | SynapseError]:
        """Post each notice of ``parent``'s break-out; per room, its event ID
        or the error."""
        results: dict[str, str | SynapseError] = {}

        async def one(notice: Notice) -> None:
            room_id, content = notice
            try:
                async with self._pacer.step(parent):
                    event = await self._api.create_and_send_event_into_room(
                        {
                            "type": "m.room.message",
                            "room_id": room_id,
                            "sender": sender,
                            "content": content,
                        },
                    )
                results[room_id] = event.event_id
            except SynapseError as e:
                results[room_id] = e
                logger.warning(
                    "Could not post a %s notice in %s: %s",
                    content.get(notices.NOTICE_KEY),
                    room_id,
                    e.msg,
                )
            except defer.CancelledError:
                raise  # the homeserver shuts down: the rest is not sent
            except Exception:
                logger.exception("Could not post a notice in %s", room_id)
                results[room_id] = SynapseError(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    "could not post the notice",
                    Codes.UNKNOWN,
                )

        await bounded(batch, one, PARALLEL_SENDS)
        return results

    async def room_link(self, room_id: str) -> RoomLink:
        """A link to a room of this server, with its name if it has one."""
        state = await self._api.get_room_state(room_id, [("m.room.name", "")])
        event = state.get(("m.room.name", ""))
        name = event.content.get("name") if event is not None else None
        return RoomLink(
            room_id, name if isinstance(name, str) else None, (self._api.server_name,)
        )

    # --- the occasions ------------------------------------------------------------

    async def after_start(
        self, op: Operation, answer: StartAnswer, replacing: str | None = None
    ) -> None:
        """``started`` in the parent, then ``welcome`` in each child, once the
        users were placed, each pinned (operations/after_commit.py runs it in
        the background, after the start's answer).

        Args:
            replacing: the start operation of the break-out this one replaced,
                whose ``started`` this one's takes the place of among the
                parent's pins.
        """
        if not self.enabled:
            return
        assert op.acting_user is not None  # every start operation has one
        sender, parent, event_id = op.acting_user, op.parent_room_id, answer["event_id"]
        rooms, ends_at = answer["rooms"], answer["ends_at"]
        links = [
            (RoomLink(r["room_id"], r["name"], tuple(r["via"])), list(r["users"]))
            for r in rooms
        ]
        now = self._api.get_current_time_msec()
        calls = parent_calls(await self._api.get_room_state(parent, CALL_STATE))
        how = notices.HowToJoin(
            until=notices.time_of_day(ends_at, now) if ends_at is not None else None,
            choose=op.request.get("move") == PlacementMode.CHOOSE,
            capacity=op.request.get("room_capacity"),
            call=calls.ready,
        )
        started = await self.send(
            parent, sender, [(parent, notices.started(event_id, links, how))]
        )
        parent_link = await self.room_link(parent)
        left = self.seconds_left(ends_at)
        welcomed = await self.send(
            parent,
            sender,
            [
                (
                    r["room_id"],
                    notices.welcome(event_id, r["name"], parent_link, left, how.call),
                )
                for r in rooms
            ],
        )

        async def pin(sent: tuple[str, str | SynapseError]) -> None:
            room_id, result = sent
            notice = result if isinstance(result, str) else None
            old = replacing if room_id == parent else None
            if notice is not None or old is not None:
                await self._pinner.pin(op.op_id, parent, sender, room_id, notice, old)

        await bounded([*started.items(), *welcomed.items()], pin, PARALLEL_SENDS)

    def seconds_left(self, ends_at: int | None) -> int | None:
        """Whole seconds from now until ``ends_at`` (rounded up)."""
        if ends_at is None:
            return None
        return max(0, -(-(ends_at - self._api.get_current_time_msec()) // 1000))

    async def to_children(
        self, parent: str, sender: str, rooms: Iterable[str], content: dict[str, Any]
    ) -> dict[str, str | SynapseError]:
        """The same notice in every room of ``rooms``, children of ``parent``."""
        return await self.send(
            parent, sender, [(room_id, content) for room_id in rooms]
        )

    async def ended(
        self,
        sender: str,
        parent: str,
        event_id: str,
        rooms: Iterable[str],
        message: str | None,
        in_parent: bool = True,
    ) -> dict[str, str | SynapseError]:
        """``ended`` in each child (always with a message, when one was given)
        and, unless not ``in_parent``, in the parent; the children's results."""
        if not self.enabled and not message:
            return {}
        parent_link = await self.room_link(parent)
        results = await self.to_children(
            parent,
            sender,
            rooms,
            notices.ended_in_child(event_id, parent_link, message),
        )
        if self.enabled and in_parent:
            await self.send(
                parent, sender, [(parent, notices.ended_in_parent(event_id))]
            )
        return results
