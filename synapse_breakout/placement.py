"""Users in and out of child rooms: placing a start's listed users (invite or
join), reassigning one user (``POST .../move``), removing users from children.

All best effort: a user who cannot be placed or removed is reported, and the
rest go on (docs/admin_api.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BreakoutConfig
from synapse_breakout.content import (
    BREAKOUT_STATE,
    BreakoutContent,
    current_breakout,
    fits_in_event,
    without_users,
)
from synapse_breakout.members import member_events
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.model import (
    ErrorJson,
    FailedRoom,
    JoinRule,
    PlacementMode,
    ReassignAnswer,
    error_json,
)
from synapse_breakout.parent import InForce, ParentRooms
from synapse_breakout.placing import Placer
from synapse_breakout.power import (
    IN_ROOM,
    effective_join_rule,
    joined_or_invited,
    member_event_in_room,
    membership,
)
from synapse_breakout.store import OperationStore, RunningBreakout

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

    async def place(
        self,
        acting: str,
        user: str,
        room_id: str,
        mode: PlacementMode,
        join_rule: str,
        joined_to_parent: bool,
        invited: bool = False,
    ) -> ErrorJson | None:
        """Invite or join one user (``invited``: already invited); the error
        if it failed.

        ``join`` joins only a local user joined to the parent: anyone else (a
        remote user, one only invited to the parent) is invited, so no one is
        put in a room without having accepted anything.
        """
        try:
            if (
                mode is PlacementMode.JOIN
                and self._api.is_mine(user)
                and joined_to_parent
            ):
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
        except Exception:
            logger.exception("Moving %s into %s failed", user, room_id)
            return error_json(
                SynapseError(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    "the server could not place this user; see its log",
                    Codes.UNKNOWN,
                )
            )
        return None

    async def enter(self, actor: str, room_id: str, inviter: str | None) -> None:
        """Join ``actor`` (a moderator acting as themselves) to a child room
        they are not in, invited by ``inviter`` (the break-out's acting user,
        who made the room) where the room's join rule asks for it."""
        state = await self._api.get_room_state(room_id, [("m.room.member", actor)])
        if membership(actor, state) == "join":
            return
        try:
            await synapse_adapter.update_membership(
                self._api, actor, actor, room_id, "join"
            )
            return
        except SynapseError:
            if inviter is None or inviter == actor:
                raise
        await synapse_adapter.update_membership(
            self._api, inviter, actor, room_id, "invite"
        )
        await synapse_adapter.update_membership(
            self._api, actor, actor, room_id, "join"
        )

    async def enter_all(
        self, actor: str, rooms: Iterable[str], inviter: str | None
    ) -> tuple[list[str], list[FailedRoom]]:
        """:meth:`enter` each of ``rooms``; the rooms ``actor`` is in now, in
        order, and the failures."""
        entered: list[str] = []
        failed: list[FailedRoom] = []
        for room_id in rooms:
            try:
                await self.enter(actor, room_id, inviter)
                entered.append(room_id)
            except SynapseError as e:
                failed.append({"room_id": room_id, **error_json(e)})
        return entered, failed

    # --- out of children ------------------------------------------------------------

    async def remove(self, acting: str, user: str, room_id: str) -> None:
        """Make ``user`` leave ``room_id`` (kicked, or invite withdrawn)."""
        await synapse_adapter.update_membership(
            self._api, acting, user, room_id, "leave"
        )

    async def remove_members(self, acting: str, room_id: str) -> None:
        """Remove everyone but ``acting`` from a child room, giving way to
        other traffic (pacing.py): an end may empty thousands."""
        members = await self._api.get_room_state(room_id, [("m.room.member", None)])
        for (_, user), event in members.items():
            if user != acting and member_event_in_room(event):
                async with self.placer.pacer.step():
                    await self.remove(acting, user, room_id)

    async def withdraw_invitations(self, acting: str, room_id: str) -> None:
        """Withdraw the invitations to a child room that nobody accepted,
        giving way to other traffic (pacing.py)."""
        members = await self._api.get_room_state(room_id, [("m.room.member", None)])
        for (_, user), event in members.items():
            if event.content.get("membership") == "invite":
                async with self.placer.pacer.step():
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
            self._api, await self._parents.own_rooms(parent, current.content)
        )
        # The children's members, then only their memberships in the parent:
        # never the whole membership of a large parent.
        in_children: dict[str, list[str]] = {}
        members = await synapse_adapter.members_of_rooms(self._api, here, IN_ROOM)
        for room_id in sorted(members):
            for user in members[room_id]:
                in_children.setdefault(user, []).append(room_id)
        if not in_children:
            return 0
        # Those still joined stay: only the others' events are read.
        joined = await synapse_adapter.joined_users(self._api, parent)
        in_parent = await member_events(
            self._api, parent, [user for user in in_children if user not in joined]
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
        """Reassign one user (``to`` None: back to the main room).

        Read, decided and sent under the parent's lock, from the event read
        there: a break-out that changed since the first read is a 409.
        """
        seen = await self._parents.in_force(parent, [requester, user_id])
        acting = await self._parents.actor(requester, parent, seen.state)
        async with self._parents.lock(parent, "move"):
            found = await self._parents.reread(parent, [requester, user_id], seen)
            running = await self._store.get_running(parent)
            own = await self._parents.own_rooms(parent, found.content)
            self._check_move(parent, user_id, to, found, own)
            previous = [c.room_id for c in found.content.children if user_id in c.users]
            if running is not None:
                assigned = await self._store.assignments.rooms(running.op_id)
                previous += [r for r, us in assigned.items() if user_id in us]
                await self._store.assignments.move_user(running.op_id, user_id, to)
            event = await self._send_moved(parent, acting, found, user_id, to)
            await self._store.set_running_event(parent, event.event_id)
        inviter = running.acting_user if running is not None else None
        errors: list[FailedRoom] = []
        for room_id in sorted(set(previous).intersection(own) - {to}):
            members = await self._api.get_room_state(
                room_id, [("m.room.member", user_id)]
            )
            if member_event_in_room(members.get(("m.room.member", user_id))):
                try:
                    await self.enter(acting, room_id, inviter)
                    await self.remove(acting, user_id, room_id)
                except SynapseError as e:
                    errors.append({"room_id": room_id, **error_json(e)})
        if to is not None:
            errors += await self._move_into(
                acting, inviter, user_id, to, running, found
            )
        OPERATIONS.labels("move", "ok" if not errors else "partial").inc()
        return {
            "event_id": event.event_id,
            "user_id": user_id,
            "from": sorted(set(previous)),
            "to": to,
            "failed": errors,
        }

    def _check_move(
        self,
        parent: str,
        user_id: str,
        to: str | None,
        found: InForce,
        own: frozenset[str],
    ) -> None:
        if to is not None and to not in own:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"to: {to} is not a child room this break-out in {parent} made",
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

    async def _send_moved(
        self, parent: str, acting: str, found: InForce, user_id: str, to: str | None
    ) -> EventBase:
        """The break-out event with ``user_id`` listed under ``to`` only; the
        same event when it leaves the users out (the size rule) and still must."""
        children = tuple(
            attrs.evolve(
                child,
                users=tuple(u for u in child.users if u != user_id)
                + ((user_id,) if child.room_id == to else ()),
            )
            for child in found.content.children
        )
        content = {
            **found.event.content,
            **BreakoutContent(found.content.key, children).to_json(),
        }
        if not fits_in_event(content):
            content = {
                **found.event.content,
                **without_users(BreakoutContent(found.content.key, children)).to_json(),
            }
        if content == found.event.content:
            return found.event
        return await self._parents.send_state(found.event.type, parent, acting, content)

    async def _move_into(
        self,
        acting: str,
        inviter: str | None,
        user_id: str,
        to: str,
        running: RunningBreakout | None,
        found: InForce,
    ) -> list[FailedRoom]:
        mode = running.mode if running is not None else PlacementMode.INVITE
        rule = effective_join_rule(
            await self._api.get_room_state(to, [("m.room.join_rules", "")])
        )
        try:
            await self.enter(acting, to, inviter)
        except SynapseError as e:
            return [{"room_id": to, **error_json(e)}]
        joined = membership(user_id, found.state) == "join"
        error = await self.place(acting, user_id, to, mode, rule, joined)
        return [] if error is None else [{"room_id": to, **error}]
