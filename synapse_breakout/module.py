"""The module's entry point: what Synapse loads from ``homeserver.yaml``.

Wiring only: the callbacks Synapse calls are one-liners here. docs/development.md
maps where the work lives.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from synapse.module_api import EventBase, ModuleApi, StateMap

from synapse_breakout import synapse_adapter
from synapse_breakout.admin_api import BASE_PATH, BreakoutAdminResource, Operations
from synapse_breakout.announce import Announcer
from synapse_breakout.closing import Closer
from synapse_breakout.config import (
    BREAKOUT_EVENT_TYPES,
    BreakoutConfig,
    UnknownSenders,
    parse_config,
)
from synapse_breakout.console import (
    CONSOLE_PATH,
    ConsoleApiResource,
    ConsoleResource,
)
from synapse_breakout.console_session import ConsoleSessions
from synapse_breakout.console_view import ConsoleView
from synapse_breakout.deadlines import Deadlines
from synapse_breakout.help import HelpDesk
from synapse_breakout.journal import Journal
from synapse_breakout.lifecycle import Lifecycle
from synapse_breakout.parent import ParentRooms
from synapse_breakout.placement import Placement
from synapse_breakout.progress import Progress
from synapse_breakout.rules import BreakoutRules
from synapse_breakout.running import RunningBreakouts
from synapse_breakout.schema import BreakoutStore, SchemaTooNewError
from synapse_breakout.spam import SenderTrust
from synapse_breakout.start import Starter
from synapse_breakout.store import OperationStore
from synapse_breakout.upkeep import Upkeep

logger = logging.getLogger(__name__)


class BreakoutModule:
    """Break-out rooms (MSC3985), enforced and orchestrated by the server.

    Synapse constructs it once per process: positionally in production,
    with keywords in its test harness.
    """

    def __init__(self, config: BreakoutConfig, api: ModuleApi):
        synapse_adapter.require_internals(api)
        self._config = config
        self._api = api
        self.store = BreakoutStore(api)
        self.operation_store = OperationStore(api)
        self.rules = BreakoutRules(config, api)
        self.trust = SenderTrust(config, api)
        store = self.operation_store
        self.journal = Journal(api, store)
        parents = ParentRooms(config, api, store, self.journal)
        placement = Placement(config, api, store, parents)
        announcer = Announcer(config, api)
        closer = Closer(store, parents, placement, announcer)
        starter = Starter(
            config, api, store, self.journal, parents, placement, announcer, closer
        )
        running = RunningBreakouts(api, store, parents, placement, announcer, closer)
        deadlines = Deadlines(config, api, store, parents, placement, announcer)
        self.operations = Operations(
            parents,
            starter,
            running,
            placement,
            deadlines,
            HelpDesk(api, store, parents, announcer),
            Progress(api, store, starter),
        )
        self.lifecycle = Lifecycle(
            config, api, store, self.journal, starter, running, placement, deadlines
        )
        self.upkeep = Upkeep(api, self.journal, config.retention_days)
        self.upkeep.renew_leases_here()

        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed
        )
        synapse_adapter.skip_state_load_for_other_event_types(
            api, self.check_event_allowed, BREAKOUT_EVENT_TYPES
        )
        if config.unknown_senders is not UnknownSenders.OFF:
            api.register_spam_checker_callbacks(
                check_event_for_spam=self.check_event_for_spam
            )
        if config.unknown_senders is UnknownSenders.ANNOTATE:
            api.register_add_extra_fields_to_unsigned_client_event_callbacks(
                add_field_to_unsigned_callback=self.add_field_to_unsigned
            )
        if config.admin_api.enabled:
            api.register_web_resource(
                BASE_PATH,
                BreakoutAdminResource(config, api, self.operations, self.trust.flags),
            )
        if config.console.enabled:  # the host console (docs/console.md)
            api.register_web_resource(
                CONSOLE_PATH,
                ConsoleResource(
                    ConsoleApiResource(
                        api,
                        ConsoleSessions(api),
                        ConsoleView(config, api, parents, running),
                    )
                ),
            )
        if api.should_run_background_tasks():
            # Only the instance that runs background tasks owns the schema,
            # recovery, timers and ejection.
            api.run_as_background_process("breakout_start_up", self._start_up)
        logger.info(
            "synapse_breakout loaded (event_type=%s, enforce_power_level_in=%s, "
            "unknown_senders=%s, admin_api=%s)",
            config.event_type,
            config.enforce_power_level_in.value,
            config.unknown_senders.value,
            config.admin_api.enabled,
        )

    async def _start_up(self) -> None:
        try:
            await self.store.create_schema()
        except SchemaTooNewError as e:
            refuse_to_run(e)
            return
        await self.lifecycle.recover()
        self.lifecycle.schedule()
        self.upkeep.schedule_retention()

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Third-party rules callback: the event rules (rules.py, docs/rules.md)."""
        return await self.rules.check_event_allowed(event, state_events)

    async def check_event_for_spam(self, event: EventBase) -> Any:
        """Spam-checker callback: unknown senders (spam.py, docs/security.md)."""
        return await self.trust.check_event_for_spam(event)

    async def add_field_to_unsigned(self, event: EventBase) -> dict[str, Any]:
        """Unsigned-fields callback: the sender-trust annotation (spam.py)."""
        return await self.trust.add_unsigned(event)

    @staticmethod
    def parse_config(config: Any) -> BreakoutConfig:
        """Parse the ``config:`` of the module's entry; see ``config.parse_config``."""
        return parse_config(config)


def refuse_to_run(error: SchemaTooNewError) -> None:
    """Stop this Synapse process: its database is newer than this module.

    Serving on would run old code against tables it does not know (after a
    downgrade). Synapse ends its own failed start-up tasks the same way
    (``synapse.app._base.register_start``): the error in the log and on the
    unredirected stderr, then ``os._exit(1)``, because ``sys.exit`` inside the
    reactor only raises ``SystemExit`` into it and everything carries on.
    """
    logger.critical("Refusing to run: %s", error)
    print(f"synapse_breakout refuses to run: {error}", file=sys.__stderr__)
    os._exit(1)
