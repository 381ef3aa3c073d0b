"""What runs in the background, once, on the instance that runs background tasks.

The loops only; the work is in operations/ and journal/ (docs/operations.md):

- Recovery, at start-up and every ``recovery_interval_seconds``
  (operations/recovery.py): finishes the operations a crash left unfinished.
- Timers: a break-out whose deadline has passed is ended as ``DELETE``
  would (operations/end.py), with the message "Time is up", once; the warnings
  before it are sent (operations/deadline.py), once each.
- Ejection (``eject_on_parent_leave``): a user who left or was banned from a
  parent is removed from the children of its break-out (operations/eject.py).
- Retention, once a day (journal/retention.py).

Lease renewal runs on every instance (journal/ownership.py).
"""

from __future__ import annotations

import logging

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError
from twisted.internet import defer

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.retention import DAY_MS, Retention
from synapse_breakout.matrix.errors import BreakoutActiveError
from synapse_breakout.operations.deadline import DeadlineKeeper
from synapse_breakout.operations.eject import Ejector
from synapse_breakout.operations.end import TIME_IS_UP, Ender
from synapse_breakout.operations.recovery import Recovery

logger = logging.getLogger(__name__)

#: How often deadlines are checked.
TIMER_INTERVAL_MS = 1000
#: How often children are compared with their parent's members.
EJECTION_INTERVAL_MS = 5000


class BackgroundLoops:
    """Recovery, timers, warnings, ejection and retention, on a schedule."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        recovery: Recovery,
        ender: Ender,
        deadlines: DeadlineKeeper,
        ejector: Ejector,
        retention: Retention,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._recovery = recovery
        self._ender = ender
        self._deadlines = deadlines
        self._ejector = ejector
        self._retention = retention

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
        self._api.looping_background_call(
            self._retention.prune, DAY_MS, desc="breakout_prune"
        )

    async def recover(self) -> int:
        """Finish every operation a crash left unfinished (and go on placing
        the users of those committed before it); returns how many."""
        return await self._recovery.recover()

    async def end_due(self) -> int:
        """End every break-out whose deadline has passed; returns how many."""
        ended = 0
        for running in await self._store.due(self._api.get_current_time_msec()):
            try:
                await self._ender.end(
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
                removed += await self._ejector.eject_leavers(running)
            except defer.CancelledError:
                raise  # the homeserver shuts down
            except Exception:
                logger.exception("Ejection in %s failed", running.parent_room_id)
        return removed
