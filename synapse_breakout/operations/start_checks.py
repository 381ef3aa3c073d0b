"""Every check of a start (``POST /rooms/{parentRoomId}``) that can fail,
in the order they run, before the first room is created. The one home of
them (the request body's fields are http/start_request.py's):

1. only a server admin names another ``acting_user`` (:meth:`StartChecks.may_name`);
2. ``moderator_starts_per_hour`` for delegated moderators;
3. the parent is known (404); the acting user is a local moderator who may
   send the break-out event (rooms/acting.py);
4. the plan: each room's users within ``max_users_per_room`` and
   ``room_capacity``, listed users members of the parent
   (``users_must_be_members``), ``auto_assign``'s arithmetic
   (matrix/auto_assign.py); ``move: choose`` assigns nobody;
5. the size rule: the break-out event stays within Synapse's event size limit;
   the users' lists are left out of it (``invite``, ``join``) or the start is
   refused (``suggest``) when they would not fit;
6. under the parent's lock, after journalling: no active break-out, unless
   ``replace`` (409), and the acting user may end the old one's event type.

docs/admin_api.md lists the answers; docs/security.md why each limit is there.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from http import HTTPStatus

import attrs
from synapse.module_api import EventBase, ModuleApi, StateMap
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BreakoutConfig
from synapse_breakout.journal.operations import OperationStore
from synapse_breakout.journal.rows import StartQuota
from synapse_breakout.matrix.auto_assign import auto_rooms
from synapse_breakout.matrix.content import (
    BREAKOUT_STATE,
    MAX_EVENT_BYTES,
    BreakoutChild,
    BreakoutContent,
    CurrentBreakout,
    current_breakout,
    fits_in_event,
    without_users,
)
from synapse_breakout.matrix.errors import BreakoutActiveError
from synapse_breakout.matrix.model import ChildSpec, PlacementMode, StartRequest
from synapse_breakout.matrix.power import joined_or_invited, user_power_level
from synapse_breakout.rooms.acting import ActingUsers
from synapse_breakout.rooms.parent import ParentRooms

HOUR_MS = 3600 * 1000


@attrs.frozen
class CheckedStart:
    """A start that passed every check before journalling."""

    parent: str
    acting: str
    #: The parent's state, with the memberships the checks read.
    state: StateMap[EventBase]
    #: The child rooms, with their users.
    plan: tuple[ChildSpec, ...]
    #: Whether the break-out event lists the users (the size rule).
    users_in_event: bool
    #: Users a plan assigned who are no longer in the parent: left out of the
    #: rooms, reported in ``failed_users``.
    left_out: tuple[str, ...] = ()


@attrs.frozen
class Planned:
    """A start's rooms with their users, and the planned users left out."""

    rooms: tuple[ChildSpec, ...]
    left_out: tuple[str, ...] = ()


def users_fit(
    plan: Sequence[ChildSpec], mode: PlacementMode, event_type: str, server_name: str
) -> bool:
    """Whether the break-out event can list the planned users.

    Raises:
        SynapseError: 400 ``M_TOO_LARGE`` when ``suggest`` (which must list
            them) would exceed the limit, or when even the bare room list would.
    """
    # The longest room ID a child can get: a version 12 hash (44 characters),
    # or "!", 18 random characters, ":" and this server's name.
    length = max(44, 20 + len(server_name))
    content = BreakoutContent(
        key=event_type,
        children=tuple(
            BreakoutChild(
                room_id=f"!{i:0{length - 1}d}", via=(server_name,), users=spec.users
            )
            for i, spec in enumerate(plan)
        ),
    )
    if fits_in_event(content.to_json()):
        return True
    if mode is PlacementMode.SUGGEST or not fits_in_event(
        without_users(content).to_json()
    ):
        raise SynapseError(
            HTTPStatus.BAD_REQUEST,
            f"the break-out event would exceed Synapse's {MAX_EVENT_BYTES} bytes: "
            "assign fewer users (move: suggest must list them all in the event)",
            Codes.TOO_LARGE,
        )
    return False


def plan_children(
    req: StartRequest,
    state: StateMap[EventBase],
    acting: str,
    config: BreakoutConfig,
    joined: Collection[str] | None = None,
    members_checked: bool = True,
) -> Planned:
    """The child rooms with their users, checked against the parent.

    Args:
        joined: the parent's joined members, for ``auto_assign`` of everyone
            joined (``users: "joined"``).
        members_checked: with ``users_must_be_members``, a listed user not
            joined to nor invited into the parent is a 400, or, in a start from
            a plan, left out; False for a plan being stored (its users need
            not be members yet).
    """
    if req.rooms is not None:
        plan = req.rooms
    else:
        assert req.auto_assign is not None
        if req.auto_assign.users is None:
            assert joined is not None
            users = sorted(
                user
                for user in joined
                if user != acting and user_power_level(user, state) < config.power_level
            )
        else:
            users = list(req.auto_assign.users)
        plan = auto_rooms(req.auto_assign, users, config.max_child_rooms)
        if req.placement is PlacementMode.CHOOSE:
            # The arithmetic gave the number of rooms; members choose.
            return Planned(tuple(attrs.evolve(spec, users=()) for spec in plan))
    most = min(config.max_users_per_room, req.room_capacity or sys.maxsize)
    for i, spec in enumerate(plan):
        field = f"rooms[{i}].users" if req.rooms is not None else "auto_assign.users"
        if len(spec.users) > most:
            limit = (
                f"a room_capacity of {req.room_capacity}"
                if most == req.room_capacity
                else f"at most {most} are allowed"
            )
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"{field}: {len(spec.users)} users for one room; {limit}",
                Codes.INVALID_PARAM,
            )
    if not (members_checked and config.users_must_be_members and joined is None):
        return Planned(plan)  # everyone joined, or membership not asked
    return _members_only(plan, state, req.from_plan, req.rooms is not None)


def _members_only(
    plan: tuple[ChildSpec, ...],
    state: StateMap[EventBase],
    from_plan: bool,
    listed: bool,
) -> Planned:
    """Each listed user joined to or invited into the parent: a 400 naming the
    first who is not, or, for a plan, the plan without them."""
    left_out: list[str] = []
    kept = []
    for i, spec in enumerate(plan):
        field = f"rooms[{i}].users" if listed else "auto_assign.users"
        absent = [user for user in spec.users if not joined_or_invited(user, state)]
        if absent and not from_plan:
            raise SynapseError(
                HTTPStatus.BAD_REQUEST,
                f"{field}: {absent[0]} is not joined to or invited into the "
                "parent room",
                Codes.INVALID_PARAM,
            )
        left_out += absent
        kept.append(
            attrs.evolve(spec, users=tuple(u for u in spec.users if u not in absent))
        )
    return Planned(tuple(kept), tuple(left_out))


class StartChecks:
    """Runs the checks of a start; each raises the error its caller gets."""

    def __init__(
        self,
        config: BreakoutConfig,
        api: ModuleApi,
        store: OperationStore,
        parents: ParentRooms,
        acting: ActingUsers,
    ):
        self._config = config
        self._api = api
        self._store = store
        self._parents = parents
        self._acting = acting

    def may_name(self, caller: str, caller_is_admin: bool, req: StartRequest) -> None:
        """A moderator acts as themselves; only admins name another acting user."""
        if req.acting_user not in (None, caller) and not caller_is_admin:
            raise SynapseError(
                HTTPStatus.FORBIDDEN,
                "acting_user: only server admins may act as another user",
                Codes.FORBIDDEN,
            )

    def quota(self, limited: bool) -> StartQuota | None:
        """A delegated moderator's ``moderator_starts_per_hour``, which the
        journal counts and records in one transaction (so it holds for starts
        at the same moment, on any worker); None for a server admin."""
        if not limited:
            return None
        return StartQuota(self._config.moderator_starts_per_hour, HOUR_MS)

    def over_quota(self, oldest: int | None) -> SynapseError:
        """The 429 ``M_LIMIT_EXCEEDED`` of a requester whose hour's starts are
        used up, the oldest made at ``oldest``; ``replace`` counts too."""
        now = self._api.get_current_time_msec()
        allowed = self._config.moderator_starts_per_hour
        retry_after = max(1, (oldest or now) + HOUR_MS - now) if allowed else HOUR_MS
        return SynapseError(
            HTTPStatus.TOO_MANY_REQUESTS,
            f"at most {allowed} break-outs an hour may be started by a room moderator",
            Codes.LIMIT_EXCEEDED,
            additional_fields={"retry_after_ms": retry_after},
        )

    async def check_rate(self, requester: str) -> None:
        """The quota, looked at before any work (the journal enforces it)."""
        now = self._api.get_current_time_msec()
        count, oldest = await self._store.starts_since(requester, now - HOUR_MS)
        if count >= self._config.moderator_starts_per_hour:
            raise self.over_quota(oldest)

    async def before_journal(
        self, requester: str, parent: str, req: StartRequest, limited: bool
    ) -> CheckedStart:
        """Checks 2 to 5: the rate, the parent, the acting user, the plan.

        Args:
            limited: the caller is a delegated moderator (no server admin):
                ``moderator_starts_per_hour`` applies.
        """
        if limited:
            await self.check_rate(requester)
        acting = req.acting_user or requester
        listed = [u for spec in req.rooms or () for u in spec.users]
        everyone = req.auto_assign is not None and req.auto_assign.users is None
        if req.auto_assign is not None and req.auto_assign.users is not None:
            listed.extend(req.auto_assign.users)
        # Everyone joined: their IDs (cached by Synapse), not their events.
        joined = (
            await synapse_adapter.joined_users(self._api, parent) if everyone else None
        )
        state = await self._parents.state(parent, [acting, *listed])
        self._acting.check(acting, state, self._config.event_type)
        planned = plan_children(req, state, acting, self._config, joined)
        fits = users_fit(
            planned.rooms, req.placement, self._config.event_type, self._api.server_name
        )
        return CheckedStart(
            parent, acting, state, planned.rooms, fits, planned.left_out
        )

    async def check_plan(self, parent: str, req: StartRequest) -> None:
        """A plan to store, checked as a start would be (sizes, the event size
        rule), except that its users need not be members yet; 404 for a parent
        this server does not know."""
        state = await self._parents.state(parent, ())
        planned = plan_children(
            req, state, "", self._config, frozenset(), members_checked=False
        )
        users_fit(
            planned.rooms, req.placement, self._config.event_type, self._api.server_name
        )

    async def under_lock(self, checked: CheckedStart, replace: bool) -> CurrentBreakout:
        """Check 6, with the parent's lock held: the break-out in force, read
        again (it may have changed since the first read)."""
        parent = checked.parent
        current = current_breakout(
            await self._api.get_room_state(parent, BREAKOUT_STATE)
        )
        if current.in_force and current.event is not None:
            if not replace:
                raise BreakoutActiveError(
                    f"{parent} already has an active break-out "
                    f"({current.event.event_id}); end it first or pass "
                    "replace: true"
                )
            if current.event.type != self._config.event_type:
                # Its emptying is sent after the commit: check it can be.
                self._acting.check(checked.acting, checked.state, current.event.type)
        return current
