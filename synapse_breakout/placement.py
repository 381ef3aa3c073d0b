"""Users in and out of child rooms: placing a start's listed users (invite or
join), reassigning one user (``POST .../move``), removing users from children.

All best effort: a user who cannot be placed or removed is reported, and the
rest go on (docs/admin_api.md).
"""

from __future__ import annotations

import logging
from http import HTTPStatus

import attrs
from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import BREAKOUT_STATE, BreakoutContent, current_breakout
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.model import (
    ErrorJson,
    FailedRoom,
    JoinRule,
    PlacementMode,
    ReassignAnswer,
    StartAnswer,
    error_json,
)
from synapse_breakout.parent import ParentRooms
from synapse_breakout.placing import Placer
from synapse_breakout.power import (
    effective_join_rule,
    joined_or_invited,
    member_event_in_room,
    membership,
)
from synapse_breakout.store import Operation, OperationStore, RunningBreakout

logger = logging.getLogger(__name__)


class Placement:
    """Invites, joins and removals in child rooms, as the acting user."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        parents: ParentRooms,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._parents = parents
        self.placer = Placer(api, store, self.place)

    # --- into a child -------------------------------------------------------------

    async def place_listed(self, op: Operation, answer: StartAnswer) -> StartAnswer:
        """Invite or join a committed start's planned users (best effort,
        concurrently, journalled: placing.py); stores the final answer."""
        return await self.placer.place_start(op, answer)

    async def place(
        self,
        acting: str,
        user: str,
        room_id: str,
        mode: PlacementMode,
        join_rule: str,
        invited: bool = False,
    ) -> ErrorJson | None:
        """Invite or join one user (``invited``: already invited); the error
        if it failed."""
        try:
            if mode is PlacementMode.JOIN and self._api.is_mine(user):
                if join_rule == JoinRule.INVITE and not invited:
                    await synapse_adapter.update_membership(
                        self._api, acting, user, room_id, "invite"
                    )
                await synapse_adapter.update_membership(
                    self._api, user, user, room_id, "join"
                )
            elif mode is not PlacementMode.SUGGEST:
                await synapse_adapter.update_membership(
                    self._api, acting, user, room_id, "invite"
                )
        except SynapseError as e:
            return error_json(e)
        except Exception as e:
            logger.warning("Moving %s into %s failed: %s", user, room_id, e)
            return error_json(
                SynapseError(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    str(e) or type(e).__name__,
                    Codes.UNKNOWN,
                )
            )
        return None

    # --- out of children ------------------------------------------------------------

    async def remove(self, acting: str, user: str, room_id: str) -> None:
        """Make ``user`` leave ``room_id`` (kicked, or invite withdrawn)."""
        await synapse_adapter.update_membership(
            self._api, acting, user, room_id, "leave"
        )

    async def remove_members(self, acting: str, room_id: str) -> None:
        """Remove everyone but ``acting`` from a child room."""
        members = await self._api.get_room_state(room_id, [("m.room.member", None)])
        for (_, user), event in members.items():
            if user != acting and member_event_in_room(event):
                await self.remove(acting, user, room_id)

    async def eject_leavers(self, running: RunningBreakout) -> int:
        """Remove from the children of ``running`` every user who left or was
        banned from its parent; returns how many were removed."""
        parent = running.parent_room_id
        current = current_breakout(
            await self._api.get_room_state(parent, BREAKOUT_STATE)
        )
        if not current.in_force or current.content is None:
            return 0
        here = await synapse_adapter.rooms_with_create_event(
            self._api, current.content.room_ids
        )
        # The children's members, then only their memberships in the parent:
        # never the whole membership of a large parent.
        in_children: dict[str, list[str]] = {}
        for room_id in sorted(here):
            members = await self._api.get_room_state(room_id, [("m.room.member", None)])
            for (_, user), event in members.items():
                if member_event_in_room(event):
                    in_children.setdefault(user, []).append(room_id)
        if not in_children:
            return 0
        in_parent = await self._api.get_room_state(
            parent, [("m.room.member", user) for user in in_children]
        )
        removed = 0
        for user, rooms in sorted(in_children.items()):
            if membership(user, in_parent) not in ("leave", "ban"):
                continue
            for room_id in rooms:
                try:
                    await self.remove(running.acting_user, user, room_id)
                    removed += 1
                    logger.info(
                        "Removed %s from %s: they left %s", user, room_id, parent
                    )
                except SynapseError as e:
                    logger.warning(
                        "Could not remove %s from %s: %s", user, room_id, e.msg
                    )
        return removed

    # --- reassign -------------------------------------------------------------------

    async def reassign(
        self, requester: str, parent: str, user_id: str, to: str | None
    ) -> ReassignAnswer:
        """Reassign one user (``to`` None: back to the main room)."""
        found = await self._parents.in_force(parent, [requester, user_id])
        content = found.content
        if to is not None and to not in content.room_ids:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"to: {to} is not a child room of the break-out in {parent}",
                Codes.INVALID_PARAM,
            )
        if (
            to is not None
            and self._config.users_must_be_members
            and not joined_or_invited(user_id, found.state)
        ):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"user_id: {user_id} is not joined to or invited into {parent}",
                Codes.INVALID_PARAM,
            )
        acting = await self._parents.actor(requester, parent, found.state)
        previous = [c.room_id for c in content.children if user_id in c.users]
        children = tuple(
            attrs.evolve(
                child,
                users=tuple(u for u in child.users if u != user_id)
                + ((user_id,) if child.room_id == to else ()),
            )
            for child in content.children
        )
        async with self._parents.lock(parent, "move"):
            event = await self._parents.send_state(
                found.event.type,
                parent,
                acting,
                {
                    **found.event.content,
                    **BreakoutContent(content.key, children).to_json(),
                },
            )
            await self._store.set_running_event(parent, event.event_id)
            running = await self._store.get_running(parent)
            if running is not None:  # GET serves the assignment from the journal
                await self.placer.assignment.move_user(running.op_id, user_id, to)
        errors: list[FailedRoom] = []
        for room_id in previous:
            if room_id == to:
                continue
            members = await self._api.get_room_state(
                room_id, [("m.room.member", user_id)]
            )
            if member_event_in_room(members.get(("m.room.member", user_id))):
                try:
                    await self.remove(acting, user_id, room_id)
                except SynapseError as e:
                    errors.append({"room_id": room_id, **error_json(e)})
        if to is not None:
            running = await self._store.get_running(parent)
            mode = running.mode if running is not None else PlacementMode.INVITE
            rule = effective_join_rule(
                await self._api.get_room_state(to, [("m.room.join_rules", "")])
            )
            error = await self.place(acting, user_id, to, mode, rule)
            if error is not None:
                errors.append({"room_id": to, **error})
        OPERATIONS.labels("move", "ok" if not errors else "partial").inc()
        return {
            "event_id": event.event_id,
            "user_id": user_id,
            "from": previous,
            "to": to,
            "failed": errors,
        }
