"""Users in and out of child rooms, as the acting user: one user invited or
joined (``place``), a moderator entering a room to act there (``enter``),
removals, and the withdrawals and removals of an end.

All best effort: a user who cannot be placed or removed is reported, and the
rest go on (docs/admin_api.md). Each change is a step of the pacer (pacing.py),
in the lane of the break-out it is for (its parent room, ``parent``): many at
once give way to other traffic, and to each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import defer

from synapse_breakout import synapse_adapter
from synapse_breakout.matrix.errors import ErrorJson, error_json
from synapse_breakout.matrix.model import FailedRoom, JoinRule, PlacementMode
from synapse_breakout.matrix.power import member_event_in_room, membership
from synapse_breakout.rooms.pacing import Pacer

logger = logging.getLogger(__name__)


class Memberships:
    """Invites, joins and removals in child rooms, as the acting user."""

    def __init__(self, api: ModuleApi, pacer: Pacer):
        self._api = api
        self._pacer = pacer

    # --- into a child -------------------------------------------------------------

    async def place(
        self,
        parent: str,
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
            async with self._pacer.step(parent):
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
        except defer.CancelledError:
            raise  # the homeserver shuts down: nobody more is placed
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

    async def enter(
        self, parent: str, actor: str, room_id: str, inviter: str | None
    ) -> None:
        """Join ``actor`` (a moderator acting as themselves) to a child room
        they are not in, invited by ``inviter`` (the break-out's acting user,
        who made the room) where the room's join rule asks for it."""
        state = await self._api.get_room_state(room_id, [("m.room.member", actor)])
        if membership(actor, state) == "join":
            return
        async with self._pacer.step(parent):
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
        self, parent: str, actor: str, rooms: Iterable[str], inviter: str | None
    ) -> tuple[list[str], list[FailedRoom]]:
        """:meth:`enter` each of ``rooms``; the rooms ``actor`` is in now, in
        order, and the failures."""
        entered: list[str] = []
        failed: list[FailedRoom] = []
        for room_id in rooms:
            try:
                await self.enter(parent, actor, room_id, inviter)
                entered.append(room_id)
            except SynapseError as e:
                failed.append({"room_id": room_id, **error_json(e)})
        return entered, failed

    # --- out of children ------------------------------------------------------------

    async def remove(self, parent: str, acting: str, user: str, room_id: str) -> None:
        """Make ``user`` leave ``room_id`` (kicked, or invite withdrawn)."""
        async with self._pacer.step(parent):
            await synapse_adapter.update_membership(
                self._api, acting, user, room_id, "leave"
            )

    async def remove_members(self, parent: str, acting: str, room_id: str) -> None:
        """Remove everyone but ``acting`` from a child room (an end may empty
        thousands, one step each)."""
        members = await self._api.get_room_state(room_id, [("m.room.member", None)])
        for (_, user), event in members.items():
            if user != acting and member_event_in_room(event):
                await self.remove(parent, acting, user, room_id)

    async def withdraw_invitations(
        self, parent: str, acting: str, room_id: str
    ) -> None:
        """Withdraw the invitations to a child room that nobody accepted."""
        members = await self._api.get_room_state(room_id, [("m.room.member", None)])
        for (_, user), event in members.items():
            if event.content.get("membership") == "invite":
                await self.remove(parent, acting, user, room_id)
