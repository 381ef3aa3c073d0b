"""``POST /rooms/{parentRoomId}/move``: one user reassigned to another child
room, or back to the main room (docs/admin_api.md).

The journal's assignment and the break-out event change under the parent's
lock, from the event read there (a break-out that changed since the first read
is a 409); then the user leaves their previous own rooms and is invited or
joined into the new one as the start's ``move`` says. Best effort: each room
that fails is reported.
"""

from __future__ import annotations

from http import HTTPStatus

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.assignment import AssignmentStore
from synapse_breakout.journal.locks import ParentLocks
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import RunningBreakout
from synapse_breakout.matrix.content import (
    BreakoutContent,
    fits_in_event,
    without_users,
)
from synapse_breakout.matrix.errors import error_json
from synapse_breakout.matrix.model import FailedRoom, PlacementMode, ReassignAnswer
from synapse_breakout.matrix.power import (
    effective_join_rule,
    joined_or_invited,
    member_event_in_room,
    membership,
)
from synapse_breakout.metrics import OPERATIONS
from synapse_breakout.rooms.acting import ActingUsers
from synapse_breakout.rooms.breakout_event import BreakoutEvents
from synapse_breakout.rooms.memberships import Memberships
from synapse_breakout.rooms.parent import InForce, ParentRooms


class Mover:
    """Reassigns users of a running break-out."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        assignment: AssignmentStore,
        locks: ParentLocks,
        parents: ParentRooms,
        acting: ActingUsers,
        events: BreakoutEvents,
        memberships: Memberships,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._assignment = assignment
        self._locks = locks
        self._parents = parents
        self._acting = acting
        self._events = events
        self._memberships = memberships

    async def reassign(
        self, requester: str, parent: str, user_id: str, to: str | None
    ) -> ReassignAnswer:
        """Reassign one user (``to`` None: back to the main room).

        Read, decided and sent under the parent's lock, from the event read
        there: a break-out that changed since the first read is a 409.
        """
        seen = await self._parents.in_force(parent, [requester, user_id])
        acting = await self._acting.actor(requester, parent, seen.state)
        async with self._locks.hold(parent, "move"):
            found = await self._parents.reread(parent, [requester, user_id], seen)
            running = await self._store.get_running(parent)
            own = await self._parents.own_rooms(parent, found.content)
            self._check_move(parent, user_id, to, found, own)
            previous = [c.room_id for c in found.content.children if user_id in c.users]
            if running is not None:
                assigned = await self._assignment.rooms(running.op_id)
                previous += [r for r, us in assigned.items() if user_id in us]
                await self._assignment.move_user(running.op_id, user_id, to)
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
                    await self._memberships.enter(parent, acting, room_id, inviter)
                    await self._memberships.remove(parent, acting, user_id, room_id)
                except SynapseError as e:
                    errors.append({"room_id": room_id, **error_json(e)})
        if to is not None:
            errors += await self._move_into(
                parent, acting, inviter, user_id, to, running, found
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
        return await self._events.send(found.event.type, parent, acting, content)

    async def _move_into(
        self,
        parent: str,
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
            await self._memberships.enter(parent, acting, to, inviter)
        except SynapseError as e:
            return [{"room_id": to, **error_json(e)}]
        joined = membership(user_id, found.state) == "join"
        error = await self._memberships.place(
            parent, acting, user_id, to, mode, rule, joined
        )
        return [] if error is None else [{"room_id": to, **error}]
