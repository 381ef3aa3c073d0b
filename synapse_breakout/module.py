"""The module's entry point: what Synapse loads from ``homeserver.yaml``."""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi

from synapse_breakout.config import BreakoutConfig, parse_config
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

    @staticmethod
    def parse_config(config: Any) -> BreakoutConfig:
        """Parse the ``config:`` of the module's entry; see ``config.parse_config``."""
        return parse_config(config)
