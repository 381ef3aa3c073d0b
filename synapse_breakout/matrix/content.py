"""The content of a break-out event (docs/rules.md), and the break-out in force.

Pure functions on plain JSON values and state maps: no Synapse I/O. Every error names the path
of the offending value, e.g.
``org.matrix.msc3985.breakout["!a:example.org"].via[2]: not a valid server name``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol, TypeGuard, TypeVar

import attrs
from canonicaljson import encode_canonical_json
from synapse.module_api import EventBase, StateMap

from synapse_breakout.config import (
    BREAKOUT_EVENT_TYPES,
    STABLE_EVENT_TYPE,
    UNSTABLE_EVENT_TYPE,
)

# The Matrix spec limits identifiers to 255 bytes.
_MAX_ID_BYTES = 255
# The spec's grammar: server_name = hostname [ ":" port ], where hostname is a
# dns-name (1 to 255 of [0-9A-Za-z.-], which covers IPv4 addresses too) or an
# IPv6 address in brackets, and port has 1 to 5 digits.
_SERVER_NAME = re.compile(
    r"(?P<host>[0-9A-Za-z.-]{1,255}|\[[0-9A-Fa-f:.]{2,45}\])(?::(?P<port>[0-9]{1,5}))?"
)
# User ID localparts: the historical grammar (printable ASCII but ':'), which
# remote servers may still use.
_USER_LOCALPART = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# Room IDs up to version 11: "!" opaque ":" server_name.
_ROOM_OPAQUE = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# Room version 12 and later: "!" and the create event's reference hash,
# unpadded URL-safe base64 of a sha256 (43 characters), with no server part.
_ROOM_ID_V12 = re.compile(r"![A-Za-z0-9_-]{43}")


class BreakoutContentError(ValueError):
    """The content is not a valid break-out; ``path`` names the offending value."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@attrs.frozen
class BreakoutChild:
    """One child room of a break-out."""

    room_id: str
    via: tuple[str, ...]
    users: tuple[str, ...] = ()
    #: Fields of the entry this version does not know, kept as they were.
    extra: Mapping[str, Any] = attrs.field(factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = dict(self.extra)
        entry["via"] = list(self.via)
        if self.users:
            entry["users"] = list(self.users)
        return entry


@attrs.frozen
class BreakoutContent:
    """A parsed break-out event. No children means the break-out has ended."""

    key: str
    children: tuple[BreakoutChild, ...] = ()

    @property
    def ended(self) -> bool:
        return not self.children

    @property
    def room_ids(self) -> tuple[str, ...]:
        return tuple(child.room_id for child in self.children)

    def to_json(self) -> dict[str, Any]:
        """The event content, under ``key``."""
        return {self.key: {c.room_id: c.to_json() for c in self.children}}


def is_json_array(value: Any) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    """Whether ``value`` is a JSON array of event content.

    Some Synapse releases (1.141 among them) freeze an event before the
    third-party rules see it, which turns its lists into tuples; both are
    arrays here.
    """
    return isinstance(value, (list, tuple))


#: Synapse refuses events whose canonical JSON exceeds this many bytes.
MAX_EVENT_BYTES = 65_536
#: What an event adds to its content: IDs, hashes, signatures, up to 20 prev
#: and 10 auth events. Generous: a content within the rest always fits.
EVENT_ENVELOPE_BYTES = 4_096


def fits_in_event(content: Mapping[str, Any]) -> bool:
    """Whether an event with this content stays within Synapse's size limit."""
    size = len(encode_canonical_json(content))
    return size + EVENT_ENVELOPE_BYTES <= MAX_EVENT_BYTES


def without_users(content: BreakoutContent) -> BreakoutContent:
    """``content`` with its ``users`` lists left out (MSC3985 makes them optional)."""
    return attrs.evolve(
        content,
        children=tuple(attrs.evolve(c, users=()) for c in content.children),
    )


def is_breakout_type(event_type: str) -> bool:
    """Whether ``event_type`` is one of the two break-out event types."""
    return event_type in BREAKOUT_EVENT_TYPES


#: The state keys of the two break-out event types.
BREAKOUT_STATE = tuple((t, "") for t in sorted(BREAKOUT_EVENT_TYPES))


@attrs.frozen
class CurrentBreakout:
    """The newest break-out event in a room's state, if any, and its content
    (None when it does not parse)."""

    event: EventBase | None
    content: BreakoutContent | None

    @property
    def in_force(self) -> bool:
        """Whether it lists child rooms (an emptied event ended it)."""
        return self.content is not None and not self.content.ended


class BreakoutEvent(Protocol):
    """What :func:`newest_breakout` reads of an event (Synapse's, or one read
    from its tables)."""

    @property
    def type(self) -> str: ...
    @property
    def content(self) -> Mapping[str, Any]: ...
    @property
    def depth(self) -> int: ...
    @property
    def origin_server_ts(self) -> int: ...


_E = TypeVar("_E", bound=BreakoutEvent)


def newest_breakout(
    state: Mapping[tuple[str, str], _E],
) -> tuple[_E | None, BreakoutContent | None]:
    """The newest break-out event of either type in ``state``, and its content
    (None when it does not parse)."""
    events = [e for key in BREAKOUT_STATE if (e := state.get(key)) is not None]
    if not events:
        return None, None
    event = max(events, key=lambda e: (e.depth, e.origin_server_ts))
    try:
        return event, parse_breakout_content(event.type, event.content)
    except BreakoutContentError:
        return event, None


def current_breakout(state: StateMap[EventBase]) -> CurrentBreakout:
    """The newest break-out event of either type in ``state``."""
    return CurrentBreakout(*newest_breakout(state))


def is_valid_server_name(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    match = _SERVER_NAME.fullmatch(value)
    return match is not None and (
        match["port"] is None or 0 < int(match["port"]) < 65536
    )


def is_valid_user_id(value: Any) -> bool:
    if not isinstance(value, str) or not value.startswith("@"):
        return False
    if len(value.encode("utf-8")) > _MAX_ID_BYTES:
        return False
    localpart, sep, server = value[1:].partition(":")
    return (
        bool(sep)
        and bool(_USER_LOCALPART.fullmatch(localpart))
        and (is_valid_server_name(server))
    )


def is_valid_room_id(value: Any) -> bool:
    """Room IDs of every room version, including version 12's (no server part)."""
    if not isinstance(value, str) or not value.startswith("!"):
        return False
    if len(value.encode("utf-8")) > _MAX_ID_BYTES:
        return False
    opaque, sep, server = value[1:].partition(":")
    if not sep:
        return bool(_ROOM_ID_V12.fullmatch(value))
    return bool(_ROOM_OPAQUE.fullmatch(opaque)) and is_valid_server_name(server)


def room_id_server(room_id: str) -> str | None:
    """The server part of a room ID, or None for room version 12 IDs."""
    _, sep, server = room_id.partition(":")
    return server if sep else None


def content_key(event_type: str, content: Mapping[str, Any]) -> str:
    """The key holding the break-out map: the event type's, or ``m.breakout``.

    An unstable event may use either key; it may not use both.
    """
    if event_type == UNSTABLE_EVENT_TYPE:
        if UNSTABLE_EVENT_TYPE in content and STABLE_EVENT_TYPE in content:
            raise BreakoutContentError(
                "content",
                f"has both {UNSTABLE_EVENT_TYPE} and {STABLE_EVENT_TYPE}; use one",
            )
        if STABLE_EVENT_TYPE in content:
            return STABLE_EVENT_TYPE
    return event_type


def parse_breakout_content(event_type: str, content: Any) -> BreakoutContent:
    """Parse and validate the content of a break-out event.

    Args:
        event_type: ``m.breakout`` or ``org.matrix.msc3985.breakout``.
        content: the event content, as JSON.

    Returns:
        The break-out; ``{}`` and ``{KEY: {}}`` give one with no children.

    Raises:
        BreakoutContentError: naming the path of the first invalid value.
    """
    if not isinstance(content, Mapping):
        raise BreakoutContentError("content", "must be an object")
    key = content_key(event_type, content)
    if key not in content:
        if content:
            raise BreakoutContentError(
                "content", f"must hold {key!r} (or be {{}} to end the break-out)"
            )
        return BreakoutContent(key=key)
    rooms = content[key]
    if not isinstance(rooms, Mapping):
        raise BreakoutContentError(key, "must be an object of room IDs")
    children = tuple(
        _parse_child(f"{key}[{json.dumps(room_id)}]", room_id, entry)
        for room_id, entry in rooms.items()
    )
    return BreakoutContent(key=key, children=children)


def _parse_child(path: str, room_id: Any, entry: Any) -> BreakoutChild:
    if not is_valid_room_id(room_id):
        raise BreakoutContentError(path, "not a valid room ID")
    if not isinstance(entry, Mapping):
        raise BreakoutContentError(path, "must be an object with a via list")
    if "via" not in entry:
        raise BreakoutContentError(f"{path}.via", "is required")
    via = entry["via"]
    if not is_json_array(via) or not via:
        raise BreakoutContentError(
            f"{path}.via", "must be a non-empty list of server names"
        )
    for i, server in enumerate(via):
        if not is_valid_server_name(server):
            raise BreakoutContentError(f"{path}.via[{i}]", "not a valid server name")
    users = entry.get("users", [])
    if not is_json_array(users):
        raise BreakoutContentError(f"{path}.users", "must be a list of user IDs")
    for i, user in enumerate(users):
        if not is_valid_user_id(user):
            raise BreakoutContentError(f"{path}.users[{i}]", "not a valid user ID")
    extra = {k: v for k, v in entry.items() if k not in ("via", "users")}
    return BreakoutChild(
        room_id=room_id, via=tuple(via), users=tuple(users), extra=extra
    )
