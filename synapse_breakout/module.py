"""The module's entry point: what Synapse loads from ``homeserver.yaml``."""

from __future__ import annotations

import logging
from typing import Any

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import StateMap

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BREAKOUT_EVENT_TYPES, BreakoutConfig, parse_config
from synapse_breakout.rules import BreakoutRules
from synapse_breakout.store import BreakoutStore

logger = logging.getLogger(__name__)


class BreakoutModule:
    """Break-out rooms (MSC3985), enforced and orchestrated by the server.

    Synapse constructs it once per process: positionally in production,
    with keywords in its test harness.
    """

    def __init__(self, config: BreakoutConfig, api: ModuleApi):
        self._config = config
        self._api = api
        self.store = BreakoutStore(api)
        self.rules = BreakoutRules(config, api)
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed
        )
        synapse_adapter.skip_state_load_for_other_event_types(
            api, self.check_event_allowed, BREAKOUT_EVENT_TYPES
        )
        if api.should_run_background_tasks():
            # Only the instance that runs background tasks owns the schema.
            api.run_as_background_process(
                "breakout_create_schema", self.store.create_schema
            )
        logger.info(
            "synapse_breakout loaded (event_type=%s, enforce_power_level_in=%s)",
            config.event_type,
            config.enforce_power_level_in.value,
        )

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap[EventBase]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Third-party rules callback: SPEC section 3 (see rules.py)."""
        return await self.rules.check_event_allowed(event, state_events)

    @staticmethod
    def parse_config(config: Any) -> BreakoutConfig:
        """Parse the ``config:`` of the module's entry; see ``config.parse_config``."""
        return parse_config(config)
