"""What runs in the background, once, on the instance that runs background tasks.

The loops only; the work is elsewhere (docs/operations.md):

- Recovery, at start-up and every ``recovery_interval_seconds``: journal.py
  finishes the operations a crash left unfinished.
- Timers: a break-out whose deadline has passed is ended as ``DELETE``
  would (running.py), with the message "Time is up", once; the warnings
  before it are sent (deadlines.py), once each.
- Ejection (``eject_on_parent_leave``): a user who left or was banned from a
  parent is removed from the children of its break-out (placement.py).
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.deadlines import Deadlines
from synapse_breakout.journal import Journal
from synapse_breakout.model import BreakoutActiveError
from synapse_breakout.placement import Placement
from synapse_breakout.running import TIME_IS_UP, RunningBreakouts
from synapse_breakout.start import Starter
from synapse_breakout.store import OperationStore

logger = logging.getLogger(__name__)

#: How often deadlines are checked.
TIMER_INTERVAL_MS = 1000
#: How often children are compared with their parent's members.
EJECTION_INTERVAL_MS = 5000


class Lifecycle:
    """Recovery, timers and ejection, on a schedule."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        journal: Journal,
        starter: Starter,
        running: RunningBreakouts,
        placement: Placement,
        deadlines: Deadlines,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._journal = journal
        self._starter = starter
        self._running = running
        self._placement = placement
        self._deadlines = deadlines

    def schedule(self) -> None:
        """Start the loops (the caller runs ``recover`` once at start-up)."""
        self._api.looping_background_call(
            self.recover,
            self._config.recovery_interval_seconds * 1000,
            desc="breakout_recover",
        )
        self._api.looping_background_call(
            self.end_due, TIMER_INTERVAL_MS, desc="breakout_timers"
        )
        if self._config.notices and self._config.warn_before_end_seconds:
            self._api.looping_background_call(
                self._deadlines.warn_due, TIMER_INTERVAL_MS, desc="breakout_warnings"
            )
        if self._config.eject_on_parent_leave:
            self._api.looping_background_call(
                self.eject_leavers, EJECTION_INTERVAL_MS, desc="breakout_eject"
            )

    async def recover(self) -> int:
        """Finish every operation a crash left unfinished (and go on placing
        the users of those committed before it); returns how many."""
        finished = await self._journal.recover(self._starter.roll_forward)
        return finished + await self._placement.placer.resume(
            self._journal.abandoned,
            self._journal.instance,
            self._journal.process_token,
            self._starter.resume_placement,
        )

    async def end_due(self) -> int:
        """End every break-out whose deadline has passed; returns how many."""
        ended = 0
        for running in await self._store.due(self._api.get_current_time_msec()):
            try:
                await self._running.end(
                    running.acting_user,
                    running.parent_room_id,
                    TIME_IS_UP,
                    False,
                    due_op=running.op_id,
                )
                ended += 1
            except BreakoutActiveError:
                continue  # another operation holds the parent: next tick
            except SynapseError as e:
                # Ended by hand meanwhile (404), or no one can act any more.
                logger.info(
                    "Break-out in %s was due but not ended: %s",
                    running.parent_room_id,
                    e.msg,
                )
            # Whatever happened, this deadline is spent.
            await self._store.claim_end(running.parent_room_id, running.op_id)
        return ended

    async def eject_leavers(self) -> int:
        """Remove from the children every user who left the parent; returns how many."""
        removed = 0
        for running in await self._store.list_running():
            try:
                removed += await self._placement.eject_leavers(running)
            except Exception:
                logger.exception("Ejection in %s failed", running.parent_room_id)
        return removed
