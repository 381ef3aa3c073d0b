"""Giving way (pacing.py): a split takes turns with other traffic.

The decisions are pure functions; the harness test sends a message in another
room while a split places its users and checks the message did not wait for
the split (before pacing, Synapse's harness ran the whole split inside the
message's request, as one turn of the reactor).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from http import HTTPStatus
from typing import Any, cast

from harness import ParentRoomTestCase, find_module
from prometheus_client import REGISTRY
from synapse.module_api import ModuleApi
from synapse.server import HomeServer
from synapse.util.clock import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial import unittest

from synapse_breakout.rooms.pacing import (
    GIVE_WAY,
    IDLE_TICKS,
    MAX_PAUSE_SECONDS,
    MAX_SLICE_SECONDS,
    MIN_SLICE_SECONDS,
    TICK_SECONDS,
    WIDEN_AFTER,
    Pacer,
    contended,
    keep_giving_way,
    next_slice,
    tick_busy,
)


class DecisionsTestCase(unittest.TestCase):
    def test_a_tick_is_busy_when_others_used_the_cpu(self) -> None:
        # Others ran a 16 ms message while the split held back.
        self.assertTrue(tick_busy(0.016))
        # Part of a message, on a machine short of CPU (2 ms of a 9 ms tick).
        self.assertTrue(tick_busy(0.002))
        # An idle process: a timer's own cost; a test reactor turning.
        self.assertFalse(tick_busy(0.0001))
        self.assertFalse(tick_busy(0.00002))

    def test_others_get_give_way_times_the_slice_while_busy(self) -> None:
        worked = 0.1
        self.assertTrue(keep_giving_way(0, 0.5, worked, 0.6))
        self.assertFalse(keep_giving_way(0, GIVE_WAY * worked, worked, 1.3))
        # One quiet tick (a gap between two messages) is not the end...
        self.assertTrue(keep_giving_way(1, 0.5, worked, 0.6))
        # ...but IDLE_TICKS of them are, however little others had.
        self.assertFalse(keep_giving_way(IDLE_TICKS, 0.0, worked, 0.01))
        self.assertTrue(keep_giving_way(IDLE_TICKS - 1, 0.0, worked, 0.01))
        # However busy: a split always goes on.
        self.assertFalse(keep_giving_way(0, 0.1, 10.0, MAX_PAUSE_SECONDS))

    def test_only_others_real_work_makes_a_pause_contended(self) -> None:
        # A message sent elsewhere during the pause (16 ms in the harness,
        # about 25 ms on a real server).
        self.assertTrue(contended(0.016))
        # Two messages' worth, or a pause cut short by GIVE_WAY.
        self.assertTrue(contended(0.5))
        # The tail of the split's own steps on a real Synapse: a median of
        # 2 to 9 ms over 270 to 480 pauses of a 2,000-user split with nothing
        # else going on (docs/performance.md).
        self.assertFalse(contended(0.0021))
        self.assertFalse(contended(0.0093))
        self.assertFalse(contended(0.0))

    def test_slices_double_while_idle_and_shrink_when_contended(self) -> None:
        lengths = [MIN_SLICE_SECONDS]
        for _ in range(8):
            lengths.append(next_slice(lengths[-1], contended=False))
        self.assertEqual(lengths[:3], [0.1, 0.2, 0.4])
        self.assertEqual(lengths[-1], MAX_SLICE_SECONDS)
        self.assertEqual(next_slice(MAX_SLICE_SECONDS, True), MIN_SLICE_SECONDS)


class Ticks:
    """A module API's ``sleep`` for a :class:`Pacer`: each tick moves the
    clock on and lets "others" use the CPU seconds queued for it."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.others: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.cpu += self.others.pop(0) if self.others else 0.00002


class PacerTestCase(unittest.TestCase):
    def pause(self, pacer: Pacer, ticks: Ticks, others: list[float]) -> None:
        ticks.others = list(others)
        asyncio.run(pacer._give_way(MIN_SLICE_SECONDS))

    def test_only_others_real_work_narrows_the_split_and_calm_widens_it(
        self,
    ) -> None:
        ticks = Ticks()
        pacer = Pacer(
            cast(ModuleApi, ticks), cpu=lambda: ticks.cpu, wall=lambda: ticks.wall
        )
        tail = [0.002]  # one busy tick: the split's own invites settling
        message = [0.005] * 5  # others at work for 25 ms
        self.pause(pacer, ticks, tail)
        self.assertFalse(pacer.narrow)
        self.assertEqual(pacer.slice_seconds, 2 * MIN_SLICE_SECONDS)
        self.assertEqual(pacer.pauses, 0)
        self.pause(pacer, ticks, message)
        self.assertTrue(pacer.narrow)
        self.assertEqual(pacer.slice_seconds, MIN_SLICE_SECONDS)
        self.assertEqual(pacer.pauses, 1)
        self.assertGreaterEqual(pacer.paused_seconds, 5 * TICK_SECONDS)
        # A stream of messages leaves calm pauses between busy ones: the
        # split stays narrow through WIDEN_AFTER - 1 of them...
        for _ in range(WIDEN_AFTER - 1):
            self.pause(pacer, ticks, tail)
            self.assertTrue(pacer.narrow)
            self.assertEqual(pacer.slice_seconds, MIN_SLICE_SECONDS)
        # ...and works wide again after WIDEN_AFTER.
        self.pause(pacer, ticks, tail)
        self.assertFalse(pacer.narrow)
        self.assertEqual(pacer.slice_seconds, 2 * MIN_SLICE_SECONDS)

    def test_a_split_after_a_pause_in_the_work_starts_with_a_short_slice(
        self,
    ) -> None:
        # The pacer is one per process. A split on an idle server widened its
        # slices to the longest; the next split, a minute later, may start
        # while clients are busy: before it looks at them, it works
        # MIN_SLICE_SECONDS, not MAX_SLICE_SECONDS (on a real Synapse that
        # inherited 2 s slice took a tenth of the messages sent meanwhile).
        ticks = Ticks()
        pacer = Pacer(
            cast(ModuleApi, ticks), cpu=lambda: ticks.cpu, wall=lambda: ticks.wall
        )
        slices: list[float] = []
        give_way = pacer._give_way

        async def recorded(worked: float) -> None:
            slices.append(worked)
            await give_way(worked)

        pacer._give_way = recorded  # type: ignore[method-assign]

        async def work(steps: int) -> None:
            for _ in range(steps):
                async with pacer.step():
                    ticks.wall += 0.05

        asyncio.run(work(200))  # 10 s of steps, nobody else at work
        self.assertEqual(pacer.slice_seconds, MAX_SLICE_SECONDS)
        ticks.wall += 60
        slices.clear()
        asyncio.run(work(10))  # 0.5 s of the next split
        self.assertTrue(slices, "the next split worked 0.5 s without a look")
        self.assertLessEqual(slices[0], MIN_SLICE_SECONDS + 0.05)


#: Users in the split: several slices of work in the harness.
SPLIT_USERS = 120


class GivingWayTestCase(ParentRoomTestCase):
    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.elsewhere = self.helper.create_room_as(self.mod, tok=self.mod_tok)
        self.guests = [f"@guest{i:03d}:test" for i in range(SPLIT_USERS)]
        api = hs.get_module_api()
        for guest in self.guests:
            self.get_success(
                api.update_room_membership(guest, guest, self.parent, "join")
            )

    def operation(self, op_id: str) -> Any:
        return self.call("GET", "/operations/" + urllib.parse.quote(op_id))

    def placed(self, op_id: str) -> int:
        progress: int = self.operation(op_id)["progress"]["users_placed"]
        return progress

    def test_a_message_elsewhere_goes_through_while_the_split_places_users(
        self,
    ) -> None:
        rooms = [{"name": f"Room {i}", "users": self.guests[i::6]} for i in range(6)]
        placer = find_module(self.hs).placer
        pacer = placer.pacer
        place_one = placer.place_one
        seen: list[tuple[bool, int]] = []

        async def watched(*args: Any) -> Any:
            seen.append((pacer.narrow, pacer.active))
            return await place_one(*args)

        placer.place_one = watched  # type: ignore[method-assign]
        accepted = self.start(
            {"rooms": rooms, "move": "invite", "wait": False},
            expect=HTTPStatus.ACCEPTED,
        )
        op_id = accepted["operation_id"]
        gave_way_before = REGISTRY.get_sample_value(
            "synapse_breakout_gave_way_seconds_total"
        )
        self.reactor.advance(0)
        before = self.placed(op_id)
        self.helper.send(self.elsewhere, "hello", tok=self.mod_tok)
        after_message = self.placed(op_id)
        # The message did not wait for the split: most users were still to
        # be placed when it was sent.
        self.assertLess(after_message, SPLIT_USERS, (before, after_message))
        while self.operation(op_id)["response"] is None:
            self.reactor.advance(0.1)
        answer = self.operation(op_id)["response"]
        self.assertEqual(answer["failed_users"], [])
        invited = {
            user
            for room in answer["rooms"]
            for user in self.guests
            if self.membership_in(room["room_id"], user) == "invite"
        }
        self.assertEqual(invited, set(self.guests))
        # It gave way to the message at least once, and says so to Prometheus.
        self.assertGreaterEqual(pacer.pauses, 1)
        # Once others were seen busy, one user at a time. (Several rooms at
        # once before that depends on where the first slice ended: while the
        # rooms were made, on a slow machine.)
        self.assertEqual(len(seen), SPLIT_USERS)
        self.assertEqual({active for narrow, active in seen if narrow}, {1})
        gave_way = REGISTRY.get_sample_value("synapse_breakout_gave_way_seconds_total")
        self.assertGreater(gave_way - gave_way_before, 0)
