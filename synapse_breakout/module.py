"""The module's entry point: what Synapse loads from ``homeserver.yaml``.

Wiring only: every part is built once here, in the order of the layers
(journal, rooms, operations, then the three ways in: HTTP, Synapse's hooks and
the background loops), and handed to those that use it; the callbacks Synapse
calls are one-liners. docs/development.md maps where the work lives.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from synapse.module_api import EventBase, ModuleApi, StateMap

from synapse_breakout import synapse_adapter
from synapse_breakout.background.loops import BackgroundLoops
from synapse_breakout.config import (
    BREAKOUT_EVENT_TYPES,
    BreakoutConfig,
    UnknownSenders,
    parse_config,
)
from synapse_breakout.hooks.event_rules import BreakoutRules
from synapse_breakout.hooks.room_capacity import MEMBER, RoomCapacity
from synapse_breakout.hooks.sender_trust import SenderTrust
from synapse_breakout.http.admin_api import BASE_PATH, BreakoutAdminResource, Operations
from synapse_breakout.http.console.resource import (
    CONSOLE_PATH,
    ConsoleApiResource,
    ConsoleResource,
)
from synapse_breakout.http.console.sessions import ConsoleSessions
from synapse_breakout.http.console.view import ConsoleView
from synapse_breakout.http.flags import Flags
from synapse_breakout.journal.assignment import AssignmentStore
from synapse_breakout.journal.capacity import CapacityStore
from synapse_breakout.journal.console_sessions import ConsoleSessionStore
from synapse_breakout.journal.deadlines import DeadlineStore
from synapse_breakout.journal.help import HelpStore
from synapse_breakout.journal.locks import ParentLocks
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.ownership import Ownership
from synapse_breakout.journal.pins import PinStore
from synapse_breakout.journal.plans import PlanStore
from synapse_breakout.journal.retention import Retention
from synapse_breakout.journal.rows import UNFINISHED
from synapse_breakout.journal.schema import Schema, SchemaTooNewError
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.journal.verdicts import VerdictStore
from synapse_breakout.operations.after_commit import AfterCommit
from synapse_breakout.operations.broadcast import Broadcaster
from synapse_breakout.operations.choose import Chooser
from synapse_breakout.operations.deadline import DeadlineKeeper
from synapse_breakout.operations.describe import Describer
from synapse_breakout.operations.eject import Ejector
from synapse_breakout.operations.end import Ender
from synapse_breakout.operations.help import HelpDesk
from synapse_breakout.operations.move import Mover
from synapse_breakout.operations.place_users import Placer
from synapse_breakout.operations.plans import Plans
from synapse_breakout.operations.progress import BackgroundStarts, OperationView
from synapse_breakout.operations.recovery import Recovery
from synapse_breakout.operations.rollback import RollBack
from synapse_breakout.operations.start import Starter
from synapse_breakout.operations.start_checks import StartChecks
from synapse_breakout.rooms.acting import ActingUsers
from synapse_breakout.rooms.announcer import Announcer
from synapse_breakout.rooms.breakout_event import BreakoutEvents
from synapse_breakout.rooms.closing import Closer
from synapse_breakout.rooms.console_widget import ConsoleWidget
from synapse_breakout.rooms.memberships import Memberships
from synapse_breakout.rooms.pacing import Pacer
from synapse_breakout.rooms.parent import ParentRooms
from synapse_breakout.rooms.pins import Pinner

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
        self._build_journal()
        self._build_rooms()
        self._build_operations()
        self._register_hooks()
        self._register_http()
        self.ownership.renew_here()
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

    def _build_journal(self) -> None:
        api = self._api
        self.schema = Schema(api)
        self.operation_store = OperationStore(api)
        self.assignments = AssignmentStore(api)
        self.capacity = CapacityStore(api)
        self.ownership = Ownership(api)
        self.locks = ParentLocks(api, self.ownership, UNFINISHED)
        self.verdicts = VerdictStore(api)
        self.tables = SynapseTables(api)
        self.help_requests = HelpStore(api)
        self.plan_store = PlanStore(api)
        self.retention = Retention(
            api, self._config.retention_days, self.plan_store, self.tables
        )

    def _build_rooms(self) -> None:
        config, api, store = self._config, self._api, self.operation_store
        self.pacer = Pacer(api)
        self.parents = ParentRooms(config, api, store)
        self.acting = ActingUsers(config, api, store)
        self.events = BreakoutEvents(api, self.pacer)
        self.memberships = Memberships(api, self.pacer)
        self.pinner = Pinner(api, store, PinStore(api), self.pacer)
        self.announcer = Announcer(config, api, self.pinner, self.pacer)
        self.closer = Closer(
            store, self.parents, self.memberships, self.announcer, self.pinner
        )
        self.widget = ConsoleWidget(config, api)

    def _build_operations(self) -> None:
        config, api, store = self._config, self._api, self.operation_store
        self.rollback = RollBack(api, store, self.tables)
        self.placer = Placer(api, store, self.assignments, self.memberships)
        self.after_commit = AfterCommit(
            api,
            store,
            self.assignments,
            self.ownership,
            self.events,
            self.placer,
            self.announcer,
            self.closer,
            self.widget,
        )
        checks = StartChecks(config, api, store, self.parents, self.acting)
        starter = Starter(
            config,
            api,
            store,
            self.ownership,
            checks,
            self.parents,
            self.events,
            self.rollback,
            self.pacer,
            self.closer,
            self.after_commit,
            self.capacity,
        )
        self.recovery = Recovery(
            api,
            store,
            self.assignments,
            self.locks,
            self.ownership,
            self.rollback,
            self.after_commit,
        )
        self.operations = self._endpoint_operations(checks, starter)
        self.loops = BackgroundLoops(
            config,
            api,
            store,
            self.recovery,
            self.operations.ender,
            self.operations.deadlines,
            Ejector(api, self.tables, self.parents, self.memberships),
            self.retention,
        )

    def _endpoint_operations(self, checks: StartChecks, starter: Starter) -> Operations:
        config, api, store = self._config, self._api, self.operation_store
        parents, acting, events = self.parents, self.acting, self.events
        view = OperationView(store, self.assignments)
        return Operations(
            parents=parents,
            checks=checks,
            starts=BackgroundStarts(api, starter),
            view=view,
            describer=Describer(
                config, api, store, self.assignments, self.capacity, parents, view
            ),
            ender=Ender(
                store, self.locks, parents, acting, events, self.closer, self.widget
            ),
            broadcaster=Broadcaster(
                store, parents, acting, self.memberships, self.announcer
            ),
            mover=Mover(
                config,
                api,
                store,
                self.assignments,
                self.locks,
                parents,
                acting,
                events,
                self.memberships,
            ),
            deadlines=DeadlineKeeper(
                config,
                api,
                store,
                DeadlineStore(api),
                parents,
                acting,
                self.memberships,
                self.announcer,
            ),
            help=HelpDesk(api, store, self.help_requests, parents, self.announcer),
            plans=Plans(config, api, self.plan_store, checks, parents),
        )

    def _register_hooks(self) -> None:
        config, api = self._config, self._api
        self.rules = BreakoutRules(config, api, self.tables)
        self.room_capacity = RoomCapacity(
            config, api, self.capacity, self.operation_store
        )
        self.trust = SenderTrust(config, api, self.verdicts, self.tables)
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed
        )
        synapse_adapter.skip_state_load_for_other_event_types(
            api,
            self.check_event_allowed,
            BREAKOUT_EVENT_TYPES,
            self.room_capacity.concerns,
        )
        if config.unknown_senders is not UnknownSenders.OFF:
            api.register_spam_checker_callbacks(
                check_event_for_spam=self.check_event_for_spam
            )
        if config.unknown_senders is UnknownSenders.ANNOTATE:
            api.register_add_extra_fields_to_unsigned_client_event_callbacks(
                add_field_to_unsigned_callback=self.add_field_to_unsigned
            )

    def _register_http(self) -> None:
        config, api = self._config, self._api
        sessions = None
        if config.console.enabled:
            sessions = ConsoleSessions(api, ConsoleSessionStore(api), self.tables)
            # Any logout of a user ends their console sessions (security.md).
            api.register_password_auth_provider_callbacks(
                on_logged_out=sessions.on_logged_out
            )
        if config.admin_api.enabled:
            flags = Flags(self.verdicts, self.tables)
            api.register_web_resource(
                BASE_PATH,
                BreakoutAdminResource(config, api, self.operations, flags, sessions),
            )
        if sessions is not None:  # the host console (docs/console.md)
            self.console_view = view = ConsoleView(
                config,
                api,
                self.tables,
                self.operation_store,
                self.assignments,
                self.parents,
                self.operations.describer,
                self.help_requests,
            )
            chooser = Chooser(api, self.operation_store, self.parents, self.memberships)
            api.register_web_resource(
                CONSOLE_PATH,
                ConsoleResource(ConsoleApiResource(api, sessions, view, chooser)),
            )

    async def _start_up(self) -> None:
        try:
            await self.schema.create()
        except SchemaTooNewError as e:
            refuse_to_run(e)
            return
        await self.loops.recover()
        self.loops.schedule()

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Third-party rules callback: the event rules (hooks/event_rules.py),
        ``room_capacity`` on membership events (hooks/room_capacity.py)."""
        if event.type == MEMBER:
            return await self.room_capacity.check_event_allowed(event, state_events)
        return await self.rules.check_event_allowed(event, state_events)

    async def check_event_for_spam(self, event: EventBase) -> Any:
        """Spam-checker callback: unknown senders (hooks/sender_trust.py)."""
        return await self.trust.check_event_for_spam(event)

    async def add_field_to_unsigned(self, event: EventBase) -> dict[str, Any]:
        """Unsigned-fields callback: the sender-trust annotation."""
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
