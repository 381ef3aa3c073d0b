"""Calls follow the break-out: the parent's call state, re-created in a child
with the child's own identifiers (docs/participants.md, "Calls").

Pure: what the parent has, read from its state, and the state events one child
gets. The child-room template (child_room.py) puts them in each child. What
today's clients send, with the sources read, is in docs/participants.md:

- **MatrixRTC slots** (MSC4143, MSC4196): ``org.matrix.msc4143.rtc.slot`` (or
  the stable ``m.rtc.slot``), state key ``{application}#{slot}`` (the room's
  call: ``m.call#ROOM``), content ``{"status": "open", "application": {"type":
  "m.call"}}`` plus ``"encryption": {"type": "org.matrix.msc4143.per_member"}``
  in an encrypted room. Only moderators may open one, so a child without it
  could hold no call its members may join. An open slot is re-created under
  the same state key (a fixed address, not a call instance), with the
  encryption the child has, and nothing else of the parent's content.
- **MSC3401 group calls** (``org.matrix.msc3401.call``, state key: the call's
  ID): a call that has not ended (no ``m.terminated``) gets a call of the
  same kind in the child under an ID of its own.
- **Jitsi room widgets** (``im.vector.modular.widgets``, content ``type``
  ``jitsi`` or ``m.jitsi``): a widget of the child's own conference, under a
  new widget ID. The conference ID is ``"Jitsi"`` and random letters, as
  Element Web makes it, or, where the widget uses Jitsi's Matrix
  authentication (``data.auth == "openidtoken-jwt"``), the base32 of the
  child's room ID, which its auth module checks the user against: that one is
  sent once the child exists (:func:`needs_room_id`).

Never copied: members' call memberships (``org.matrix.msc3401.call.member``),
any other widget, and the parent's identifiers.
"""

from __future__ import annotations

import base64
import secrets
import string
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from synapse_breakout.matrix.power import StateMap

RTC_SLOT = "org.matrix.msc4143.rtc.slot"
RTC_SLOT_STABLE = "m.rtc.slot"
GROUP_CALL = "org.matrix.msc3401.call"
WIDGETS = "im.vector.modular.widgets"
#: The slot content's encryption in an encrypted room (MSC4143).
PER_MEMBER = {"type": "org.matrix.msc4143.per_member"}
JITSI_TYPES = ("jitsi", "m.jitsi")
JITSI_AUTH = "openidtoken-jwt"
#: What a start reads of the parent besides its other state.
CALL_STATE: tuple[tuple[str, str | None], ...] = (
    (RTC_SLOT, None),
    (RTC_SLOT_STABLE, None),
    (GROUP_CALL, None),
    (WIDGETS, None),
)
#: The fields of an MSC3401 call a child's call keeps (``m.terminated`` and
#: anything naming the parent's call are left out).
GROUP_CALL_FIELDS = (
    "m.intent",
    "m.type",
    "m.name",
    "io.element.ptt",
    "dataChannelsEnabled",
    "dataChannelOptions",
    "io.element.livekit_service_url",
)
#: The fields of a Jitsi widget's ``data`` a child's widget keeps as they are.
JITSI_DATA_FIELDS = ("domain", "isAudioOnly", "auth")


@attrs.frozen
class Slot:
    """An open MatrixRTC slot of the parent."""

    event_type: str
    state_key: str
    application: str


@attrs.frozen
class JitsiWidget:
    """A Jitsi room widget of the parent: what a child's own one keeps."""

    name: str | None
    url: str
    data: Mapping[str, Any]
    avatar_url: str | None

    @property
    def authenticated(self) -> bool:
        """Jitsi's Matrix authentication: the conference is named after the room."""
        return self.data.get("auth") == JITSI_AUTH


@attrs.frozen
class ParentCalls:
    """The call state of a parent, as a child re-creates it."""

    slots: tuple[Slot, ...] = ()
    #: The kept content of each MSC3401 call that has not ended.
    group_calls: tuple[Mapping[str, Any], ...] = ()
    jitsi: tuple[JitsiWidget, ...] = ()

    @property
    def ready(self) -> bool:
        """Whether a child gets a call (the notices say so)."""
        return bool(self.slots or self.group_calls or self.jitsi)


#: A parent without calls.
NO_CALLS = ParentCalls()


def _open_slot(
    event_type: str, state_key: str, content: Mapping[str, Any]
) -> Slot | None:
    application = content.get("application")
    kind = application.get("type") if isinstance(application, Mapping) else None
    if content.get("status") != "open" or not isinstance(kind, str):
        return None
    if state_key.partition("#")[0] != kind:  # MSC4143: they must match
        return None
    return Slot(event_type, state_key, kind)


def _jitsi(content: Mapping[str, Any]) -> JitsiWidget | None:
    url, data = content.get("url"), content.get("data")
    if content.get("type") not in JITSI_TYPES or not isinstance(url, str) or not url:
        return None
    name, avatar = content.get("name"), content.get("avatar_url")
    return JitsiWidget(
        name if isinstance(name, str) else None,
        url,
        dict(data) if isinstance(data, Mapping) else {},
        avatar if isinstance(avatar, str) else None,
    )


def parent_calls(state: StateMap) -> ParentCalls:
    """The call state of the room with ``state`` (read with :data:`CALL_STATE`)."""
    slots, group_calls, jitsi = [], [], []
    for (event_type, state_key), event in sorted(state.items(), key=lambda i: i[0]):
        content = event.content
        if event_type in (RTC_SLOT, RTC_SLOT_STABLE):
            slot = _open_slot(event_type, state_key, content)
            if slot is not None:
                slots.append(slot)
        elif event_type == GROUP_CALL and content and "m.terminated" not in content:
            group_calls.append(
                {k: content[k] for k in GROUP_CALL_FIELDS if k in content}
            )
        elif event_type == WIDGETS:
            widget = _jitsi(content)
            if widget is not None:
                jitsi.append(widget)
    return ParentCalls(tuple(slots), tuple(group_calls), tuple(jitsi))


def random_id(length: int) -> str:
    """A random identifier of ``length`` lowercase letters (113 bits in 24)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(length))


def jitsi_conference_id(new_id: Callable[[int], str]) -> str:
    """A conference of its own, as Element Web names one: "Jitsi" and 24
    letters, the first a capital."""
    return "Jitsi" + new_id(24).capitalize()


def room_conference_id(room_id: str) -> str:
    """The conference Jitsi's Matrix authentication ties to a room: the room
    ID in base32, without padding."""
    return base64.b32encode(room_id.encode("utf-8")).decode("ascii").rstrip("=")


def _jitsi_url(url: str, conference: str) -> str:
    """``url`` with its ``confId`` query parameter naming ``conference``."""
    parts = urllib.parse.urlsplit(url)
    query = [
        (key, conference if key == "confId" else value)
        for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _jitsi_event(
    widget: JitsiWidget, conference: str, room_name: str | None, widget_id: str
) -> dict[str, Any]:
    data = {k: widget.data[k] for k in JITSI_DATA_FIELDS if k in widget.data}
    data.update(conferenceId=conference, roomName=room_name, isVideoChannel=False)
    content: dict[str, Any] = {
        "type": "jitsi",
        "url": _jitsi_url(widget.url, conference),
        "name": widget.name or "Jitsi",
        "data": data,
    }
    if widget.avatar_url is not None:
        content["avatar_url"] = widget.avatar_url
    return {"type": WIDGETS, "state_key": widget_id, "content": content}


def child_call_state(
    calls: ParentCalls,
    encrypted: bool,
    room_name: str | None,
    new_id: Callable[[int], str],
) -> list[dict[str, Any]]:
    """The call state one child is created with (``initial_state``).

    Args:
        encrypted: the child is encrypted (its slot says so).
        new_id: random identifiers of lowercase letters, of the length asked.
    """
    events: list[dict[str, Any]] = []
    for slot in calls.slots:
        content: dict[str, Any] = {
            "status": "open",
            "application": {"type": slot.application},
        }
        if encrypted:
            content["encryption"] = dict(PER_MEMBER)
        events.append(
            {"type": slot.event_type, "state_key": slot.state_key, "content": content}
        )
    for call in calls.group_calls:
        events.append(
            {"type": GROUP_CALL, "state_key": new_id(24), "content": dict(call)}
        )
    for widget in calls.jitsi:
        if not widget.authenticated:
            conference = jitsi_conference_id(new_id)
            events.append(_jitsi_event(widget, conference, room_name, new_id(24)))
    return events


def needs_room_id(calls: ParentCalls) -> bool:
    """Whether a child's call state has a part sent once the room exists."""
    return any(widget.authenticated for widget in calls.jitsi)


def child_call_state_with_room_id(
    calls: ParentCalls,
    room_id: str,
    room_name: str | None,
    new_id: Callable[[int], str],
) -> list[dict[str, Any]]:
    """The call state a child gets once its room ID is known: the Jitsi
    widgets whose conference is named after the room."""
    return [
        _jitsi_event(widget, room_conference_id(room_id), room_name, new_id(24))
        for widget in calls.jitsi
        if widget.authenticated
    ]
