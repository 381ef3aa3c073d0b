"""Rooms: child room versions, which rooms exist, the rooms a user made, and
room locks of other processes (Synapse internals: see the package's docstring)."""

from __future__ import annotations

from collections.abc import Iterable

from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction, make_in_list_sql_clause

#: The version of child rooms when the parent's cannot have a "restricted" rule.
DEFAULT_CHILD_VERSION = "12"


def creators_outrank_everyone(room_version: str) -> bool:
    """Whether the room version gives its creators unlimited power (MSC4289).

    Why internal: the module API does not describe room versions; Synapse's
    ``KNOWN_ROOM_VERSIONS`` is where their rules live. An unknown version
    answers False (the rules of the versions before 12).
    """
    known = KNOWN_ROOM_VERSIONS.get(room_version)
    return known is not None and known.msc4289_creator_power_enabled


def child_room_version(parent_version: str) -> str:
    """The version of a child room: its parent's, if it allows "restricted".

    Why internal: as ``creators_outrank_everyone``. A version too old for
    "restricted" (or unknown here) gives ``DEFAULT_CHILD_VERSION``.
    """
    known = KNOWN_ROOM_VERSIONS.get(parent_version)
    if known is None or not known.restricted_join_rule:
        return DEFAULT_CHILD_VERSION
    return parent_version


def _known_rooms_txn(txn: LoggingTransaction, room_ids: list[str]) -> set[str]:
    clause, args = make_in_list_sql_clause(txn.database_engine, "room_id", room_ids)
    txn.execute(
        "SELECT DISTINCT room_id FROM state_events"
        f" WHERE type = 'm.room.create' AND state_key = '' AND {clause}",
        args,
    )
    return {row[0] for row in txn}


def _existing_rooms_txn(txn: LoggingTransaction, room_ids: list[str]) -> set[str]:
    clause, args = make_in_list_sql_clause(txn.database_engine, "room_id", room_ids)
    txn.execute(f"SELECT room_id FROM rooms WHERE {clause}", args)
    return {row[0] for row in txn}


async def existing_rooms(api: ModuleApi, room_ids: Iterable[str]) -> set[str]:
    """The rooms among ``room_ids`` that Synapse still has (not purged).

    Why internal: a purged room, or an empty shell a crash left, has no state
    for ``get_room_state`` to show; only Synapse's ``rooms`` table says whether
    the room is still registered. One query for all of them.
    """
    wanted = sorted(set(room_ids))
    if not wanted:
        return set()
    return await api.run_db_interaction(
        "breakout_existing_rooms", _existing_rooms_txn, wanted
    )


async def rooms_with_create_event(api: ModuleApi, room_ids: Iterable[str]) -> set[str]:
    """The rooms among ``room_ids`` whose create event this server holds.

    Why internal: the module API can only look up one room at a time
    (``get_room_state``, and it raises for unknown rooms); a break-out lists up
    to ``max_child_rooms`` children and must cost one query, whatever their
    number. So this reads Synapse's ``state_events`` table, which holds every
    state event the server has stored, through the public
    ``run_db_interaction``.
    """
    wanted = sorted(set(room_ids))
    if not wanted:
        return set()
    return await api.run_db_interaction(
        "breakout_rooms_with_create_event", _known_rooms_txn, wanted
    )


def _created_rooms_txn(
    txn: LoggingTransaction, sender: str, since_ts: int
) -> list[str]:
    txn.execute(
        "SELECT room_id FROM events WHERE type = 'm.room.create' AND sender = ?"
        " AND origin_server_ts >= ?",
        (sender, since_ts),
    )
    return [row[0] for row in txn]


async def rooms_created_by(api: ModuleApi, sender: str, since_ts: int) -> list[str]:
    """Rooms whose create event ``sender`` sent at or after ``since_ts`` (ms).

    Why internal: a crash can fall between Synapse persisting a child room's
    create event and the module journalling the room; recovery finds such
    rooms by their creator and creation time (then checks the operation marker
    in their create event through the public ``get_room_state``). No module
    API lists rooms by creator.
    """
    return await api.run_db_interaction(
        "breakout_rooms_created_by", _created_rooms_txn, sender, since_ts
    )


def _release_locks_txn(
    txn: LoggingTransaction, room_ids: list[str], instance_id: str
) -> int:
    clause, args = make_in_list_sql_clause(txn.database_engine, "lock_key", room_ids)
    txn.execute(
        f"DELETE FROM worker_read_write_locks WHERE {clause} AND instance_name != ?",
        [*args, instance_id],
    )
    return txn.rowcount


async def release_other_processes_room_locks(
    api: ModuleApi, room_ids: Iterable[str]
) -> int:
    """Drop the room locks other processes hold on rooms of a dead operation.

    Why internal: a process killed while sending an event into a room leaves
    its read lock on that room in Synapse's ``worker_read_write_locks`` table
    until the lock times out (2 minutes), and purging the room waits for it.
    The rooms here belong to an operation whose process is gone: no live
    process has a reason to hold a lock on them, so their locks are dropped
    (as Synapse's own reaper drops stale ones: a plain delete; its triggers
    tidy the rest) and the purge can start at once. Locks of this process are
    kept. No module API touches locks.

    Returns:
        How many locks were dropped.
    """
    wanted = sorted(set(room_ids))
    if not wanted:
        return 0
    return await api.run_db_interaction(
        "breakout_release_room_locks",
        _release_locks_txn,
        wanted,
        api._hs.get_instance_id(),
    )
