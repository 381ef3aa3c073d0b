"""Plans: break-outs prepared before a session and reused after
(docs/admin_api.md, "Plans").

A plan is the start request's fields it fixes, checked as a start checks them
(start_checks.py) except that its users need not be members yet, stored per
parent (journal/plans.py), at most ``max_plans_per_room``. The synthetic plan
``last`` is the most recent break-out of the parent as it stood when it ended
(after moves), read from the journal. A start names a plan with ``plan``; the
body's own fields override the plan's.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, cast

from synapse.module_api import ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.plans import EndedBreakout, PlanStore, StoredPlan
from synapse_breakout.matrix.model import LAST_PLAN, PlanJson, PlansAnswer, StartRequest
from synapse_breakout.matrix.power import joined_or_invited
from synapse_breakout.operations.start_checks import StartChecks
from synapse_breakout.rooms.parent import ParentRooms

#: The start request's fields that come in a group: either replaces both.
ROOM_FIELDS = ("rooms", "auto_assign")
#: The name of the synthetic plan ``last``.
LAST_NAME = "Same groups as last time"


def _read_only() -> SynapseError:
    return SynapseError(
        HTTPStatus.BAD_REQUEST,
        f"planId: {LAST_PLAN!r} is the last break-out, which is read-only",
        Codes.INVALID_PARAM,
    )


def _no_plan(parent: str, plan_id: str, field: str = "planId") -> SynapseError:
    return SynapseError(
        HTTPStatus.NOT_FOUND,
        f"{field}: {parent} has no plan {plan_id!r}",
        Codes.NOT_FOUND,
    )


def stored_json(plan: StoredPlan) -> PlanJson:
    """A stored plan as the API shows it."""
    shown: dict[str, Any] = {"plan_id": plan.plan_id, "name": plan.name}
    shown.update(plan.fields)
    shown["updated_at"] = plan.updated_ts
    return cast(PlanJson, shown)


def last_json(ended: EndedBreakout) -> PlanJson:
    """The synthetic plan ``last``: the rooms, names and assignment of the
    break-out that ended, how its people were moved, its duration and its
    rooms' capacity. (In a ``move: choose`` break-out nobody was assigned:
    its rooms come back empty, to be chosen again.)"""
    shown: dict[str, Any] = {
        "plan_id": LAST_PLAN,
        "name": LAST_NAME,
        "rooms": [{"name": name, "users": users} for name, users in ended.rooms],
    }
    for field, key in (("move", "move"), ("join_rule", "join_rule")):
        if isinstance(ended.request.get(key), str):
            shown[field] = ended.request[key]
    for key in ("duration_seconds", "room_capacity"):
        if isinstance(ended.request.get(key), int):
            shown[key] = ended.request[key]
    shown["updated_at"] = ended.started_ts
    return cast(PlanJson, shown)


def merged(plan: PlanJson, body: dict[str, Any]) -> dict[str, Any]:
    """A start body from ``plan``, with ``body``'s own fields over the plan's
    (``rooms`` and ``auto_assign`` replace each other)."""
    fields = {
        key: value
        for key, value in plan.items()
        if key not in ("plan_id", "name", "updated_at", "not_in_room")
    }
    if any(key in body for key in ROOM_FIELDS):
        fields = {k: v for k, v in fields.items() if k not in ROOM_FIELDS}
    return {**fields, **body}


def planned_users(plan: PlanJson) -> list[str]:
    """The users a plan lists by name (``rooms``, or ``auto_assign.users``)."""
    fields: dict[str, Any] = dict(plan)
    users = [u for room in fields.get("rooms") or [] for u in room.get("users", [])]
    auto = fields.get("auto_assign")
    if isinstance(auto, dict) and isinstance(auto.get("users"), list):
        users += auto["users"]
    return users


class Plans:
    """Stores, lists, reads and deletes a parent's plans."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: PlanStore,
        checks: StartChecks,
        parents: ParentRooms,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._checks = checks
        self._parents = parents

    async def with_absent(self, parent: str, plan: PlanJson) -> PlanJson:
        """``plan`` with ``not_in_room``: its users who are neither joined to
        nor invited into the parent now (a start leaves them out)."""
        users = planned_users(plan)
        state = await self._parents.state(parent, users) if users else {}
        absent = [u for u in users if not joined_or_invited(u, state)]
        return cast(PlanJson, {**plan, "not_in_room": absent})

    async def put(
        self,
        parent: str,
        plan_id: str,
        name: str,
        req: StartRequest,
        fields: dict[str, Any],
    ) -> PlanJson:
        """Store a plan, checked as a start (its users need not be members).

        Raises:
            SynapseError: a start's 400s; 400 ``M_LIMIT_EXCEEDED`` beyond
                ``max_plans_per_room``; 400 for ``last``; 404 for an unknown
                parent (to server admins).
        """
        if plan_id == LAST_PLAN:
            raise _read_only()
        await self._checks.check_plan(parent, req)
        now = self._api.get_current_time_msec()
        plan = StoredPlan(parent, plan_id, name, fields, now, now)
        if not await self._store.put(plan, self._config.max_plans_per_room):
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"planId: {parent} has {self._config.max_plans_per_room} plans "
                "already (max_plans_per_room): delete one first",
                Codes.LIMIT_EXCEEDED,
            )
        return await self.with_absent(parent, stored_json(plan))

    async def list(self, parent: str) -> PlansAnswer:
        """The parent's plans, ``last`` first, then the newest first."""
        plans = [stored_json(plan) for plan in await self._store.of_parent(parent)]
        ended = await self._store.last(parent)
        if ended is not None:
            plans.insert(0, last_json(ended))
        return {"plans": plans}

    async def get(self, parent: str, plan_id: str) -> PlanJson:
        """One plan (``last`` included), with who of it is not in the room."""
        return await self.with_absent(parent, await self.find(parent, plan_id))

    async def find(self, parent: str, plan_id: str, field: str = "planId") -> PlanJson:
        """One plan (``last`` included); 404 ``M_NOT_FOUND`` if there is none."""
        if plan_id == LAST_PLAN:
            ended = await self._store.last(parent)
            if ended is None:
                raise _no_plan(parent, plan_id, field)
            return last_json(ended)
        plan = await self._store.get(parent, plan_id)
        if plan is None:
            raise _no_plan(parent, plan_id, field)
        return stored_json(plan)

    async def delete(self, parent: str, plan_id: str) -> dict[str, Any]:
        """Delete a plan; 404 ``M_NOT_FOUND`` if there is none."""
        if plan_id == LAST_PLAN:
            raise _read_only()
        if not await self._store.delete(parent, plan_id):
            raise _no_plan(parent, plan_id)
        return {}

    async def start_body(
        self, parent: str, plan_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """The start body a ``plan`` names, with ``body``'s fields over it."""
        return merged(await self.find(parent, plan_id, "plan"), body)
