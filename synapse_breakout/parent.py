"""The parent room as the operations see it: its state, its break-out in force,
who acts for it, and the lock that lets one operation at a time change it.

docs/admin_api.md describes the acting user and the 409 of a busy parent.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BREAKOUT_EVENT_TYPES, BreakoutConfig
from synapse_breakout.content import (
    BREAKOUT_STATE,
    BreakoutChild,
    BreakoutContent,
    current_breakout,
)
from synapse_breakout.journal import Journal
from synapse_breakout.power import (
    membership,
    named_creators,
    user_power_level,
)
from synapse_breakout.store import OperationStore

BREAKOUT_ACTIVE = "ORG.MATRIX.MSC3985.BREAKOUT_ACTIVE"
#: Parent state a start copies into every child room.
COPIED_STATE = ("m.room.encryption", "m.room.history_visibility", "m.room.guest_access")
#: What every read of a parent needs, besides memberships.
PARENT_STATE = (
    ("m.room.create", ""),
    ("m.room.power_levels", ""),
    ("m.room.join_rules", ""),
    *((event_type, "") for event_type in COPIED_STATE),
    *BREAKOUT_STATE,
)


class BreakoutActiveError(SynapseError):
    """409: the parent already has a break-out, or an operation is under way."""

    def __init__(self, msg: str):
        super().__init__(HTTPStatus.CONFLICT, msg, BREAKOUT_ACTIVE)


def under_way(parent: str) -> BreakoutActiveError:
    """The 409 of a parent another operation holds."""
    return BreakoutActiveError(f"another break-out operation on {parent} is under way")


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
    """Reads of parent rooms, their acting user, their lock."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        journal: Journal,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._journal = journal

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
        found = await self._api.get_room_state(
            parent, [("m.room.member", user) for user in sorted(wanted)]
        )
        return {**state, **found}

    def is_moderator(self, user_id: str, state: StateMap[EventBase]) -> bool:
        """Joined, with at least the configured ``power_level``."""
        return (
            membership(user_id, state) == "join"
            and user_power_level(user_id, state) >= self._config.power_level
        )

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

    async def actor(
        self, requester: str, parent: str, state: StateMap[EventBase]
    ) -> str:
        """The local user who acts for the parent's break-out.

        The acting user of a break-out started through the API; otherwise the
        caller, if a moderator of the parent; otherwise the sender of the
        break-out event, if local.
        """
        running = await self._store.get_running(parent)
        if running is not None and self.is_moderator(running.acting_user, state):
            return running.acting_user
        if self._api.is_mine(requester) and self.is_moderator(requester, state):
            return requester
        current = current_breakout(state)
        if current.event is not None and self._api.is_mine(current.event.sender):
            return current.event.sender
        raise SynapseError(
            HTTPStatus.FORBIDDEN,
            f"no local moderator of {parent} can act for its break-out",
            Codes.FORBIDDEN,
        )

    async def own_children(
        self, op_id: str | None, content: BreakoutContent
    ) -> tuple[BreakoutChild, ...]:
        """The children of ``content`` that the start ``op_id`` created: the
        break-out's own rooms (docs/admin_api.md). None without a start."""
        if op_id is None:
            return ()
        own = set(await self._store.rooms_of(op_id))
        return tuple(child for child in content.children if child.room_id in own)

    @contextlib.asynccontextmanager
    async def lock(self, parent: str, kind: str) -> AsyncIterator[None]:
        """Hold the parent's lock for a change of its break-out event.

        Raises:
            BreakoutActiveError: another operation holds it.
        """
        lock_id = self._journal.lock_id(kind)
        if not await self._store.lock(parent, lock_id):
            raise under_way(parent)
        try:
            yield
        finally:
            await self._store.unlock(parent, lock_id)

    async def send_state(
        self, event_type: str, parent: str, sender: str, content: dict[str, Any]
    ) -> EventBase:
        """Send the parent's break-out event of ``event_type``."""
        return await synapse_adapter.send_event(
            self._api,
            {
                "type": event_type,
                "room_id": parent,
                "sender": sender,
                "state_key": "",
                "content": content,
            },
        )

    async def send_emptied(
        self, event_type: str, parent: str, sender: str
    ) -> EventBase:
        """End the break-out of ``event_type``: its event with no children."""
        return await self.send_state(event_type, parent, sender, {event_type: {}})
