"""Plans (``breakout_plans``): break-outs prepared before a session, and the
last break-out of a parent as it stood at its end, read from the journal
(operations/plans.py).

A plan is stored as the start request's JSON fields it fixes, checked before
it is stored; at most ``max_plans_per_room`` a parent, counted in the
transaction that stores one. Plans of a parent Synapse purged are deleted by
the retention loop (retention.py).
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_breakout.journal.rows import OperationState


@attrs.frozen
class StoredPlan:
    """A plan as stored."""

    parent_room_id: str
    plan_id: str
    name: str
    #: The start request's fields the plan fixes (``rooms`` or
    #: ``auto_assign``, ``join_rule``, ``move``, ...), as JSON.
    fields: dict[str, Any]
    created_ts: int
    updated_ts: int


@attrs.frozen
class EndedBreakout:
    """The most recent break-out of a parent that ended, from the journal:
    its rooms in order, each with its name and its users at the end."""

    op_id: str
    #: The start's ``move``, ``join_rule`` and ``duration_seconds``.
    request: dict[str, Any]
    rooms: list[tuple[str, list[str]]]
    started_ts: int


_COLUMNS = "parent_room_id, plan_id, name, fields, created_ts, updated_ts"


def _plan(row: Any) -> StoredPlan:
    return StoredPlan(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])


def _put_txn(txn: LoggingTransaction, plan: StoredPlan, limit: int) -> bool:
    """Store ``plan`` (a new one, or over one with its ID); False when the
    parent has ``limit`` plans already and this is a new one."""
    txn.execute(
        "UPDATE breakout_plans SET name = ?, fields = ?, updated_ts = ?"
        " WHERE parent_room_id = ? AND plan_id = ?",
        (
            plan.name,
            json.dumps(plan.fields),
            plan.updated_ts,
            plan.parent_room_id,
            plan.plan_id,
        ),
    )
    if txn.rowcount == 1:
        return True
    txn.execute(
        "SELECT COUNT(*) FROM breakout_plans WHERE parent_room_id = ?",
        (plan.parent_room_id,),
    )
    row = txn.fetchone()
    if row is not None and int(row[0]) >= limit:
        return False
    txn.execute(
        f"INSERT INTO breakout_plans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (*attrs.astuple(plan)[:3], json.dumps(plan.fields), *attrs.astuple(plan)[4:]),
    )
    return True


def _list_txn(txn: LoggingTransaction, parent: str) -> list[StoredPlan]:
    txn.execute(
        f"SELECT {_COLUMNS} FROM breakout_plans WHERE parent_room_id = ?"
        " ORDER BY updated_ts DESC, plan_id",
        (parent,),
    )
    return [_plan(row) for row in txn]


def _get_txn(txn: LoggingTransaction, parent: str, plan_id: str) -> StoredPlan | None:
    txn.execute(
        f"SELECT {_COLUMNS} FROM breakout_plans"
        " WHERE parent_room_id = ? AND plan_id = ?",
        (parent, plan_id),
    )
    row = txn.fetchone()
    return _plan(row) if row else None


def _delete_txn(txn: LoggingTransaction, parent: str, plan_id: str) -> bool:
    txn.execute(
        "DELETE FROM breakout_plans WHERE parent_room_id = ? AND plan_id = ?",
        (parent, plan_id),
    )
    return txn.rowcount == 1


def _parents_txn(txn: LoggingTransaction) -> list[str]:
    txn.execute("SELECT DISTINCT parent_room_id FROM breakout_plans")
    return [row[0] for row in txn]


def _forget_txn(txn: LoggingTransaction, parents: list[str]) -> int:
    removed = 0
    for parent in parents:
        txn.execute("DELETE FROM breakout_plans WHERE parent_room_id = ?", (parent,))
        removed += txn.rowcount
    return removed


def _last_txn(txn: LoggingTransaction, parent: str) -> EndedBreakout | None:
    """The newest committed start on ``parent`` that is not running now, with
    its rooms (by plan index) and the users assigned to each at its end."""
    txn.execute(
        "SELECT op_id, request, response, created_ts FROM breakout_operations o"
        " WHERE parent_room_id = ? AND kind = 'start' AND state = ?"
        " AND NOT EXISTS (SELECT 1 FROM breakout_active a WHERE a.op_id = o.op_id)"
        " ORDER BY created_ts DESC LIMIT 1",
        (parent, OperationState.COMMITTED.value),
    )
    row = txn.fetchone()
    if row is None:
        return None
    op_id, request, response = row[0], json.loads(row[1] or "{}"), row[2]
    body = (json.loads(response) if response else {}).get("body") or {}
    names = {room.get("room_id"): room.get("name") for room in body.get("rooms", [])}
    txn.execute(
        "SELECT r.room_index, r.room_id, u.user_id FROM breakout_op_rooms r"
        " LEFT JOIN breakout_op_users u ON u.op_id = r.op_id"
        " AND u.room_index = r.room_index"
        " WHERE r.op_id = ? AND r.room_index IS NOT NULL"
        " ORDER BY r.room_index, u.position",
        (op_id,),
    )
    rooms: dict[int, tuple[str, list[str]]] = {}
    for index, room_id, user_id in txn:
        name = names.get(room_id) or f"Room {index + 1}"
        users = rooms.setdefault(index, (name, []))[1]
        if user_id is not None:
            users.append(user_id)
    ordered = [rooms[index] for index in sorted(rooms)]
    return EndedBreakout(op_id, request, ordered, int(row[3]))


class PlanStore:
    """Stores, lists, reads and deletes plans; reads the last break-out."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def put(self, plan: StoredPlan, limit: int) -> bool:
        """Store ``plan``; False when its parent has ``limit`` plans already."""
        return await self._api.run_db_interaction(
            "breakout_put_plan", _put_txn, plan, limit
        )

    async def of_parent(self, parent: str) -> list[StoredPlan]:
        """The plans of ``parent``, newest first."""
        return await self._api.run_db_interaction(
            "breakout_list_plans", _list_txn, parent
        )

    async def get(self, parent: str, plan_id: str) -> StoredPlan | None:
        return await self._api.run_db_interaction(
            "breakout_get_plan", _get_txn, parent, plan_id
        )

    async def delete(self, parent: str, plan_id: str) -> bool:
        """Delete a plan; False if there was none."""
        return await self._api.run_db_interaction(
            "breakout_delete_plan", _delete_txn, parent, plan_id
        )

    async def parents(self) -> list[str]:
        """Every parent room that has plans."""
        return await self._api.run_db_interaction("breakout_plan_parents", _parents_txn)

    async def forget(self, parents: list[str]) -> int:
        """Delete the plans of ``parents`` (purged rooms); how many."""
        if not parents:
            return 0
        return await self._api.run_db_interaction(
            "breakout_forget_plans", _forget_txn, parents
        )

    async def last(self, parent: str) -> EndedBreakout | None:
        """The most recent break-out of ``parent`` that ended, as it stood."""
        return await self._api.run_db_interaction(
            "breakout_last_breakout", _last_txn, parent
        )
