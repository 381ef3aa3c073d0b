"""Room capacity (``room_capacity``): which own rooms take how many members,
and the places local joins take in them (docs/rules.md, "Room capacity").

A start records each own room's capacity in the transaction that records the
room (operations.py, ``record_room``), before anyone but its creator can know
the room's ID. Whether a room is capped is asked on every membership event of
every room (the event rules' shortcut, hooks/room_capacity.py), so the answer
is cached in each process (a room's capacity never changes once recorded; the
creating process forgets the answer its creator's own join cached).

A join takes a *place* (``breakout_seats``) in the transaction that decides
it: claims for one room take turns on the room's row (the ``UPDATE`` of
``claims`` locks it until the commit; on PostgreSQL a claim that waited is
retried by Synapse with a fresh view), so of two joins racing for the last
place, on one process or on two workers, one gets it. A place counts until the
join shows in the room's state (it is then counted as a joined member), for
``SEAT_HOLD_MS`` at most if the join never gets through, and is given back by
the member's leave.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from typing import Any, cast

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi

#: How long a place taken by a join that does not show in the room's state
#: still counts (the join is on its way to the event persister, or failed).
SEAT_HOLD_MS = 60_000


@attrs.frozen
class CappedRoom:
    """An own room of a start with a ``room_capacity``."""

    op_id: str
    parent_room_id: str
    capacity: int


def insert_capacity_txn(
    txn: LoggingTransaction, room_id: str, op_id: str, parent: str, capacity: int
) -> None:
    """Record that ``room_id`` (made by ``op_id`` for ``parent``) takes
    ``capacity`` members."""
    txn.execute(
        "INSERT INTO breakout_room_capacity"
        " (room_id, op_id, parent_room_id, capacity) VALUES (?, ?, ?, ?)",
        (room_id, op_id, parent, capacity),
    )


def _capped_txn(txn: LoggingTransaction, room_id: str) -> CappedRoom | None:
    txn.execute(
        "SELECT op_id, parent_room_id, capacity FROM breakout_room_capacity"
        " WHERE room_id = ?",
        (room_id,),
    )
    row = txn.fetchone()
    return CappedRoom(row[0], row[1], row[2]) if row else None


def _capacities_txn(txn: LoggingTransaction, op_id: str) -> dict[str, int]:
    txn.execute(
        "SELECT room_id, capacity FROM breakout_room_capacity WHERE op_id = ?",
        (op_id,),
    )
    return {room_id: capacity for room_id, capacity in txn}


def _claim_txn(
    txn: LoggingTransaction,
    room_id: str,
    user_id: str,
    members: Collection[str],
    capacity: int,
    now: int,
) -> int | None:
    """Take a place for ``user_id``; None, or how many places are taken when
    none is left. ``members``: the others counted as joined."""
    # Claims for one room take turns: this row stays locked until the commit.
    txn.execute(
        "UPDATE breakout_room_capacity SET claims = claims + 1 WHERE room_id = ?",
        (room_id,),
    )
    txn.execute(
        "DELETE FROM breakout_seats WHERE room_id = ? AND taken_ts < ?",
        (room_id, now - SEAT_HOLD_MS),
    )
    txn.execute(
        "SELECT user_id FROM breakout_seats WHERE room_id = ? AND user_id <> ?",
        (room_id, user_id),
    )
    taken = set(members).union(row[0] for row in txn)
    if len(taken) >= capacity:
        return len(taken)
    txn.execute(
        "INSERT INTO breakout_seats (room_id, user_id, taken_ts) VALUES (?, ?, ?)"
        " ON CONFLICT (room_id, user_id) DO UPDATE SET taken_ts = excluded.taken_ts",
        (room_id, user_id, now),
    )
    return None


def _release_txn(txn: LoggingTransaction, room_id: str, user_id: str) -> None:
    txn.execute(
        "DELETE FROM breakout_seats WHERE room_id = ? AND user_id = ?",
        (room_id, user_id),
    )


class _CappedRooms:
    """What this process knows of which rooms are capped: a bounded cache of
    :func:`_capped_txn`'s answers, registered with Synapse so that a start on
    any process drops a room's entry on every process (the module API's
    ``register_cached_function`` and ``invalidate_cache`` call
    ``invalidate``)."""

    __name__ = "capped_rooms"

    def __init__(self, api: ModuleApi, max_entries: int = 50_000):
        self._api = api
        self._max = max_entries
        self._known: OrderedDict[str, CappedRoom | None] = OrderedDict()
        #: Bumped by every invalidation: a lookup that began before one is
        #: not kept (it may have read the room before its start recorded it).
        self._epoch = 0

    async def __call__(self, room_id: str) -> CappedRoom | None:
        if room_id in self._known:
            self._known.move_to_end(room_id)
            return self._known[room_id]
        epoch = self._epoch
        found = await self._api.run_db_interaction(
            "breakout_capped_room", _capped_txn, room_id
        )
        if epoch == self._epoch:
            self._known[room_id] = found
            if len(self._known) > self._max:
                self._known.popitem(last=False)
        return found

    def invalidate(self, keys: tuple[str, ...]) -> None:
        self._epoch += 1
        self._known.pop(keys[0], None)

    def invalidate_all(self) -> None:
        self._epoch += 1
        self._known.clear()


class CapacityStore:
    """The capped rooms and their places."""

    def __init__(self, api: ModuleApi):
        self._api = api
        self._capped = _CappedRooms(api)
        # Typed as Any: Synapse types it as its own @cached functions.
        self._registered = cast(Any, self._capped)
        api.register_cached_function(self._registered)

    async def capped(self, room_id: str) -> CappedRoom | None:
        """The room's capacity, if it is an own room of a start with one;
        cached (no database access once this process asked about the room)."""
        return await self._capped(room_id)

    async def forget(self, room_id: str) -> None:
        """Drop what this process and the others cached of ``room_id``: a
        start just recorded it (its creator's join asked before)."""
        await self._api.invalidate_cache(self._registered, (room_id,))

    async def of_operation(self, op_id: str) -> dict[str, int]:
        """The capacity of each own room of ``op_id`` that has one."""
        return await self._api.run_db_interaction(
            "breakout_capacities", _capacities_txn, op_id
        )

    async def claim(
        self, room_id: str, user_id: str, members: Collection[str], capacity: int
    ) -> int | None:
        """Take a place in ``room_id`` for ``user_id``; None when taken, else
        how many places are taken (the room is full).

        Args:
            members: the joined members counted against the capacity, but
                ``user_id``, as the join's room state has them.
        """
        return await self._api.run_db_interaction(
            "breakout_claim_place",
            _claim_txn,
            room_id,
            user_id,
            members,
            capacity,
            self._api.get_current_time_msec(),
        )

    async def release(self, room_id: str, user_id: str) -> None:
        """``user_id`` leaves ``room_id``: their place is free again."""
        await self._api.run_db_interaction(
            "breakout_release_place", _release_txn, room_id, user_id
        )
