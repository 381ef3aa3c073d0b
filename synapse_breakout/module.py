"""The module's entry point: what Synapse loads from ``homeserver.yaml``.

The callbacks Synapse calls are one-liners here; the work is in rules.py,
spam.py, admin_api.py, operations.py and lifecycle.py.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from synapse_breakout import synapse_adapter
from synapse_breakout.admin_api import BASE_PATH, BreakoutAdminResource
from synapse_breakout.config import (
    BREAKOUT_EVENT_TYPES,
    BreakoutConfig,
    UnknownSenders,
    parse_config,
)
from synapse_breakout.lifecycle import Lifecycle
from synapse_breakout.operations import BreakoutOperations
from synapse_breakout.rules import BreakoutRules
from synapse_breakout.spam import SenderTrust
from synapse_breakout.store import BreakoutStore, OperationStore

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
        self.operations = BreakoutOperations(config, api, self.operation_store)
        self.lifecycle = Lifecycle(config, api, self.operation_store, self.operations)

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
        await self.store.create_schema()
        await self.lifecycle.recover()
        self.lifecycle.schedule()

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Third-party rules callback: SPEC section 3 (rules.py)."""
        return await self.rules.check_event_allowed(event, state_events)

    async def check_event_for_spam(self, event: EventBase) -> Any:
        """Spam-checker callback: SPEC section 5 (spam.py)."""
        return await self.trust.check_event_for_spam(event)

    async def add_field_to_unsigned(self, event: EventBase) -> dict[str, Any]:
        """Unsigned-fields callback: the sender-trust annotation (spam.py)."""
        return await self.trust.add_unsigned(event)

    @staticmethod
    def parse_config(config: Any) -> BreakoutConfig:
        """Parse the ``config:`` of the module's entry; see ``config.parse_config``."""
        return parse_config(config)
