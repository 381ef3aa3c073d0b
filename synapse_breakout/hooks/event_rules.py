"""Enforcement of local break-out sends (docs/rules.md), as a third-party rule.

The decisions are plain functions returning a :class:`Violation` (or None) in
the order docs/rules.md gives; :class:`BreakoutRules` is the thin callback on
top that looks up the child rooms (one query for all of them) and turns a
violation into the ``SynapseError`` Synapse passes to the client.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Collection
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import EventBase, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.config import BreakoutConfig, Enforcement
from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.matrix.content import (
    BreakoutContent,
    BreakoutContentError,
    is_breakout_type,
    parse_breakout_content,
    room_id_server,
)
from synapse_breakout.matrix.power import (
    StateMap,
    effective_join_rule,
    joined_or_invited,
    user_power_level,
)
from synapse_breakout.metrics import EVENTS_CHECKED

logger = logging.getLogger(__name__)


class Reason(enum.Enum):
    """Why a break-out event is rejected; the value labels the metric."""

    STATE_KEY = "state_key"
    BAD_JSON = "bad_json"
    LIMITS = "limits"
    POWER_LEVEL = "power_level"
    UNKNOWN_ROOM = "unknown_room"
    NOT_MEMBER = "not_member"


_ERRORS: dict[Reason, tuple[HTTPStatus, str]] = {
    Reason.STATE_KEY: (HTTPStatus.BAD_REQUEST, Codes.INVALID_PARAM),
    Reason.BAD_JSON: (HTTPStatus.BAD_REQUEST, Codes.BAD_JSON),
    Reason.LIMITS: (HTTPStatus.BAD_REQUEST, Codes.INVALID_PARAM),
    Reason.POWER_LEVEL: (HTTPStatus.FORBIDDEN, Codes.FORBIDDEN),
    Reason.UNKNOWN_ROOM: (HTTPStatus.NOT_FOUND, Codes.NOT_FOUND),
    Reason.NOT_MEMBER: (HTTPStatus.BAD_REQUEST, Codes.INVALID_PARAM),
}


@attrs.frozen
class Violation:
    """A broken rule, with a message naming the offending field, room or user."""

    reason: Reason
    message: str

    def to_error(self) -> SynapseError:
        status, errcode = _ERRORS[self.reason]
        return SynapseError(status, self.message, errcode)


def _child_path(content: BreakoutContent, room_id: str) -> str:
    return f"{content.key}[{json.dumps(room_id)}]"


def check_before_lookup(
    event_type: str,
    state_key: str | None,
    sender: str,
    room_id: str,
    content: object,
    state: StateMap,
    config: BreakoutConfig,
) -> BreakoutContent | Violation:
    """Rules 1 to 4: state key, shape, limits, power level. No I/O."""
    if state_key != "":
        return Violation(
            Reason.STATE_KEY,
            f'state_key must be "" for {event_type}; got {json.dumps(state_key)}',
        )
    try:
        parsed = parse_breakout_content(event_type, content)
    except BreakoutContentError as e:
        return Violation(Reason.BAD_JSON, str(e))

    if len(parsed.children) > config.max_child_rooms:
        return Violation(
            Reason.LIMITS,
            f"{parsed.key} lists {len(parsed.children)} child rooms; at most "
            f"{config.max_child_rooms} are allowed",
        )
    for child in parsed.children:
        path = _child_path(parsed, child.room_id)
        if len(child.users) > config.max_users_per_room:
            return Violation(
                Reason.LIMITS,
                f"{path}.users lists {len(child.users)} users; at most "
                f"{config.max_users_per_room} are allowed",
            )
        if child.room_id == room_id:
            return Violation(
                Reason.LIMITS, f"{path}: the parent room cannot be its own child"
            )

    if enforced_in(state, config):
        level = user_power_level(sender, state)
        if level < config.power_level:
            return Violation(
                Reason.POWER_LEVEL,
                f"sending {event_type} in this room needs power level "
                f"{config.power_level}; {sender} has {level}",
            )
    return parsed


def enforced_in(state: StateMap, config: BreakoutConfig) -> bool:
    """Whether ``power_level`` is enforced in the room with this state."""
    if config.enforce_power_level_in is Enforcement.ALL:
        return True
    if config.enforce_power_level_in is Enforcement.PUBLIC:
        return effective_join_rule(state) == "public"
    return False


def check_after_lookup(
    parsed: BreakoutContent,
    known_rooms: Collection[str],
    server_name: str,
    state: StateMap,
    config: BreakoutConfig,
) -> Violation | None:
    """Rules 5 and 6: child rooms that exist, listed users in the parent."""
    for child in parsed.children:
        if child.room_id in known_rooms:
            continue
        path = _child_path(parsed, child.room_id)
        if not config.allow_unknown_remote_rooms:
            return Violation(
                Reason.UNKNOWN_ROOM,
                f"{path}: room {child.room_id} is not known to this server",
            )
        if room_id_server(child.room_id) == server_name:
            return Violation(
                Reason.UNKNOWN_ROOM,
                f"{path}: room {child.room_id} would be on this server but does "
                "not exist",
            )
        if server_name in child.via:
            return Violation(
                Reason.UNKNOWN_ROOM,
                f"{path}.via names this server ({server_name}), but room "
                f"{child.room_id} does not exist here",
            )
    if config.users_must_be_members:
        for child in parsed.children:
            for i, user_id in enumerate(child.users):
                if not joined_or_invited(user_id, state):
                    return Violation(
                        Reason.NOT_MEMBER,
                        f"{_child_path(parsed, child.room_id)}.users[{i}]: {user_id} "
                        "is not joined to or invited into this room",
                    )
    return None


class BreakoutRules:
    """The ``check_event_allowed`` callback."""

    def __init__(self, config: BreakoutConfig, api: ModuleApi, tables: SynapseTables):
        self._config = config
        self._api = api
        self._tables = tables

    async def check_event_allowed(
        self, event: EventBase, state_events: StateMap
    ) -> tuple[bool, dict[str, Any] | None]:
        """Allow any other event at once; check a break-out event's every rule.

        Raises:
            SynapseError: the first broken rule, with the status
                and errcode.
        """
        if not is_breakout_type(event.type):
            return True, None
        violation = await self.check(event, state_events)
        if violation is not None:
            EVENTS_CHECKED.labels("rejected", violation.reason.value).inc()
            logger.info(
                "Rejected %s from %s in %s: %s",
                event.type,
                event.sender,
                event.room_id,
                violation.message,
            )
            raise violation.to_error()
        EVENTS_CHECKED.labels("allowed", "").inc()
        return True, None

    async def check(self, event: EventBase, state: StateMap) -> Violation | None:
        state_key = event.get_state_key()
        parsed = check_before_lookup(
            event.type,
            state_key,
            event.sender,
            event.room_id,
            event.content,
            state,
            self._config,
        )
        if isinstance(parsed, Violation):
            return parsed
        known = await self._tables.rooms_with_create_event(parsed.room_ids)
        return check_after_lookup(
            parsed, known, self._api.server_name, state, self._config
        )
