"""Shared ground for the project's tests in Synapse's own harness.

``from tests import unittest`` is Synapse's harness (see the root conftest.py).
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi
from synapse.server import HomeServer
from synapse.util.clock import Clock
from twisted.internet.testing import MemoryReactor
from twisted.web.resource import Resource

from synapse_breakout.module import BreakoutModule
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
        # @override_config has been applied by now: keep its modules entry.
        config.setdefault("modules", module_config()["modules"])
        return config

    def create_resource_dict(self) -> dict[str, Resource]:
        # Synapse's app adds module resources to its listeners; the harness
        # does not, so the tests do.
        resources = super().create_resource_dict()
        resources.update(self.hs._module_web_resources)
        return resources

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        self.module_api: ModuleApi = hs.get_module_api()
        self.store = BreakoutStore(self.module_api)


def find_module(hs: HomeServer) -> BreakoutModule:
    """The module instance loaded into ``hs``, found through its rules callback."""
    rules = hs.get_module_api_callbacks().third_party_event_rules
    for callback in rules._check_event_allowed_callbacks:
        module = getattr(callback, "__self__", None)
        if isinstance(module, BreakoutModule):
            return module
    raise AssertionError("synapse_breakout is not loaded in this homeserver")
