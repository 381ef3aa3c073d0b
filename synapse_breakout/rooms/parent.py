"""The parent room as the operations see it: its state and its break-out in
force, read again under the lock, and the break-out's *own rooms*.

docs/admin_api.md describes the 409 of a break-out that changed meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus

import attrs
from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BREAKOUT_EVENT_TYPES, BreakoutConfig
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix.child_room import COPIED_STATE
from synapse_breakout.matrix.content import (
    BREAKOUT_STATE,
    BreakoutContent,
    current_breakout,
)
from synapse_breakout.matrix.errors import changed_meanwhile
from synapse_breakout.matrix.power import is_moderator, named_creators
from synapse_breakout.rooms.members import member_events

logger = logging.getLogger(__name__)

#: What every read of a parent needs, besides memberships.
PARENT_STATE = (
    ("m.room.create", ""),
    ("m.room.power_levels", ""),
    ("m.room.join_rules", ""),
    *((event_type, "") for event_type in COPIED_STATE),
    *BREAKOUT_STATE,
)


def _named_users(state: StateMap[EventBase]) -> set[str]:
    """Users the parent's state names: in its power levels, as creators, as
    senders of its break-out events. Moderators are among them."""
    named: set[str] = set(named_creators(state))
    power_levels = state.get(("m.room.power_levels", ""))
    users = power_levels.content.get("users") if power_levels else None
    if isinstance(users, Mapping):
        named.update(u for u in users if isinstance(u, str))
    for event_type in BREAKOUT_EVENT_TYPES:
        event = state.get((event_type, ""))
        if event is not None:
            named.add(event.sender)
    return named


@attrs.frozen
class InForce:
    """A parent's state and the break-out in force there."""

    state: StateMap[EventBase]
    event: EventBase
    content: BreakoutContent


class ParentRooms:
    """Reads of parent rooms and of their break-out in force."""

    def __init__(self, config: BreakoutConfig, api: ModuleApi, store: OperationStore):
        self._config = config
        self._api = api
        self._store = store

    async def state(
        self, parent: str, members: Iterable[str] | None = None
    ) -> StateMap[EventBase]:
        """The parent's current state; 404 when this server does not know it.

        Args:
            members: whose membership events to read; None: everyone's. The
                moderators (users named in the power levels, the creators) and
                the break-out events' senders are always read, with the
                create, power-level, join-rule, copied and break-out events. A
                large parent's whole membership is read only when needed.
        """
        state = await self._api.get_room_state(
            parent, None if members is None else PARENT_STATE
        )
        if ("m.room.create", "") not in state:
            raise SynapseError(
                HTTPStatus.NOT_FOUND, f"room {parent} is not known", Codes.NOT_FOUND
            )
        if members is None:
            return state
        wanted = set(members) | _named_users(state)
        if not wanted:
            return state
        found = await member_events(self._api, parent, wanted)
        return {**state, **found}

    def is_moderator(self, user_id: str, state: StateMap[EventBase]) -> bool:
        """Joined, with at least the configured ``power_level``."""
        return is_moderator(user_id, state, self._config.power_level)

    async def in_force(self, parent: str, users: Iterable[str]) -> InForce:
        """The parent's state (with ``users``' and the acting user's
        memberships) and its break-out in force; 404 if there is none."""
        running = await self._store.get_running(parent)
        acting = [running.acting_user] if running is not None else []
        state = await self.state(parent, [*users, *acting])
        current = current_breakout(state)
        if not current.in_force or current.event is None or current.content is None:
            raise SynapseError(
                HTTPStatus.NOT_FOUND,
                f"{parent} has no active break-out",
                Codes.NOT_FOUND,
            )
        return InForce(state, current.event, current.content)

    async def reread(self, parent: str, users: Iterable[str], seen: InForce) -> InForce:
        """The break-out in force, read again under the parent's lock.

        Raises:
            BreakoutActiveError: it is no longer the event ``seen`` (ended,
                replaced, moved meanwhile): the caller decided on stale state.
        """
        try:
            found = await self.in_force(parent, users)
        except SynapseError as e:
            if e.code == HTTPStatus.NOT_FOUND:
                raise changed_meanwhile(parent) from None
            raise
        if found.event.event_id != seen.event.event_id:
            raise changed_meanwhile(parent)
        return found

    async def own_rooms(self, parent: str, content: BreakoutContent) -> frozenset[str]:
        """The break-out's *own rooms*: those of ``content``'s children that its
        start operation created (journalled). The one home of that rule: the
        rest were added by hand and are never touched (docs/security.md)."""
        running = await self._store.get_running(parent)
        if running is None:
            return frozenset()
        made = await self._store.rooms_of(running.op_id)
        return frozenset(made).intersection(content.room_ids)

    async def own_in_order(self, parent: str, found: InForce) -> list[str]:
        """The break-out's own rooms, in the event's order."""
        own = await self.own_rooms(parent, found.content)
        return [room_id for room_id in found.content.room_ids if room_id in own]
