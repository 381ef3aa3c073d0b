"""The parent room as the operations see it: its state, its break-out in force,
who acts for it, and the lock that lets one operation at a time change it.

docs/admin_api.md describes the acting user and the 409 of a busy parent.
"""

from __future__ import annotations

import contextlib
import logging
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
    BreakoutContent,
    current_breakout,
)
from synapse_breakout.journal import Journal
from synapse_breakout.members import member_events
from synapse_breakout.model import BreakoutActiveError
from synapse_breakout.power import (
    membership,
    named_creators,
    required_level_to_send,
    user_power_level,
)
from synapse_breakout.store import OperationStore

logger = logging.getLogger(__name__)

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


def under_way(parent: str) -> BreakoutActiveError:
    """The 409 of a parent another operation holds."""
    return BreakoutActiveError(f"another break-out operation on {parent} is under way")


def changed_meanwhile(parent: str) -> BreakoutActiveError:
    """The 409 of a break-out that changed between a call's read and its lock."""
    return BreakoutActiveError(
        f"the break-out in {parent} changed while this call was being handled; "
        "read it again and retry"
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
        found = await member_events(self._api, parent, wanted)
        return {**state, **found}

    def is_moderator(self, user_id: str, state: StateMap[EventBase]) -> bool:
        """Joined, with at least the configured ``power_level``."""
        return (
            membership(user_id, state) == "join"
            and user_power_level(user_id, state) >= self._config.power_level
        )

    def check_acting_user(
        self, acting: str, state: StateMap[EventBase], event_type: str
    ) -> None:
        """``acting`` is a local moderator of the parent who may send ``event_type``."""
        if not self._api.is_mine(acting):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"acting_user {acting} is not a user of this server",
                Codes.INVALID_PARAM,
            )
        if not self.is_moderator(acting, state):
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

    async def actor(
        self, requester: str, parent: str, state: StateMap[EventBase]
    ) -> str:
        """The local user who acts for the parent's break-out (docs/security.md).

        The caller, if a local moderator of the parent (a moderator acts as
        themselves); otherwise (a server admin) the acting user of a break-out
        started through the API; otherwise the sender of the break-out event,
        if local.
        """
        if self._api.is_mine(requester) and self.is_moderator(requester, state):
            return requester
        running = await self._store.get_running(parent)
        if running is not None and self.is_moderator(running.acting_user, state):
            return running.acting_user
        current = current_breakout(state)
        if current.event is not None and self._api.is_mine(current.event.sender):
            return current.event.sender
        raise SynapseError(
            HTTPStatus.FORBIDDEN,
            f"no local moderator of {parent} can act for its break-out",
            Codes.FORBIDDEN,
        )

    @contextlib.asynccontextmanager
    async def lock(self, parent: str, kind: str) -> AsyncIterator[None]:
        """Hold the parent's lock for a change of its break-out event.

        Raises:
            BreakoutActiveError: another operation holds it.
        """
        lock_id = self._journal.lock_id(kind)
        with self._journal.holding():
            if not await self._store.locks.lock(parent, lock_id):
                raise under_way(parent)
            try:
                yield
            finally:
                await self._store.locks.unlock(parent, lock_id)

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

    async def withdraw(self, event: EventBase, sender: str) -> None:
        """Empty ``event``'s break-out if ``event`` is still the one in force:
        it lists rooms a roll back deleted (a start recovery took for dead)."""
        state = await self._api.get_room_state(event.room_id, BREAKOUT_STATE)
        current = current_breakout(state).event
        if current is None or current.event_id != event.event_id:
            return
        try:
            await self.send_emptied(event.type, event.room_id, sender)
        except SynapseError as e:
            logger.warning("Could not withdraw %s: %s", event.event_id, e.msg)

    async def send_emptied(
        self, event_type: str, parent: str, sender: str
    ) -> EventBase:
        """End the break-out of ``event_type``: its event with no children."""
        return await self.send_state(event_type, parent, sender, {event_type: {}})
