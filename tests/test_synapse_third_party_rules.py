"""Synapse's own third-party rules tests pass with the module loaded.

Those tests install their callbacks by replacing the dispatcher's callback
list; the module's state-load shortcut (synapse_adapter.py) must read the
list Synapse holds at each call, never one it saw at start-up, or it answers
"allowed" for another module's refusals and edits. The file is Synapse's
(``tests/rest/client/test_third_party_rules.py`` of the installed release,
fetched with the rest of its harness); every one of its tests runs here with
``synapse_breakout`` loaded beside whatever it loads itself.
"""

from __future__ import annotations

from typing import Any

from harness import module_config
from tests.rest.client import test_third_party_rules as synapse_tests


class ThirdPartyRulesWithTheModuleTestCase(synapse_tests.ThirdPartyRulesTestCase):
    def default_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().default_config()
        config["modules"] = [*config.get("modules", []), *module_config()["modules"]]
        return config

    def test_the_module_is_loaded(self) -> None:
        rules = self.hs.get_module_api_callbacks().third_party_event_rules
        owners = {
            type(getattr(callback, "__self__", None)).__name__
            for callback in rules._check_event_allowed_callbacks
        }
        self.assertIn("BreakoutModule", owners)
