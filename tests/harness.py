"""Shared ground for the project's tests in Synapse's own harness.

``from tests import unittest`` is Synapse's harness (see the root conftest.py).
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi
from synapse.server import HomeServer
from synapse.util.clock import Clock
from twisted.internet.testing import MemoryReactor

from synapse_breakout.store import BreakoutStore
from tests import unittest

MODULE = "synapse_breakout.BreakoutModule"


def module_config(**config: Any) -> dict[str, Any]:
    """A homeserver config fragment loading the module with ``config``."""
    return {"modules": [{"module": MODULE, "config": config}]}


class BreakoutTestCase(unittest.HomeserverTestCase):
    """A homeserver with the module loaded (``module_config()`` by default).

    Tests change the module's config with ``@override_config(module_config(...))``.
    """

    def default_config(self) -> dict[str, Any]:
        config = super().default_config()
        config.update(module_config())
        return config

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        self.module_api: ModuleApi = hs.get_module_api()
        self.store = BreakoutStore(self.module_api)
