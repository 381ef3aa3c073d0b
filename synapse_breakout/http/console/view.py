"""What the host console shows its user: their rooms, and one room's break-out.

Read-only, and never more than the user could read with their own access
token: rooms they are joined to, the members of those rooms, the break-out
events in them and, for a participant, only their own break-out room and the
time left (docs/console.md). Every action goes through the admin API.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BREAKOUT_EVENT_TYPES, BreakoutConfig
from synapse_breakout.http.access import Caller, may_host
from synapse_breakout.journal.help import HelpStore
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.matrix.content import newest_breakout
from synapse_breakout.matrix.power import StateMap, membership, user_power_level
from synapse_breakout.operations.describe import Describer
from synapse_breakout.rooms.parent import ParentRooms

#: The console lists at most this many rooms, and members of a room.
MAX_ROOMS = 200
MAX_MEMBERS = 2000
#: The room list looks at this many of the user's joined rooms at most.
MAX_SCANNED = 2000
#: Help requests a host's console shows at most.
MAX_HELP_REQUESTS = 50
_LISTED = ("join", "invite")


@attrs.frozen
class _Membership:
    sender: str
    content: dict[str, Any]


#: The signed-in user's own membership in a room listed as joined.
_JOINED = _Membership("", {"membership": "join"})


def room_name(state: StateMap) -> str | None:
    event = state.get(("m.room.name", ""))
    name = event.content.get("name") if event is not None else None
    return name if isinstance(name, str) and name else None


def members_of(state: StateMap) -> list[dict[str, Any]]:
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
    """The console's read side, for one signed-in caller at a time."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        tables: SynapseTables,
        parents: ParentRooms,
        describer: Describer,
        help_requests: HelpStore,
    ):
        self._config = config
        self._api = api
        self._tables = tables
        self._parents = parents
        self._describer = describer
        self._help = help_requests

    async def rooms(self, caller: Caller) -> dict[str, Any]:
        """The rooms ``caller`` is joined to where they may host or take part:
        one query over their first ``MAX_SCANNED`` rooms (a console session:
        its room only)."""
        user_id = caller.user_id
        wanted = ("m.room.create", "m.room.name", "m.room.power_levels")
        found = await self._tables.member_rooms_state(
            user_id, (*wanted, *BREAKOUT_EVENT_TYPES), MAX_SCANNED
        )
        if caller.session_room is not None:
            found = {k: v for k, v in found.items() if k == caller.session_room}
        listed = []
        for room_id in sorted(found):
            state: dict[tuple[str, str], Any] = {
                (e.type, ""): e for e in found[room_id]
            }
            state[("m.room.member", user_id)] = _JOINED
            _, content = newest_breakout(state)
            active = content is not None and not content.ended
            host = may_host(caller, state, self._config)
            if host or active:
                listed.append(
                    {
                        "room_id": room_id,
                        "name": room_name(state),
                        "host": host,
                        "breakout_active": active,
                    }
                )
            if len(listed) == MAX_ROOMS:
                break
        return {"user_id": user_id, "rooms": listed}

    async def room(self, caller: Caller, room_id: str) -> dict[str, Any]:
        """One room as the console shows it to ``caller``.

        Raises:
            SynapseError: 403 when the user is not joined to the room, or it is
                not a console session's own room (404 for an unknown room, to
                server admins only, as in the admin API).
        """
        caller.check_session_room(room_id)
        user_id = caller.user_id
        try:
            state = await self._parents.state(room_id)
        except SynapseError:
            if caller.is_admin:
                raise
            state = {}
        if membership(user_id, state) != "join" and not caller.is_admin:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"you are not a member of {room_id}",
                Codes.FORBIDDEN,
            )
        host = may_host(caller, state, self._config)
        breakout: dict[str, Any] = dict(await self._describer.describe(room_id))
        # Members of the break-out's own rooms only, in one query: a room
        # listed by hand is no business of the console's.
        own = [r["room_id"] for r in breakout["rooms"] if r["managed"]]
        members = await self._tables.members_of_rooms(own, _LISTED)
        for child in breakout["rooms"]:
            child["members"] = members.get(child["room_id"], {})
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
            view["help_requests"] = await self._help_requests(room_id, breakout)
            return view
        view["assignment"] = _assignment_view(user_id, breakout)
        return view

    async def _help_requests(
        self, parent: str, breakout: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The help requests of the running break-out, from the module's own
        record: who asked, from which room, when (never a message that only
        looks like one)."""
        if not breakout["active"] or breakout["started_at"] is None:
            return []
        names = {r["room_id"]: r["name"] for r in breakout["rooms"]}
        return [
            {
                "user_id": asked.user_id,
                "room_id": asked.room_id,
                "room_name": names.get(asked.room_id),
                "asked_at": asked.asked_ts,
                "event_id": asked.event_id,
            }
            for asked in await self._help.recent(
                parent, breakout["started_at"], MAX_HELP_REQUESTS
            )
        ]


def _assignment_view(user_id: str, breakout: dict[str, Any]) -> dict[str, Any] | None:
    """A participant's own break-out room, if they have one."""
    mine = assignment_of(user_id, breakout["rooms"]) if breakout["active"] else None
    if mine is None:
        return None
    return {
        "room_id": mine["room_id"],
        "name": mine["name"],
        "via": mine["via"],
        "membership": mine["members"].get(user_id),
    }
