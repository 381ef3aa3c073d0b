"""Giving way: a long split takes turns with everything else the process does.

Splitting a conference is minutes of work in the process that also answers
clients. Synapse runs its Python on one thread, so work in flight takes turns:
eight placement workers would leave a message sent elsewhere one turn in nine
(docs/performance.md measured 0.03 of its pace during a 10,000-member split).

So room creation, placement and an end's withdrawals and removals go through
a :class:`Pacer`. They work in slices; at the end of a slice the pacer lets what is in flight finish, starts
nothing new, and watches the process in ticks of :data:`TICK_SECONDS`:

- once the process (every thread of it) used under :data:`BUSY_CPU_SECONDS` of
  CPU in :data:`IDLE_TICKS` ticks in a row, nothing else wants it: the work goes
  on, and the next slice is twice as long (up to :data:`MAX_SLICE_SECONDS`);
- otherwise the pacer keeps out of the way while others are busy, until they
  had :data:`GIVE_WAY` times the CPU the slice took (the split takes at most
  1/(1 + ``GIVE_WAY``) of a busy process), or :data:`MAX_PAUSE_SECONDS` passed;
- if others used :data:`CONTENDED_CPU_SECONDS` or more in the pause, the next
  slices are back to :data:`MIN_SLICE_SECONDS` and run one step at a time
  (:attr:`Pacer.narrow`), so that others wait behind one step, not eight,
  until :data:`WIDEN_AFTER` pauses in a row had less. Less is only the tail
  of the split's own work.

An idle server pays three ticks per slice (15% at the shortest slice, under 1%
at the longest, which it reaches after five); a busy one keeps nearly all of
itself while a split goes on.
The decisions are the pure functions :func:`tick_busy`, :func:`keep_giving_way`,
:func:`contended`, :func:`stays_narrow` and :func:`next_slice`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from synapse.module_api import ModuleApi

from synapse_breakout.metrics import GAVE_WAY

logger = logging.getLogger(__name__)

#: The first slice of work, and the one after others were seen busy.
MIN_SLICE_SECONDS = 0.1
#: The longest slice: how long others may share the process with a split
#: before it next looks whether they want it.
MAX_SLICE_SECONDS = 2.0
#: How often the pacer looks at the process while it gives way.
TICK_SECONDS = 0.005
#: A tick in which the process used this much CPU (or more) is busy: an idle
#: Synapse uses a few hundredths of it; a message sent takes ten times as much.
#: CPU, not a share of the tick's time: on a machine short of CPU a busy
#: process gets less than the wall clock's time.
BUSY_CPU_SECONDS = 0.001
#: Ticks in a row without others at work that end a pause (a message being
#: sent can leave a tick or two nearly idle while it waits on the database).
IDLE_TICKS = 3
#: Others get this many times the time of a slice while they are busy.
GIVE_WAY = 12
#: The longest one pause: a split always goes on, however busy the server.
MAX_PAUSE_SECONDS = 5.0
#: CPU others used in one pause that makes it contended (short slices, one
#: step at a time): about half a message. Less is the tail of the split's own
#: steps (Synapse's notifier, federation sender and caches after each event),
#: which on a real server followed nearly every slice: counted as contention,
#: it held an idle server's split to one step at a time (docs/performance.md).
CONTENDED_CPU_SECONDS = 0.010
#: Pauses in a row without contention before the split works wide again (a
#: stream of messages leaves some pauses with little of it in them).
WIDEN_AFTER = 3


def tick_busy(cpu_seconds: float) -> bool:
    """Whether a tick in which the process used ``cpu_seconds`` of CPU while
    the pacer held everything back found others at work."""
    return cpu_seconds >= BUSY_CPU_SECONDS


def keep_giving_way(
    idle_ticks: int, given_cpu: float, worked: float, paused: float
) -> bool:
    """Whether to hold back another tick.

    Args:
        idle_ticks: ticks in a row that found nobody else at work
            (:func:`tick_busy`).
        given_cpu: CPU seconds the process used for others in this pause.
        worked: seconds the last slice took.
        paused: seconds this pause has lasted.
    """
    return (
        idle_ticks < IDLE_TICKS
        and given_cpu < GIVE_WAY * worked
        and paused < MAX_PAUSE_SECONDS
    )


def contended(given_cpu: float) -> bool:
    """Whether a pause in which others used ``given_cpu`` CPU seconds found
    them really at work, not only finishing what the split's steps began."""
    return given_cpu >= CONTENDED_CPU_SECONDS


def stays_narrow(calm_pauses: int) -> bool:
    """Whether the split still works one step at a time, ``calm_pauses``
    pauses after the last contended one (:func:`contended`)."""
    return calm_pauses < WIDEN_AFTER


def next_slice(previous: float, contended: bool) -> float:
    """The next slice's length: short after others were seen busy, doubling
    while the process has nothing else to do."""
    if contended:
        return MIN_SLICE_SECONDS
    return min(MAX_SLICE_SECONDS, previous * 2)


class Pacer:
    """Lets long work go on in slices, giving way to the rest of the process.

    One per process: every split's room creation and placement share it, so
    two splits at once give way together. Steps that arrive while it gives way
    wait (looking every tick: Synapse's clock is the module API's only safe
    way to wake a waiting coroutine).
    """

    def __init__(
        self,
        api: ModuleApi,
        cpu: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.perf_counter,
    ):
        self._api = api
        self._cpu = cpu
        self._wall = wall
        self.slice_seconds = MIN_SLICE_SECONDS
        self._slice_began: float | None = None
        self._last_step_ended = 0.0
        self._active = 0
        self._holding = False
        #: One step at a time: a recent pause found others busy.
        self.narrow = False
        self._calm_pauses = WIDEN_AFTER
        #: Pauses that found others busy, and the seconds spent in them.
        self.pauses = 0
        self.paused_seconds = 0.0

    @property
    def active(self) -> int:
        """Steps running now."""
        return self._active

    @contextlib.asynccontextmanager
    async def step(self) -> AsyncIterator[None]:
        """One unit of the work (a room made, a user placed): waits while the
        pacer gives way, then runs. Steps must not nest."""
        await self._turn()
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            self._last_step_ended = self._wall()

    async def _turn(self) -> None:
        while self._holding or (self.narrow and self._active):
            await self._api.sleep(TICK_SECONDS)
        now = self._wall()
        if self._slice_began is None or (
            self._active == 0 and now - self._last_step_ended > MIN_SLICE_SECONDS
        ):
            # The first step, or the first after the work stopped a while:
            # what the process does now is unknown, so the slice starts short
            # (not at the width the last split reached on an idle server).
            self._slice_began = now
            self.slice_seconds = MIN_SLICE_SECONDS
            return
        if now - self._slice_began < self.slice_seconds:
            return
        # The slice is over: this step waits for those in flight, then
        # watches the process for the others.
        self._holding = True
        try:
            while self._active:
                await self._api.sleep(TICK_SECONDS)
            await self._give_way(self._wall() - self._slice_began)
        finally:
            self._slice_began = self._wall()
            self._holding = False

    async def _give_way(self, worked: float) -> None:
        began = self._wall()
        given = 0.0
        idle = 0
        busy = 0
        while True:
            cpu = self._cpu()
            await self._api.sleep(TICK_SECONDS)
            used, now = self._cpu() - cpu, self._wall()
            if tick_busy(used):
                busy += 1
                given += used
                idle = 0
            else:
                idle += 1
            if not keep_giving_way(idle, given, worked, now - began):
                break
        busy_for_others = contended(given)
        if busy_for_others:
            self.pauses += 1
            self.paused_seconds += self._wall() - began
            GAVE_WAY.inc(self._wall() - began)
        logger.debug(
            "Paused %.3fs after a slice of %.3fs: %d busy ticks, others %.1f ms%s",
            now - began,
            worked,
            busy,
            1000 * given,
            " (gave way)" if busy_for_others else "",
        )
        self._calm_pauses = 0 if busy_for_others else self._calm_pauses + 1
        self.narrow = stays_narrow(self._calm_pauses)
        self.slice_seconds = next_slice(self.slice_seconds, self.narrow)
