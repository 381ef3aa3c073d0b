"""What the host console shows its user: their rooms, and one room's break-out.

Read-only, and never more than the user could read with their own access
token: rooms they are joined to, the members of those rooms, the break-out
events in them and, for a participant, only their own break-out room and the
time left, and in a ``move: choose`` break-out every room with how many are in
it (docs/console.md). Every action goes through the admin API, but a
participant's choice of room (operations/choose.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BREAKOUT_EVENT_TYPES, BreakoutConfig
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.matrix.content import current_breakout
from synapse_breakout.matrix.model import PlacementMode
from synapse_breakout.matrix.power import membership, user_power_level
from synapse_breakout.operations.describe import Describer
from synapse_breakout.rooms.parent import ParentRooms

#: The console lists at most this many rooms, and members of a room.
MAX_ROOMS = 200
MAX_MEMBERS = 2000
_LISTED = ("join", "invite")


def room_name(state: StateMap[EventBase]) -> str | None:
    event = state.get(("m.room.name", ""))
    name = event.content.get("name") if event is not None else None
    return name if isinstance(name, str) and name else None


def members_of(state: StateMap[EventBase]) -> list[dict[str, Any]]:
    """The joined and invited members in ``state``, joined first, by ID."""
    members = []
    for (kind, user_id), event in state.items():
        value = event.content.get("membership")
        if kind != "m.room.member" or value not in _LISTED:
            continue
        name = event.content.get("displayname")
        members.append(
            {
                "user_id": user_id,
                "display_name": name if isinstance(name, str) else None,
                "membership": value,
                "power_level": user_power_level(user_id, state),
            }
        )
    members.sort(key=lambda m: (_LISTED.index(m["membership"]), m["user_id"]))
    return members[:MAX_MEMBERS]


def assignment_of(
    user_id: str, rooms: list[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The break-out room ``user_id`` is assigned to, by its users or members."""
    for room in rooms:
        if user_id in room.get("users", ()):
            return room
    for room in rooms:
        if room.get("members", {}).get(user_id) in _LISTED:
            return room
    return None


class ConsoleView:
    """The console's read side, for one signed-in user at a time."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        parents: ParentRooms,
        describer: Describer,
        store: OperationStore,
    ):
        self._config = config
        self._api = api
        self._parents = parents
        self._describer = describer
        self._store = store

    def _may_host(
        self, user_id: str, is_admin: bool, state: StateMap[EventBase]
    ) -> bool:
        """Whether the admin API lets ``user_id`` run break-outs in this room."""
        if not self._config.admin_api.enabled:
            return False
        if is_admin:
            return True
        return (
            self._config.admin_api.allow_room_moderators
            and self._parents.is_moderator(user_id, state)
        )

    async def rooms(self, user_id: str) -> dict[str, Any]:
        """The rooms ``user_id`` is joined to where they may host or take part."""
        is_admin = await self._api.is_user_admin(user_id)
        wanted = [
            ("m.room.create", ""),
            ("m.room.name", ""),
            ("m.room.power_levels", ""),
            ("m.room.member", user_id),
            *((t, "") for t in BREAKOUT_EVENT_TYPES),
        ]
        listed = []
        for room_id in sorted(await synapse_adapter.joined_rooms(self._api, user_id)):
            state = await self._api.get_room_state(room_id, wanted)
            current = current_breakout(state)
            host = self._may_host(user_id, is_admin, state)
            if not host and not current.in_force:
                continue
            listed.append(
                {
                    "room_id": room_id,
                    "name": room_name(state),
                    "host": host,
                    "breakout_active": current.in_force,
                }
            )
            if len(listed) == MAX_ROOMS:
                break
        return {"user_id": user_id, "rooms": listed}

    async def _child_members(self, room_id: str) -> dict[str, str]:
        try:
            state = await self._api.get_room_state(room_id, [("m.room.member", None)])
        except SynapseError:
            return {}
        found = {}
        for (_, member), event in state.items():
            value = event.content.get("membership")
            if isinstance(value, str):
                found[member] = value
        return found

    async def room(self, user_id: str, room_id: str) -> dict[str, Any]:
        """One room as the console shows it to ``user_id``.

        Raises:
            SynapseError: 403 when the user is not joined to the room (404 for
                an unknown room, to server admins only, as in the admin API).
        """
        is_admin = await self._api.is_user_admin(user_id)
        try:
            state = await self._parents.state(room_id)
        except SynapseError:
            if is_admin:
                raise
            state = {}
        if membership(user_id, state) != "join" and not is_admin:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"you are not a member of {room_id}",
                Codes.FORBIDDEN,
            )
        host = self._may_host(user_id, is_admin, state)
        breakout: dict[str, Any] = dict(await self._describer.describe(room_id))
        for child in breakout["rooms"]:
            child["members"] = await self._child_members(child["room_id"])
        view: dict[str, Any] = {
            "room_id": room_id,
            "name": room_name(state),
            "user_id": user_id,
            "host": host,
            "active": breakout["active"],
            "ends_at": breakout["ends_at"],
        }
        if host:
            view["members"] = members_of(state)
            view["breakout"] = breakout
            return view

        mine = assignment_of(user_id, breakout["rooms"]) if breakout["active"] else None
        view["choose"] = await self._choices(user_id, room_id, breakout)
        view["assignment"] = (
            None
            if mine is None
            else {
                "room_id": mine["room_id"],
                "name": mine["name"],
                "via": mine["via"],
                "membership": mine["members"].get(user_id),
            }
        )
        return view

    async def _choices(
        self, user_id: str, parent: str, breakout: Mapping[str, Any]
    ) -> list[dict[str, Any]] | None:
        """In a running ``move: choose`` break-out, every own room with how
        many are in it (the members a capacity counts), its capacity, whether
        it is full and whether ``user_id`` is in it; None in any other."""
        running = await self._store.get_running(parent)
        if not breakout["active"] or running is None:
            return None
        if running.mode is not PlacementMode.CHOOSE:
            return None
        return [
            {
                "room_id": room["room_id"],
                "name": room["name"],
                "via": room["via"],
                "members": room["counted_members"],
                "capacity": room["capacity"],
                "full": room["capacity"] is not None
                and (room["counted_members"] or 0) >= room["capacity"],
                "mine": room["members"].get(user_id) == "join",
            }
            for room in breakout["rooms"]
            if room["managed"]
        ]
