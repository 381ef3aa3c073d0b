"""Giving way (pacing.py): a split takes turns with other traffic.

The decisions are pure functions; the harness test sends a message in another
room while a split places its users and checks the message did not wait for
the split (before pacing, Synapse's harness ran the whole split inside the
message's request, as one turn of the reactor).
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any, cast

import attrs
from harness import ParentRoomTestCase, find_module
from prometheus_client import REGISTRY
from synapse.module_api import ModuleApi
from synapse.server import HomeServer
from synapse.util.clock import Clock
from twisted.internet import defer
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial import unittest

from synapse_breakout.rooms.pacing import (
    GIVE_WAY,
    MAX_PAUSE_SECONDS,
    MAX_SLICE_SECONDS,
    MIN_SLICE_SECONDS,
    TICK_SECONDS,
    WIDE_STEPS,
    WIDEN_AFTER,
    Pacer,
    Pause,
    Turns,
    contended,
    keep_giving_way,
    leaves_room,
    next_slice,
    starts_afresh,
    steps_at_once,
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

    def test_others_get_what_they_use_and_the_work_what_they_leave(self) -> None:
        def ticks(*cpu: float) -> Pause:
            """A pause after a slice of 0.1 s, its ticks each using ``cpu`` s."""
            pause = Pause(worked=0.1)
            for used in cpu:
                pause = pause.ticked(TICK_SECONDS, TICK_SECONDS, used)
            return pause

        # Others busy all the time (a client sending message after message):
        # they get GIVE_WAY times the slice's CPU...
        self.assertTrue(keep_giving_way(ticks(*[0.005] * 20)))
        busy = ticks(*[0.005] * (round(GIVE_WAY * 0.1 / 0.005) + 1))
        self.assertFalse(keep_giving_way(busy))
        self.assertFalse(leaves_room(busy))
        # ...but once they left the process idle IDLE_SHARE of the time, the
        # work goes on beside them (messages now and then, half the time).
        some = ticks(*[0.005, 0.0025] * 6)
        self.assertTrue(leaves_room(some))
        self.assertFalse(keep_giving_way(some))
        self.assertFalse(leaves_room(ticks(*[0.005, 0.005, 0.005, 0.0025] * 3)))
        # It looks LOOK_SECONDS before it judges.
        self.assertTrue(keep_giving_way(ticks(0.005, 0.0025, 0.005, 0.0025)))
        # One quiet tick (a gap between two messages) is not the end...
        self.assertTrue(keep_giving_way(ticks(0.005, 0.0)))
        # ...but QUIET_SECONDS of them are, however little others had.
        self.assertFalse(keep_giving_way(ticks(0.005, 0.0, 0.0, 0.0)))
        # A test that moves the harness's clock a second has let it be quiet.
        moved = Pause(worked=0.1).ticked(1.0, 0.0001, 0.0001)
        self.assertFalse(keep_giving_way(moved))
        # However busy: the work always goes on.
        held = ticks(*[0.005] * (round(MAX_PAUSE_SECONDS / TICK_SECONDS) + 1))
        self.assertFalse(keep_giving_way(attrs.evolve(held, worked=10.0)))

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

    def test_slices_double_unless_others_keep_the_process_busy(self) -> None:
        lengths = [MIN_SLICE_SECONDS]
        for _ in range(8):
            lengths.append(next_slice(lengths[-1], busy_all_along=False))
        self.assertEqual(lengths[:3], [0.1, 0.2, 0.4])
        self.assertEqual(lengths[-1], MAX_SLICE_SECONDS)
        self.assertEqual(next_slice(MAX_SLICE_SECONDS, True), MIN_SLICE_SECONDS)

    def test_all_break_outs_together_go_eight_at_once_or_one(self) -> None:
        self.assertEqual(steps_at_once(narrow=False), WIDE_STEPS)
        self.assertEqual(steps_at_once(narrow=True), 1)

    def test_work_after_a_while_without_any_starts_a_short_slice(self) -> None:
        self.assertTrue(starts_afresh(None))  # the first step ever
        self.assertTrue(starts_afresh(60.0))
        # A step right after the last one ended (a start's next room).
        self.assertFalse(starts_afresh(0.002))


class Ticks:
    """A module API for a :class:`Pacer`, on a fake clock: each ``sleep``
    (a tick) moves the clock on at once and lets "others" use the CPU seconds
    queued for it; a background process runs at once."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.others: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.wall += seconds
        self.cpu += self.others.pop(0) if self.others else 0.00002

    def get_current_time_msec(self) -> int:
        return round(self.wall * 1000)

    def run_as_background_process(self, desc: str, f: Any, *args: Any) -> Any:
        return defer.ensureDeferred(f(*args))


def paced(ticks: Ticks) -> Pacer:
    return Pacer(cast(ModuleApi, ticks), cpu=lambda: ticks.cpu, wall=lambda: ticks.wall)


def done(d: defer.Deferred[Any]) -> Any:
    """The result of a Deferred that must have fired."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "still waiting"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class TurnsTestCase(unittest.TestCase):
    def test_lanes_take_turns_the_least_recently_let_in_first(self) -> None:
        turns = Turns()
        turns.served("A")  # A's first step went in at once
        waiters = [
            (name, turns.join(name[0])) for name in ("A2", "A3", "B1", "C1", "C2", "B2")
        ]
        order = []
        while len(turns):
            woken = turns.next()
            order += [name for name, waiter in waiters if waiter is woken]
        # B and C had no turn yet: they go before A's second step; then
        # round-robin, each lane in its own order.
        self.assertEqual(order, ["B1", "C1", "A2", "B2", "C2", "A3"])

    def test_a_waiter_that_leaves_loses_its_place_only(self) -> None:
        turns = Turns()
        first, second = turns.join("A"), turns.join("A")
        self.assertTrue(turns.leave(first))
        self.assertIs(turns.next(), second)
        self.assertFalse(turns.leave(second))  # let in already
        self.assertEqual(len(turns), 0)


class PacerTestCase(unittest.TestCase):
    def pause(self, pacer: Pacer, ticks: Ticks, others: list[float]) -> None:
        ticks.others = list(others)
        slice_ = Pause(worked=MIN_SLICE_SECONDS)
        done(defer.ensureDeferred(pacer._give_way(slice_)))

    def test_only_others_real_work_narrows_the_split_and_calm_widens_it(
        self,
    ) -> None:
        ticks = Ticks()
        pacer = paced(ticks)
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
        # split stays narrow through WIDEN_AFTER - 1 of them (its slices
        # growing again)...
        for i in range(WIDEN_AFTER - 1):
            self.pause(pacer, ticks, tail)
            self.assertTrue(pacer.narrow)
            self.assertEqual(pacer.slice_seconds, 2 ** (i + 1) * MIN_SLICE_SECONDS)
        # ...and works wide again after WIDEN_AFTER.
        self.pause(pacer, ticks, tail)
        self.assertFalse(pacer.narrow)

    def test_a_split_after_a_pause_in_the_work_starts_with_a_short_slice(
        self,
    ) -> None:
        # The pacer is one per process. A split on an idle server widened its
        # slices to the longest; the next split, a minute later, may start
        # while clients are busy: before it looks at them, it works
        # MIN_SLICE_SECONDS, not MAX_SLICE_SECONDS (on a real Synapse that
        # inherited 2 s slice took a tenth of the messages sent meanwhile).
        ticks = Ticks()
        pacer = paced(ticks)
        slices: list[float] = []
        give_way = pacer._give_way

        async def recorded(pause: Pause) -> None:
            slices.append(pause.worked)
            await give_way(pause)

        pacer._give_way = recorded  # type: ignore[method-assign]

        async def work(steps: int) -> None:
            for _ in range(steps):
                async with pacer.step("!parent"):
                    ticks.wall += 0.05

        done(defer.ensureDeferred(work(200)))  # 10 s of steps, nobody else at work
        self.assertEqual(pacer.slice_seconds, MAX_SLICE_SECONDS)
        ticks.wall += 60
        slices.clear()
        done(defer.ensureDeferred(work(10)))  # 0.5 s of the next split
        self.assertTrue(slices, "the next split worked 0.5 s without a look")
        self.assertLessEqual(slices[0], MIN_SLICE_SECONDS + 0.05)

    def test_cpu_of_the_database_threads_is_not_others_at_work(self) -> None:
        # Synapse's database connections run in threads of their own; what a
        # client's request waits for is the reactor's thread, the one the
        # pacer runs on. Counting the others made an ordinary chat look like
        # a process busy all the time (docs/performance.md).
        pacer = Pacer(cast(ModuleApi, Ticks()))

        def burn(seconds: float) -> None:
            until = time.thread_time() + seconds
            while time.thread_time() < until:
                pass

        before = pacer._cpu()
        database = threading.Thread(target=burn, args=(0.05,))
        database.start()
        database.join()
        self.assertFalse(tick_busy(pacer._cpu() - before))
        before = pacer._cpu()
        burn(0.05)  # the same on the reactor's thread
        self.assertTrue(tick_busy(pacer._cpu() - before))

    def test_waiting_steps_are_woken_in_turns_and_cost_no_tick(self) -> None:
        # Three break-outs at once, one step at a time (others were busy):
        # each step is let in when the one before ends, round-robin between
        # the break-outs, and nobody ticks while they wait.
        ticks = Ticks()
        pacer = paced(ticks)
        pacer.narrow = True
        gates: list[defer.Deferred[None]] = []
        order: list[str] = []

        async def one(name: str) -> None:
            async with pacer.step(name[0]):
                order.append(name)
                gate: defer.Deferred[None] = defer.Deferred()
                gates.append(gate)
                await gate

        names = ["A1", "A2", "A3", "B1", "C1", "C2"]
        finished = [defer.ensureDeferred(one(name)) for name in names]
        self.assertEqual((order, pacer.active, pacer.waiting), (["A1"], 1, 5))
        while gates:
            before = ticks.wall
            gates.pop().callback(None)
            self.assertEqual(ticks.wall, before, "a waiter polled the clock")
        self.assertEqual(order, ["A1", "B1", "C1", "A2", "C2", "A3"])
        self.assertEqual((pacer.active, pacer.waiting), (0, 0))
        for d in finished:
            done(d)

    def test_at_the_end_of_a_slice_the_pacer_lets_the_steps_in_flight_finish(
        self,
    ) -> None:
        # Eight steps at once (an idle server); the slice ends while they
        # run: nothing new starts, the pause waits for the last of them and
        # looks at the process only then, and lets the waiters in after it.
        ticks = Ticks()
        pacer = paced(ticks)
        gates: list[defer.Deferred[None]] = []
        seen: list[tuple[int, int]] = []
        give_way = pacer._give_way

        async def looked(pause: Pause) -> None:
            seen.append((pacer.active, pacer.waiting))
            await give_way(pause)

        pacer._give_way = looked  # type: ignore[method-assign]

        async def one(breakout: str) -> None:
            async with pacer.step(breakout):
                gate: defer.Deferred[None] = defer.Deferred()
                gates.append(gate)
                await gate

        first = [defer.ensureDeferred(one(f"!{i}")) for i in range(WIDE_STEPS)]
        self.assertEqual(pacer.active, WIDE_STEPS)
        ticks.wall += MIN_SLICE_SECONDS
        late = [defer.ensureDeferred(one("!late")) for _ in range(3)]
        self.assertEqual((pacer.active, pacer.waiting), (WIDE_STEPS, 3))
        for gate in gates[:-1]:
            gate.callback(None)
        self.assertEqual((pacer.active, pacer.waiting, seen), (1, 3, []))
        gates[-1].callback(None)  # the last step in flight ends
        self.assertEqual(seen, [(0, 3)])
        self.assertEqual((pacer.active, pacer.waiting), (3, 0))
        for gate in gates[WIDE_STEPS:]:
            gate.callback(None)
        for d in first + late:
            done(d)


#: Users in the split: several slices of work in the harness.
SPLIT_USERS = 120


class GivingWayTestCase(ParentRoomTestCase):
    REAL_PACER = True  # it measures giving way to real work

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

    def recorded_steps(self) -> list[tuple[str, bool, int]]:
        """(break-out, narrow, steps running) of each step as it runs."""
        pacer = find_module(self.hs).pacer
        step = pacer.step
        seen: list[tuple[str, bool, int]] = []

        @contextlib.asynccontextmanager
        async def recorded(breakout: str) -> AsyncIterator[None]:
            async with step(breakout):
                seen.append((breakout, pacer.narrow, pacer.active))
                yield

        pacer.step = recorded  # type: ignore[method-assign]
        self.addCleanup(setattr, pacer, "step", step)
        return seen

    def split(self, parent: str, users: list[str]) -> str:
        rooms = [{"name": f"Room {i}", "users": users[i::6]} for i in range(6)]
        accepted = self.call(
            "POST",
            self.room_path(parent),
            {"acting_user": self.host, "rooms": rooms, "wait": False},
            expect=HTTPStatus.ACCEPTED,
        )
        op_id: str = accepted["operation_id"]
        return op_id

    def answered(self, op_id: str) -> Any:
        while self.operation(op_id)["response"] is None:
            self.reactor.advance(0.1)
        answer = self.operation(op_id)["response"]
        self.assertEqual(answer["failed_users"], [])
        return answer

    def test_a_message_elsewhere_goes_through_while_the_split_places_users(
        self,
    ) -> None:
        pacer = find_module(self.hs).pacer
        seen = self.recorded_steps()
        op_id = self.split(self.parent, self.guests)
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
        answer = self.answered(op_id)
        invited = {
            user
            for room in answer["rooms"]
            for user in self.guests
            if self.membership_in(room["room_id"], user) == "invite"
        }
        self.assertEqual(invited, set(self.guests))
        # It gave way to the message at least once, and says so to Prometheus.
        self.assertGreaterEqual(pacer.pauses, 1)
        # Once others were seen busy, one step at a time. (Several at once
        # before that depends on where the first slice ended: while the rooms
        # were made, on a slow machine.)
        self.assertEqual({active for _, narrow, active in seen if narrow}, {1})
        gave_way = REGISTRY.get_sample_value("synapse_breakout_gave_way_seconds_total")
        self.assertGreater(gave_way - gave_way_before, 0)

    def test_two_splits_at_once_take_turns(self) -> None:
        # The second split does not wait for the first one's users: both go
        # on together, each in its turn (and so does a message elsewhere).
        other = self.make_parent()
        api = self.hs.get_module_api()
        for guest in self.guests:
            self.get_success(api.update_room_membership(guest, guest, other, "join"))
        seen = self.recorded_steps()
        first = self.split(self.parent, self.guests)
        second = self.split(other, self.guests)
        self.helper.send(self.elsewhere, "hello", tok=self.mod_tok)
        for op_id in (first, second):
            answer = self.answered(op_id)
            self.assertEqual(
                sorted(user for room in answer["rooms"] for user in room["users"]),
                self.guests,
            )
        order = [breakout for breakout, _, _ in seen]
        # The second split's first room was made before the first split had
        # placed half its users, and from then on they took turns: each had
        # a third or more of the next hundred steps (with 8 placing workers
        # against one room at a time, first come first served gave the first
        # split nearly all of them).
        began = order.index(other)
        self.assertLess(order[:began].count(self.parent), 6 + SPLIT_USERS // 2)
        together = order[began : began + 100]
        self.assertGreaterEqual(together.count(self.parent), 33)
        self.assertGreaterEqual(together.count(other), 33)
