"""What the host console shows its user: their rooms, and one room's break-out.

Read-only, and never more than the user could read with their own access
token: rooms they are joined to, the members of those rooms, the break-out
events in them and, for a participant, only their own break-out room and the
time left, and in a ``move: choose`` break-out every room with how many are in
it (docs/console.md). Every action goes through the admin API, but a
participant's choice of room (operations/choose.py).

The console polls a room's view every 3 s. Each answer has a ``version``
drawn from a few indexed queries (:meth:`ConsoleView.version`); asked again
with it, an unchanged room answers in those queries alone, whatever its size.
A large room's members come in pages (people.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BREAKOUT_EVENT_TYPES, BreakoutConfig
from synapse_breakout.http.access import Caller, may_host
from synapse_breakout.http.console.people import People
from synapse_breakout.journal.assignment import AssignmentStore
from synapse_breakout.journal.help import HelpStore
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.matrix.content import newest_breakout
from synapse_breakout.matrix.model import PlacementMode
from synapse_breakout.matrix.power import StateMap, membership
from synapse_breakout.operations.describe import Describer
from synapse_breakout.rooms.parent import ParentRooms

#: The console lists at most this many rooms.
MAX_ROOMS = 200
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
        store: OperationStore,
        assignment: AssignmentStore,
        parents: ParentRooms,
        describer: Describer,
        help_requests: HelpStore,
    ):
        self._config = config
        self._api = api
        self._tables = tables
        self._store = store
        self._assignment = assignment
        self._parents = parents
        self._describer = describer
        self._help = help_requests
        self._people = People(api, tables)

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

    async def room(
        self, caller: Caller, room_id: str, since: str | None = None
    ) -> dict[str, Any]:
        """One room as the console shows it to ``caller``; with ``since`` (the
        ``version`` of an earlier answer) and nothing changed, only
        ``{"room_id", "version", "unchanged": true}``.

        Raises:
            SynapseError: 403 when the user is not joined to the room, or it is
                not a console session's own room (404 for an unknown room, to
                server admins only, as in the admin API).
        """
        state = await self._readable_state(caller, room_id)
        version = await self.version(room_id)
        if since is not None and since == version:
            return {"room_id": room_id, "version": version, "unchanged": True}
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
            "version": version,
            "name": room_name(state),
            "user_id": caller.user_id,
            "host": host,
            "active": breakout["active"],
            "ends_at": breakout["ends_at"],
        }
        if not host:
            view["choose"] = await self._choices(caller.user_id, room_id, breakout)
            view["assignment"] = _assignment_view(caller.user_id, breakout)
            return view
        view.update(await self._people.page(room_id, state))
        view["breakout"] = breakout
        if breakout["active"]:
            placed = {u for room in breakout["rooms"] for u in room["users"]}
            placed |= {u for room in members.values() for u in room}
            hosts = {caller.user_id, str(breakout["sender"])}
            view.update(await self._people.main_room(room_id, state, placed, hosts))
        view["help_requests"] = await self._help_requests(room_id, breakout)
        return view

    async def members(
        self, caller: Caller, room_id: str, after: str, search: str
    ) -> dict[str, Any]:
        """A page of the room's members, for a host (a large room's are
        paged and searched, never sent whole)."""
        state = await self._readable_state(caller, room_id)
        if not may_host(caller, state, self._config):
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"only the hosts of {room_id} see its members here",
                Codes.FORBIDDEN,
            )
        return {
            "room_id": room_id,
            **await self._people.page(room_id, state, after, search),
        }

    async def version(self, room_id: str) -> str:
        """What the room's view is made of, in a few indexed queries: the
        current state of the room and its break-out's own rooms, the running
        break-out, an unfinished start's progress, the last help request."""
        running = await self._store.get_running(room_id)
        own = await self._store.rooms_of(running.op_id) if running else []
        unfinished = await self._assignment.unfinished_start(room_id)
        progress = (
            await self._assignment.progress(unfinished, 0) if unfinished else None
        )
        parts = (
            await self._tables.state_position([room_id, *own]),
            attrs.astuple(running) if running else None,
            unfinished,
            sorted(progress.items()) if progress else None,
            await self._help.latest(room_id),
        )
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:32]

    async def _readable_state(self, caller: Caller, room_id: str) -> StateMap:
        """The room's state, as far as its view needs it (never its whole
        membership); 403 unless ``caller`` may look at the room."""
        caller.check_session_room(room_id)
        try:
            state = await self._parents.state(room_id, [caller.user_id])
        except SynapseError:
            if caller.is_admin:
                raise
            state = {}
        if membership(caller.user_id, state) != "join" and not caller.is_admin:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                f"you are not a member of {room_id}",
                Codes.FORBIDDEN,
            )
        names = await self._api.get_room_state(room_id, [("m.room.name", "")])
        return {**state, **names}

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
