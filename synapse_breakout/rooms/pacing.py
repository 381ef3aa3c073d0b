"""Giving way: break-out work takes turns with everything else the process
does, and the break-outs take turns with each other.

Splitting a conference is minutes of work in the process that also answers
clients, and a conference splits many rooms at the same moment. Synapse runs
its Python on one thread, so work in flight takes turns: eight placement
workers left a message sent elsewhere one turn in nine (docs/performance.md).

So every Matrix write of break-out work is a *step* of the process's one
:class:`Pacer`: each room a start creates, each break-out event, each user
placed, moved or removed, each moderator let into a room, each notice.

**One fair queue.** At most :func:`steps_at_once` steps run at a time in the
whole process. A step that may not run yet waits in its break-out's lane (its
parent room) and is woken when it is let in: waiting costs nothing. Lanes are
let in round-robin, each in its own order (:class:`Turns`), so thirty
break-outs started at once go on together, each at its share.

**Slices and pauses.** The work goes in slices. At the end of one the pacer
lets what is in flight finish, lets nothing new in, and watches the reactor
in ticks of :data:`TICK_SECONDS` (one timer, its own). None of its steps runs
then and its waiters sleep, so what the reactor does is others' work (and the
tail of the last steps, see :data:`CONTENDED_CPU_SECONDS`):

- once the reactor used under :data:`BUSY_CPU_SECONDS` of
  CPU a tick for :data:`QUIET_SECONDS` in a row, nothing else wants it: the
  work goes on, and the next slice is twice as long (up to
  :data:`MAX_SLICE_SECONDS`);
- once the pause has looked :data:`LOOK_SECONDS` and the reactor stood idle
  :data:`IDLE_SHARE` of that time or more, others are busy but leave room
  (say, messages arriving now and then): the work goes on, one step at a
  time, and the next slice is twice as long;
- otherwise others keep the reactor busy all the time (say, a client sending
  message after message): the pacer keeps out of the way until they had
  :data:`GIVE_WAY` times the CPU the slice took (the work takes at least
  1/(1 + ``GIVE_WAY``) of such a process), or :data:`MAX_PAUSE_SECONDS`
  passed, and the next slice is :data:`MIN_SLICE_SECONDS`;
- if others used :data:`CONTENDED_CPU_SECONDS` or more in the pause, the
  next slices run one step at a time (:attr:`Pacer.narrow`), so that others
  wait behind one step, not eight, until :data:`WIDEN_AFTER` pauses in a row
  had less.

**The reactor, not the process.** What the ticks measure is the CPU of the
reactor's thread (:func:`time.thread_time`, read there): Synapse's Python
(every request, its background work, this pacer) runs on it, and it is what a
client's request waits for. The process's other threads are its database
connections and the jobs Synapse hands to threads (password hashes,
thumbnails, encoding large answers); their CPU does not hold the reactor.
Counted, it kept the pacer holding back beside an ordinary chat: thirty starts
beside fifteen messages a second took 530 s instead of 141 s, and the chat's
95th percentile was higher for it, not lower (203 ms against 174 ms;
docs/performance.md, "Many hosts at once"). In Synapse's test harness the
database work runs on the reactor's thread too.

One step at a time while others are at work is what guards their latency:
a message then waits behind one step, not eight (with four at once, a
message's 95th percentile was six times its own, docs/performance.md, "Many
hosts at once"). Pausing more often beside messages that leave room would
cost the work its pace and spare few of them: each pause lets through only
those that happen to arrive in it.

An idle server pays three ticks per slice (15% at the shortest slice, under 1%
at the longest, which it reaches after five); a busy one keeps nearly all of
itself. The decisions are the pure functions :func:`tick_busy`,
:meth:`Pause.ticked`, :func:`leaves_room`, :func:`keep_giving_way`,
:func:`contended`, :func:`stays_narrow`, :func:`next_slice`,
:func:`steps_at_once` and :func:`starts_afresh`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import attrs
from synapse.module_api import ModuleApi, make_deferred_yieldable
from twisted.internet import defer

from synapse_breakout import synapse_adapter
from synapse_breakout.metrics import GAVE_WAY

logger = logging.getLogger(__name__)

#: The first slice of work, and the one after others were seen busy.
MIN_SLICE_SECONDS = 0.1
#: The longest slice: how long others may share the process with break-out
#: work before the pacer next looks whether they want it.
MAX_SLICE_SECONDS = 2.0
#: How often the pacer looks at the process while it gives way.
TICK_SECONDS = 0.005
#: How long a pause looks before it judges whether others leave room, and
#: the share of that time the reactor must stand idle for them to.
LOOK_SECONDS = 0.05
IDLE_SHARE = 0.25
#: A tick in which the reactor used this much CPU (or more) is busy: an idle
#: Synapse uses a few hundredths of it; a message sent takes ten times as much.
#: CPU, not a share of the tick's time: on a machine short of CPU a busy
#: process gets less than the wall clock's time.
BUSY_CPU_SECONDS = 0.001
#: Quiet in a row that ends a pause: three ticks without others at work (a
#: message being sent can leave a tick or two nearly idle while it waits on
#: its database). On the homeserver's clock, as the ticks: in Synapse's test
#: harness, whose clock stands still unless a test moves it, a test that lets
#: a second pass has let the process be quiet for a second.
QUIET_SECONDS = 3 * TICK_SECONDS
#: Others get this many times the time of a slice while they are busy.
GIVE_WAY = 12
#: The longest one pause: the work always goes on, however busy the server.
MAX_PAUSE_SECONDS = 5.0
#: CPU others used in one pause that makes it contended (short slices, one
#: step at a time): about half a message. Less is the tail of the pacer's own
#: steps (Synapse's notifier, federation sender and caches after each event),
#: which on a real server followed nearly every slice: counted as contention,
#: it held an idle server's split to one step at a time (docs/performance.md).
CONTENDED_CPU_SECONDS = 0.010
#: Pauses in a row without contention before the work goes wide again (a
#: stream of messages leaves some pauses with little of it in them).
WIDEN_AFTER = 3
#: Steps at once, of all break-outs together, while nobody else wants the
#: process: the placement bound measured best (docs/performance.md).
WIDE_STEPS = 8
#: Break-outs whose last turn :class:`Turns` remembers while none of their
#: steps waits (beyond it, only those with waiters are kept).
REMEMBERED_BREAKOUTS = 1000


def tick_busy(cpu_seconds: float) -> bool:
    """Whether a tick in which the reactor used ``cpu_seconds`` of CPU while
    the pacer held everything back found others at work."""
    return cpu_seconds >= BUSY_CPU_SECONDS


@attrs.frozen
class Pause:
    """What a pause has seen so far: its ticks summed up, after the slice."""

    #: Wall seconds the slice before took.
    worked: float = 0.0
    #: Seconds on the homeserver's clock since it began, and since its last
    #: tick that found others at work (:func:`tick_busy`).
    paused: float = 0.0
    quiet: float = 0.0
    #: Seconds on the wall clock since it began, and how many of them the
    #: reactor used no CPU (a tick's length less the CPU used in it).
    looked: float = 0.0
    idle: float = 0.0
    #: CPU seconds others used in its busy ticks, and how many those were.
    given: float = 0.0
    busy: int = 0

    def ticked(self, clock: float, wall: float, cpu: float) -> Pause:
        """This pause after one more tick of ``clock`` seconds on the
        homeserver's clock and ``wall`` seconds on the wall clock, in which
        the reactor used ``cpu`` seconds of CPU."""
        busy = tick_busy(cpu)
        return Pause(
            worked=self.worked,
            paused=self.paused + clock,
            quiet=0.0 if busy else self.quiet + clock,
            looked=self.looked + wall,
            idle=self.idle + max(0.0, wall - cpu),
            given=self.given + (cpu if busy else 0.0),
            busy=self.busy + busy,
        )


def leaves_room(pause: Pause) -> bool:
    """Whether others, busy or not, left the reactor idle :data:`IDLE_SHARE`
    of a pause that has looked long enough to tell."""
    return pause.looked >= LOOK_SECONDS and pause.idle >= IDLE_SHARE * pause.looked


def keep_giving_way(pause: Pause) -> bool:
    """Whether to hold back another tick."""
    return (
        pause.quiet < QUIET_SECONDS
        and not leaves_room(pause)
        and pause.given < GIVE_WAY * pause.worked
        and pause.paused < MAX_PAUSE_SECONDS
    )


def contended(given_cpu: float) -> bool:
    """Whether a pause in which others used ``given_cpu`` CPU seconds found
    them really at work, not only finishing what the last steps began."""
    return given_cpu >= CONTENDED_CPU_SECONDS


def stays_narrow(calm_pauses: int) -> bool:
    """Whether the work still goes one step at a time, ``calm_pauses``
    pauses after the last contended one (:func:`contended`)."""
    return calm_pauses < WIDEN_AFTER


def next_slice(previous: float, busy_all_along: bool) -> float:
    """The next slice's length: short after others kept the process busy all
    along, doubling while they leave room or nobody else wants it."""
    if busy_all_along:
        return MIN_SLICE_SECONDS
    return min(MAX_SLICE_SECONDS, previous * 2)


def steps_at_once(narrow: bool) -> int:
    """How many steps of all break-outs together may run at once."""
    return 1 if narrow else WIDE_STEPS


def starts_afresh(idle_seconds: float | None) -> bool:
    """Whether a step that finds nothing of the pacer's running or waiting
    begins a new first slice: the first step ever (``idle_seconds`` None), or
    the first after the work stopped a while. What the process does then is
    unknown, so the slice starts short, not at the width the last work
    reached on an idle server."""
    return idle_seconds is None or idle_seconds > MIN_SLICE_SECONDS


class Turns:
    """The waiting steps, one lane per break-out: the lane let in least
    recently goes first (round-robin; the first to wait among lanes never
    let in), and within one lane, the first to wait."""

    def __init__(self) -> None:
        #: The lanes with waiters, in the order they began to wait.
        self._lanes: dict[str, deque[defer.Deferred[None]]] = {}
        #: The turn at which each break-out last had a step let in.
        self._served: dict[str, int] = {}
        self._turn = 0

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def join(self, breakout: str) -> defer.Deferred[None]:
        """A new waiter at the end of ``breakout``'s lane."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._lanes.setdefault(breakout, deque()).append(waiter)
        return waiter

    def leave(self, waiter: defer.Deferred[None]) -> bool:
        """Take ``waiter`` out of its lane; False if it was let in already."""
        for breakout, lane in self._lanes.items():
            if waiter in lane:
                lane.remove(waiter)
                if not lane:
                    del self._lanes[breakout]
                return True
        return False

    def served(self, breakout: str) -> None:
        """A step of ``breakout`` was let in (from its lane, or at once)."""
        self._turn += 1
        self._served[breakout] = self._turn
        if len(self._served) > REMEMBERED_BREAKOUTS:
            self._served = {b: t for b, t in self._served.items() if b in self._lanes}

    def next(self) -> defer.Deferred[None]:
        """The waiter whose turn it is, taken out of its lane."""
        breakout = min(self._lanes, key=lambda b: self._served.get(b, 0))
        lane = self._lanes[breakout]
        waiter = lane.popleft()
        if not lane:
            del self._lanes[breakout]
        self.served(breakout)
        return waiter


class Pacer:
    """Lets break-out work go on in slices, giving way to the rest of the
    process, and its break-outs in turns (see the module's docstring).

    One per process: every break-out's steps share it.
    """

    def __init__(
        self,
        api: ModuleApi,
        cpu: Callable[[], float] = time.thread_time,
        wall: Callable[[], float] = time.perf_counter,
    ):
        """
        Args:
            cpu: the CPU seconds of the calling thread, the reactor's (the
                pacer is only ever called there).
            wall: the wall clock: how long slices took, and pauses looked
                (how long pauses lasted is on the homeserver's clock, as the
                ticks they sleep).
        """
        self._api = api
        self._cpu = cpu
        self._wall = wall
        self._turns = Turns()
        self._active = 0
        self.slice_seconds = MIN_SLICE_SECONDS
        self._slice_began = 0.0
        #: When the pacer last had nothing running (None: never ran).
        self._idle_since: float | None = None
        #: A pause is under way: nothing new is let in.
        self._holding = False
        #: Fired when the last step in flight ends, for the pause to begin.
        self._drained: defer.Deferred[None] | None = None
        self._letting_in = False
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

    @property
    def waiting(self) -> int:
        """Steps waiting for their turn."""
        return len(self._turns)

    @contextlib.asynccontextmanager
    async def step(self, breakout: str) -> AsyncIterator[None]:
        """One unit of ``breakout``'s work (a room made, a user placed, a
        notice sent; ``breakout`` is its parent room): waits for its turn,
        then runs. Steps must not nest."""
        if self.waiting or not self._let_in():
            await self._wait(breakout)
        else:
            self._turns.served(breakout)
        try:
            yield
        except defer.CancelledError:
            self._ended(cancelled=True)
            raise
        except BaseException:
            self._ended()
            raise
        self._ended()

    async def _wait(self, breakout: str) -> None:
        waiter = self._turns.join(breakout)
        self._let_waiters_in()
        try:
            await make_deferred_yieldable(waiter)
        except defer.CancelledError:
            if not self._turns.leave(waiter):
                self._ended(cancelled=True)  # let in as it was cancelled
            raise

    def _ended(self, cancelled: bool = False) -> None:
        """A step ended: the next ones may start, or the pause begin.

        Args:
            cancelled: it was cancelled, which only the homeserver's shutdown
                does: nothing new starts (it would be stopped midway).
        """
        self._active -= 1
        if not self._active:
            self._idle_since = self._wall()
            if self._drained is not None:
                synapse_adapter.wake(self._drained)
        if not cancelled:
            self._let_waiters_in()

    def _let_in(self) -> bool:
        """Count one more step as running if one may start now; at the end
        of a slice, begin a pause instead."""
        if self._holding or self._active >= steps_at_once(self.narrow):
            return False
        now = self._wall()
        if not self._active and starts_afresh(
            None if self._idle_since is None else now - self._idle_since
        ):
            self._slice_began = now
            self.slice_seconds = MIN_SLICE_SECONDS
        elif now - self._slice_began >= self.slice_seconds:
            self._holding = True
            self._api.run_as_background_process("breakout_give_way", self._pause)
            return False
        self._active += 1
        return True

    def _let_waiters_in(self) -> None:
        """Wake waiting steps, round-robin, as many as may start now."""
        if self._holding or self._letting_in:
            return  # a woken step that ended at once: the loop below goes on
        self._letting_in = True
        try:
            while self.waiting and self._let_in():
                synapse_adapter.wake(self._turns.next())
        finally:
            self._letting_in = False

    async def _pause(self) -> None:
        """Let the steps in flight finish, give way, then let waiters in."""
        try:
            if self._active:
                self._drained = defer.Deferred()
                await make_deferred_yieldable(self._drained)
                self._drained = None
            await self._give_way(Pause(worked=self._wall() - self._slice_began))
        except defer.CancelledError:
            # The homeserver shuts down (nothing else cancels a pause).
            self._holding = False
            raise
        except Exception:
            logger.exception("Giving way failed; the work goes on")
        self._drained = None
        self._holding = False
        # The work goes on now: a new slice, not a fresh start.
        self._slice_began = self._idle_since = self._wall()
        self._let_waiters_in()

    def _clock(self) -> float:
        """Seconds on the homeserver's clock, which the ticks sleep on."""
        return self._api.get_current_time_msec() / 1000

    async def _give_way(self, pause: Pause) -> None:
        while keep_giving_way(pause):
            cpu, clock, wall = self._cpu(), self._clock(), self._wall()
            await self._api.sleep(TICK_SECONDS)
            pause = pause.ticked(
                self._clock() - clock, self._wall() - wall, self._cpu() - cpu
            )
        busy_for_others = contended(pause.given)
        if busy_for_others:
            self.pauses += 1
            self.paused_seconds += pause.paused
            GAVE_WAY.inc(pause.paused)
        logger.debug(
            "Paused %.3fs after a slice of %.3fs: %d busy ticks, others %.1f ms, "
            "idle %.1f ms, %d steps waiting%s",
            pause.paused,
            pause.worked,
            pause.busy,
            1000 * pause.given,
            1000 * pause.idle,
            self.waiting,
            " (gave way)" if busy_for_others else "",
        )
        self._calm_pauses = 0 if busy_for_others else self._calm_pauses + 1
        self.narrow = stays_narrow(self._calm_pauses)
        self.slice_seconds = next_slice(
            self.slice_seconds, busy_for_others and not leaves_room(pause)
        )
