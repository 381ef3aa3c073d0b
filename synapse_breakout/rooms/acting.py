"""Who acts for a parent's break-out (docs/security.md, "Who acts").

A moderator acts as themselves; a server admin through ``acting_user`` (checked
here before a start) or, after the start, through the break-out's acting user.
"""

from __future__ import annotations

from http import HTTPStatus

from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix.content import current_breakout
from synapse_breakout.matrix.power import (
    is_moderator,
    required_level_to_send,
    user_power_level,
)


class ActingUsers:
    """Decides who acts for a parent's break-out."""

    def __init__(self, config: BreakoutConfig, api: ModuleApi, store: OperationStore):
        self._config = config
        self._api = api
        self._store = store

    def check(self, acting: str, state: StateMap[EventBase], event_type: str) -> None:
        """``acting`` is a local moderator of the parent who may send
        ``event_type`` there (a start's ``acting_user``)."""
        if not self._api.is_mine(acting):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"acting_user {acting} is not a user of this server",
                Codes.INVALID_PARAM,
            )
        if not is_moderator(acting, state, self._config.power_level):
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"acting_user {acting} must be joined to the room with power level "
                f">= {self._config.power_level}",
                Codes.FORBIDDEN,
            )
        needed = required_level_to_send(event_type, state)
        if user_power_level(acting, state) < needed:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"acting_user {acting} may not send {event_type} in "
                f"this room (needs power level {needed})",
                Codes.FORBIDDEN,
            )

    async def actor(
        self, requester: str, parent: str, state: StateMap[EventBase]
    ) -> str:
        """The local user who acts for the parent's running break-out.

        The caller, if a local moderator of the parent (a moderator acts as
        themselves); otherwise (a server admin) the acting user of a break-out
        started through the API; otherwise the sender of the break-out event,
        if local.
        """
        level = self._config.power_level
        if self._api.is_mine(requester) and is_moderator(requester, state, level):
            return requester
        running = await self._store.get_running(parent)
        if running is not None and is_moderator(running.acting_user, state, level):
            return running.acting_user
        current = current_breakout(state)
        if current.event is not None and self._api.is_mine(current.event.sender):
            return current.event.sender
        raise SynapseError(
            HTTPStatus.FORBIDDEN,
            f"no local moderator of {parent} can act for its break-out",
            Codes.FORBIDDEN,
        )
