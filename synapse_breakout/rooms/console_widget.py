"""The console as a room widget (``console.widget``): a start adds it to the
parent, the end removes it, so that Element users find "Break-out rooms" in
the room's extensions without typing ``/addwidget`` (docs/console.md).

The widget is the state event ``im.vector.modular.widgets`` with the state key
:data:`WIDGET_KEY`, sent by the break-out's acting user where the parent's
power levels let them (skipped and logged otherwise: never a failure of the
start or the end). Its address carries the widget's room as Element's URL
template ``$matrix_room_id``; the client adds ``widgetId`` and ``parentUrl``.
A start that replaces a break-out keeps it: the widget is the parent's, and
the new break-out's.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.matrix.power import required_level_to_send, user_power_level

logger = logging.getLogger(__name__)

WIDGET_TYPE = "im.vector.modular.widgets"
#: The state key of the module's widget: one per parent.
WIDGET_KEY = "org.matrix.msc3985.console"
#: Where the console is served, below the homeserver's public address.
CONSOLE_URL_PATH = "_synapse/client/breakout/console/"


def widget_content(public_baseurl: str) -> dict[str, Any]:
    """The widget's content: a custom widget at the console's address, with
    the widget's room filled in by the client."""
    base = public_baseurl if public_baseurl.endswith("/") else public_baseurl + "/"
    return {
        "type": "m.custom",
        "url": f"{base}{CONSOLE_URL_PATH}?room=$matrix_room_id",
        "name": "Break-out rooms",
        "data": {},
    }


class ConsoleWidget:
    """Adds the console widget to a parent, and removes it."""

    def __init__(self, config: BreakoutConfig, api: ModuleApi):
        self._enabled = config.console.enabled and config.console.widget
        self._api = api

    async def add(self, parent: str, acting: str) -> bool:
        """Add the widget to ``parent`` as ``acting``; whether it is there."""
        if not self._enabled:
            return False
        content = widget_content(self._api.public_baseurl)
        return await self._send(parent, acting, content, "add")

    async def remove(self, parent: str, acting: str) -> bool:
        """Remove the widget from ``parent`` as ``acting``, if it is there;
        whether it is gone."""
        if not self._enabled:
            return False
        return await self._send(parent, acting, {}, "remove")

    async def _send(
        self, parent: str, acting: str, content: dict[str, Any], what: str
    ) -> bool:
        state = await self._api.get_room_state(
            parent,
            [
                ("m.room.create", ""),
                ("m.room.power_levels", ""),
                (WIDGET_TYPE, WIDGET_KEY),
            ],
        )
        current = state.get((WIDGET_TYPE, WIDGET_KEY))
        if dict(current.content if current is not None else {}) == content:
            return True  # already so: no event
        needed = required_level_to_send(WIDGET_TYPE, state)
        if user_power_level(acting, state) < needed:
            logger.info(
                "Did not %s the console widget in %s: %s may not send %s "
                "(power level %d needed)",
                what,
                parent,
                acting,
                WIDGET_TYPE,
                needed,
            )
            return False
        try:
            await self._api.create_and_send_event_into_room(
                {
                    "type": WIDGET_TYPE,
                    "state_key": WIDGET_KEY,
                    "room_id": parent,
                    "sender": acting,
                    "content": content,
                }
            )
        except SynapseError as e:
            logger.warning(
                "Could not %s the console widget in %s: %s", what, parent, e.msg
            )
            return False
        except Exception:
            logger.exception("Could not %s the console widget in %s", what, parent)
            return False
        return True
