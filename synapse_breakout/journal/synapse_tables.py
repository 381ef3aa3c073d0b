"""Reads (and one delete) of Synapse's own tables, where the module API has no
way to the answer, or only one that costs a query per room or event.

Every query goes through the public ``ModuleApi.run_db_interaction``, one
``_txn`` function each with its own description. Synapse's schema is one of
its internals: each method says why it reads it, and
``tests/test_synapse_tables.py`` runs every query against the installed
Synapse (CI: the lowest and the newest supported release, SQLite and
PostgreSQL). The Synapse code the module calls is in synapse_adapter.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi

#: Values in one ``IN (...)`` list, far below SQLite's variable limit.
CHUNK = 500


@attrs.frozen
class JsonEvent:
    """A current state event read from ``event_json``: what the pure rules of
    matrix/ read of an event (``StateEvent``), and the order of two events."""

    event_id: str
    type: str
    sender: str
    content: dict[str, Any]
    depth: int
    origin_server_ts: int


def _in(column: str, values: Sequence[Any]) -> str:
    return f"{column} IN ({', '.join('?' for _ in values)})"


def _chunks(values: Iterable[str]) -> list[list[str]]:
    ordered = sorted(set(values))
    return [ordered[i : i + CHUNK] for i in range(0, len(ordered), CHUNK)]


def _existing_rooms_txn(txn: LoggingTransaction, rooms: list[list[str]]) -> set[str]:
    found: set[str] = set()
    for chunk in rooms:
        txn.execute(f"SELECT room_id FROM rooms WHERE {_in('room_id', chunk)}", chunk)
        found.update(row[0] for row in txn)
    return found


def _created_txn(txn: LoggingTransaction, rooms: list[list[str]]) -> set[str]:
    found: set[str] = set()
    for chunk in rooms:
        txn.execute(
            "SELECT DISTINCT room_id FROM state_events WHERE type = 'm.room.create'"
            f" AND state_key = '' AND {_in('room_id', chunk)}",
            chunk,
        )
        found.update(row[0] for row in txn)
    return found


def _members_txn(
    txn: LoggingTransaction, rooms: list[list[str]], kinds: list[str]
) -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for chunk in rooms:
        txn.execute(
            "SELECT room_id, state_key, membership FROM current_state_events"
            f" WHERE type = 'm.room.member' AND {_in('room_id', chunk)}"
            f" AND {_in('membership', kinds)}",
            [*chunk, *kinds],
        )
        found.extend((row[0], row[1], row[2]) for row in txn)
    return found


def _rooms_created_by_txn(
    txn: LoggingTransaction, sender: str, since_ts: int
) -> set[str]:
    txn.execute(
        "SELECT room_id FROM events WHERE type = 'm.room.create' AND sender = ?"
        " AND origin_server_ts >= ?",
        (sender, since_ts),
    )
    return {row[0] for row in txn}


def _stored_events_txn(
    txn: LoggingTransaction, events: list[list[str]], rejected: bool
) -> set[str]:
    test = "EXISTS" if rejected else "NOT EXISTS"
    found: set[str] = set()
    for chunk in events:
        txn.execute(
            f"SELECT e.event_id FROM events e WHERE {_in('e.event_id', chunk)} AND"
            f" {test} (SELECT 1 FROM rejections r WHERE r.event_id = e.event_id)",
            chunk,
        )
        found.update(row[0] for row in txn)
    return found


def _release_locks_txn(
    txn: LoggingTransaction, rooms: list[list[str]], instance: str
) -> int:
    dropped = 0
    for chunk in rooms:
        txn.execute(
            "DELETE FROM worker_read_write_locks"
            f" WHERE {_in('lock_key', chunk)} AND instance_name != ?",
            [*chunk, instance],
        )
        dropped += txn.rowcount
    return dropped


def _openid_txn(
    txn: LoggingTransaction, token: str, now: int
) -> tuple[str, int] | None:
    txn.execute(
        "SELECT user_id, ts_valid_until_ms FROM open_id_tokens"
        " WHERE token = ? AND ts_valid_until_ms >= ?",
        (token, now),
    )
    row = txn.fetchone()
    return (str(row[0]), int(row[1])) if row else None


def _password_hash_txn(txn: LoggingTransaction, user_id: str) -> str:
    txn.execute("SELECT password_hash FROM users WHERE name = ?", (user_id,))
    row = txn.fetchone()
    return str(row[0]) if row and row[0] else ""


def _member_rooms_state_txn(
    txn: LoggingTransaction, user_id: str, types: list[str], rooms: int
) -> list[tuple[str, str]]:
    txn.execute(
        "SELECT c.room_id, j.json FROM current_state_events c"
        " JOIN event_json j ON j.event_id = c.event_id"
        " WHERE c.state_key = '' AND " + _in("c.type", types) + " AND c.room_id IN"
        " (SELECT m.room_id FROM local_current_membership m"
        " WHERE m.user_id = ? AND m.membership = 'join'"
        " ORDER BY m.room_id LIMIT ?)",
        [*types, user_id, rooms],
    )
    return [(row[0], row[1]) for row in txn]


def _state_position_txn(txn: LoggingTransaction, rooms: list[list[str]]) -> int:
    latest = 0
    for chunk in rooms:
        txn.execute(
            "SELECT MAX(stream_id) FROM current_state_delta_stream"
            f" WHERE {_in('room_id', chunk)}",
            chunk,
        )
        row = txn.fetchone()
        latest = max(latest, int(row[0]) if row and row[0] is not None else 0)
    return latest


def _member_page_txn(
    txn: LoggingTransaction, room_id: str, after: str, search: str, limit: int
) -> tuple[int, list[tuple[str, str, str | None]]]:
    members = (
        "FROM current_state_events c JOIN room_memberships m ON m.event_id = c.event_id"
        " WHERE c.room_id = ? AND c.type = 'm.room.member'"
        " AND c.membership IN ('join', 'invite')"
    )
    txn.execute(f"SELECT COUNT(*) {members}", (room_id,))
    row = txn.fetchone()
    total = int(row[0]) if row else 0
    args: list[Any] = [room_id, after]
    matching = ""
    if search:
        matching = " AND (LOWER(c.state_key) LIKE ? OR LOWER(m.display_name) LIKE ?)"
        pattern = "%" + search.lower().replace("%", "").replace("_", "") + "%"
        args += [pattern, pattern]
    txn.execute(
        f"SELECT c.state_key, c.membership, m.display_name {members}"
        f" AND c.state_key > ?{matching} ORDER BY c.state_key LIMIT ?",
        (*args, limit),
    )
    return total, [(row[0], row[1], row[2]) for row in txn]


def _json_event(raw: str) -> JsonEvent | None:
    event = json.loads(raw)
    if not isinstance(event, dict) or not isinstance(event.get("content"), dict):
        return None
    return JsonEvent(
        event_id=str(event.get("event_id", "")),
        type=str(event.get("type")),
        sender=str(event.get("sender")),
        content=event["content"],
        depth=int(event.get("depth", 0)),
        origin_server_ts=int(event.get("origin_server_ts", 0)),
    )


class SynapseTables:
    """The module's reads of Synapse's tables, one query each."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def existing_rooms(self, room_ids: Iterable[str]) -> set[str]:
        """The rooms among ``room_ids`` that Synapse still has (not purged).

        Why: a purged room, or an empty shell a crash left, has no state for
        ``get_room_state`` to show; only the ``rooms`` table says whether the
        room is still registered.
        """
        rooms = _chunks(room_ids)
        if not rooms:
            return set()
        return await self._api.run_db_interaction(
            "breakout_existing_rooms", _existing_rooms_txn, rooms
        )

    async def rooms_with_create_event(self, room_ids: Iterable[str]) -> set[str]:
        """The rooms among ``room_ids`` whose create event this server holds.

        Why: ``get_room_state`` looks up one room at a time (and raises for
        unknown rooms); a break-out event lists up to ``max_child_rooms``
        children and its check must cost one query, whatever their number.
        """
        rooms = _chunks(room_ids)
        if not rooms:
            return set()
        return await self._api.run_db_interaction(
            "breakout_rooms_with_create_event", _created_txn, rooms
        )

    async def members_of_rooms(
        self, room_ids: Iterable[str], memberships: Collection[str]
    ) -> dict[str, dict[str, str]]:
        """Who has one of ``memberships`` in each of ``room_ids`` now:
        ``{room_id: {user_id: membership}}``, rooms without any left out.

        Why: ``get_room_state`` loads every member event of one room; the
        ejection check (every child of every break-out, each 5 s) took about a
        second of the reactor every 5 s at 5,000 users (docs/performance.md).
        ``current_state_events`` has each current membership in a column,
        which Synapse's room member store reads the same way.
        """
        rooms = _chunks(room_ids)
        if not rooms or not memberships:
            return {}
        found: dict[str, dict[str, str]] = {}
        for room_id, user_id, membership in await self._api.run_db_interaction(
            "breakout_members_of_rooms", _members_txn, rooms, sorted(memberships)
        ):
            found.setdefault(room_id, {})[user_id] = membership
        return found

    async def rooms_created_by(self, sender: str, since_ts: int) -> set[str]:
        """Rooms whose create event ``sender`` sent at or after ``since_ts``.

        Why: a crash can fall between Synapse storing a child room's create
        event and the journal recording the room; recovery finds such rooms by
        creator and time (then checks the operation's marker in their create
        event through ``get_room_state``). No module API lists rooms by creator.
        """
        return await self._api.run_db_interaction(
            "breakout_rooms_created_by", _rooms_created_by_txn, sender, since_ts
        )

    async def stored_events(
        self, event_ids: Iterable[str], rejected: bool = False
    ) -> set[str]:
        """The events among ``event_ids`` that Synapse stored and did not
        reject (``rejected``: that it stored as rejected).

        Why: the spam-checker hook runs before Synapse authorises an event,
        and no module API tells an event's outcome (the ``rejections`` table).
        """
        events = _chunks(event_ids)
        if not events:
            return set()
        return await self._api.run_db_interaction(
            "breakout_stored_events", _stored_events_txn, events, rejected
        )

    async def release_room_locks(self, room_ids: Iterable[str], instance: str) -> int:
        """Drop the locks processes other than ``instance`` hold on
        ``room_ids`` (a dead operation's rooms); how many were dropped.

        Why: a process killed while sending into a room leaves its lock in
        ``worker_read_write_locks`` for 2 minutes, and purging the room waits
        for it. No live process has a reason to lock a dead operation's rooms,
        so they are dropped as Synapse's own reaper drops stale ones (a plain
        delete). No module API touches locks.
        """
        rooms = _chunks(room_ids)
        if not rooms:
            return 0
        return await self._api.run_db_interaction(
            "breakout_release_room_locks", _release_locks_txn, rooms, instance
        )

    async def openid_token(self, token: str) -> tuple[str, int] | None:
        """(user ID, valid until, ms) of a valid OpenID token of this server.

        Why: the public check, the federation endpoint
        ``/_matrix/federation/v1/openid/userinfo``, is one the server often
        cannot reach itself (behind a proxy, another port, federation off), and
        it does not say how old the token is. This reads the same
        ``open_id_tokens`` row that endpoint reads.
        """
        return await self._api.run_db_interaction(
            "breakout_openid_token",
            _openid_txn,
            token,
            self._api.get_current_time_msec(),
        )

    async def password_mark(self, user_id: str) -> str:
        """A digest of the user's password hash now ("" without a password).

        Why: a console session ends when its user's password changes, also
        when no device was logged out (``logout_devices: false``, or only the
        device that changed it); no module API tells of a password change. The
        hash itself never leaves this method.
        """
        secret = await self._api.run_db_interaction(
            "breakout_password_mark", _password_hash_txn, user_id
        )
        return hashlib.sha256(secret.encode("utf-8")).hexdigest() if secret else ""

    async def state_position(self, room_ids: Iterable[str]) -> int:
        """A number that grows with every change of the current state of any
        of ``room_ids`` (0 for none): one indexed query.

        Why: the console asks every 3 s whether anything changed; reading the
        rooms' state to find out costs what answering does (a 10,000-member
        parent's member list). ``current_state_delta_stream`` records every
        change of a room's current state, by stream position.
        """
        rooms = _chunks(room_ids)
        if not rooms:
            return 0
        return await self._api.run_db_interaction(
            "breakout_state_position", _state_position_txn, rooms
        )

    async def member_page(
        self, room_id: str, after: str, search: str, limit: int
    ) -> tuple[int, list[tuple[str, str, str | None]]]:
        """(how many are joined or invited, a page of them): (user ID,
        membership, display name) by user ID after ``after``, whose ID or name
        contains ``search`` (any case).

        Why: the module API reads a room's members as every member event; a
        10,000-member parent's console shows a page and a search.
        ``room_memberships`` keeps each membership event's display name.
        """
        return await self._api.run_db_interaction(
            "breakout_member_page", _member_page_txn, room_id, after, search, limit
        )

    async def member_rooms_state(
        self, user_id: str, types: Collection[str], rooms: int
    ) -> dict[str, list[JsonEvent]]:
        """The current state events of ``types`` (state key "") of the first
        ``rooms`` rooms (by ID) a local user is joined to.

        Why: the console lists the rooms where its user may host or take part
        (docs/console.md); through the module API that is one
        ``get_room_state`` per joined room (3 s for a user in 2,500 rooms).
        This is one query on ``local_current_membership``,
        ``current_state_events`` and ``event_json``.
        """
        found: dict[str, list[JsonEvent]] = {}
        for room_id, raw in await self._api.run_db_interaction(
            "breakout_member_rooms_state",
            _member_rooms_state_txn,
            user_id,
            sorted(types),
            rooms,
        ):
            event = _json_event(raw)
            if event is not None:
                found.setdefault(room_id, []).append(event)
        return found
