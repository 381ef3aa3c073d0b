"""The notices participants see on any client: one template per kind.

No Matrix client renders MSC3985 today, so the module says in plain
``m.notice`` messages what the break-out event says (docs/participants.md).
Pure functions: each returns the content of one notice, with a plain ``body``,
an HTML ``formatted_body`` where it links rooms or mentions users, and
``m.mentions``. The wording lives here and nowhere else; rooms/announcer.py decides
when and where each is sent.
"""

from __future__ import annotations

import datetime
import enum
import html
import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

import attrs

#: The content key that says which kind of notice this is.
NOTICE_KEY = "org.matrix.msc3985.notice"
#: The content key naming the break-out event a notice is about.
EVENT_ID_KEY = "org.matrix.msc3985.breakout_event_id"
#: What the notices say where the parent's call follows into each room.
CALL_READY = "A call is ready"
#: Synapse refuses events over 65,536 bytes; the envelope (IDs, hashes,
#: signatures, auth and prev events) takes at most a few KiB of that.
MAX_CONTENT_BYTES = 60_000


class NoticeKind(enum.StrEnum):
    """What a notice is about (its ``org.matrix.msc3985.notice``)."""

    STARTED = "started"
    WELCOME = "welcome"
    WARNING = "warning"
    DEADLINE = "deadline"
    BROADCAST = "broadcast"
    ENDED = "ended"
    HELP = "help"


@attrs.frozen
class RoomLink:
    """A room to link to: its ID, a name to show, servers to join through."""

    room_id: str
    name: str | None
    via: tuple[str, ...]

    @property
    def url(self) -> str:
        """The room's matrix.to link, with ``via`` for joining it."""
        query = urllib.parse.urlencode([("via", server) for server in self.via])
        path = urllib.parse.quote(self.room_id, safe="!:")
        return f"https://matrix.to/#/{path}" + (f"?{query}" if query else "")

    @property
    def label(self) -> str:
        return self.name or self.room_id


def user_url(user_id: str) -> str:
    """A user's matrix.to link: clients render it as a mention pill."""
    return "https://matrix.to/#/" + urllib.parse.quote(user_id, safe="@:")


def time_left(seconds: int) -> str:
    """``seconds`` in words: "45 seconds", "5 minutes", "1 hour 30 minutes"."""
    if seconds < 60:
        return _count(max(seconds, 0), "second")
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return _count(minutes, "minute")
    return _count(hours, "hour") + (f" {_count(minutes, 'minute')}" if minutes else "")


def time_of_day(at_ms: int, now_ms: int) -> str:
    """``at_ms`` as a time of day in UTC ("14:30 UTC"), with the date when it
    is not within the next 24 hours ("2026-08-25 14:30 UTC"): a pinned banner
    does not tick, so it says when, not how long."""
    at = datetime.datetime.fromtimestamp(at_ms / 1000, tz=datetime.UTC)
    within_a_day = 0 <= at_ms - now_ms < 24 * 3600 * 1000
    return at.strftime("%H:%M UTC" if within_a_day else "%Y-%m-%d %H:%M UTC")


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


class _Message:
    """A notice being written: its plain and its HTML text, its mentions."""

    def __init__(self) -> None:
        self._plain: list[str] = []
        self._html: list[str] = []
        self._mentions: list[str] = []

    def text(self, text: str) -> _Message:
        self._plain.append(text)
        self._html.append(html.escape(text, quote=False))
        return self

    def line(self) -> _Message:
        self._plain.append("\n")
        self._html.append("<br>")
        return self

    def room(self, room: RoomLink) -> _Message:
        self._plain.append(f"{room.label} ({room.url})")
        self._html.append(
            f'<a href="{html.escape(room.url)}">{html.escape(room.label)}</a>'
        )
        return self

    def user(self, user_id: str, mention: bool = True) -> _Message:
        """A pill for ``user_id``; ``mention``: also in ``m.mentions`` (which
        alerts them, where the message may alert at all)."""
        self._plain.append(user_id)
        self._html.append(
            f'<a href="{html.escape(user_url(user_id))}">{html.escape(user_id)}</a>'
        )
        if mention and user_id not in self._mentions:
            self._mentions.append(user_id)
        return self

    def users(self, user_ids: Sequence[str]) -> _Message:
        for i, user_id in enumerate(user_ids):
            if i:
                self.text(", ")
            self.user(user_id)
        return self

    def content(
        self,
        kind: NoticeKind,
        event_id: str,
        formatted: bool = True,
        msgtype: str = "m.notice",
    ) -> dict[str, Any]:
        content: dict[str, Any] = {
            "msgtype": msgtype,
            "body": "".join(self._plain),
            NOTICE_KEY: kind.value,
            EVENT_ID_KEY: event_id,
            "m.mentions": {"user_ids": list(self._mentions)},
        }
        if formatted:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = "".join(self._html)
        return content


def content_size(content: dict[str, Any]) -> int:
    """The size of ``content`` as JSON, in bytes."""
    return len(json.dumps(content, ensure_ascii=False).encode("utf-8"))


@attrs.frozen
class HowToJoin:
    """What the ``started`` notice says besides the rooms."""

    #: The deadline as a time of day (:func:`time_of_day`), if there is one.
    until: str | None = None
    #: ``move: choose``: members choose their room.
    choose: bool = False
    #: ``room_capacity``, if the start set one.
    capacity: int | None = None
    #: The parent has a call, re-created in every room (calls.py).
    call: bool = False

    @property
    def headline(self) -> str:
        text = "Break-out started" + (f", until {self.until}" if self.until else "")
        text += ": choose a room" if self.choose else ": join your room"
        if self.capacity is not None:
            people = "1 person" if self.capacity == 1 else f"{self.capacity} people"
            text += f" (up to {people} each)"
        return text + "." + (f" {CALL_READY} in each room." if self.call else "")


def started(
    event_id: str,
    rooms: Sequence[tuple[RoomLink, Sequence[str]]],
    how: HowToJoin = HowToJoin(),
) -> dict[str, Any]:
    """In the parent: every child with its link and its users, the deadline as
    a time of day, and whether people choose their room.

    The users are left out when the notice would be too large for an event.
    """
    for with_users in (True, False):
        message = _Message().text(how.headline)
        for room, users in rooms:
            message.line().text("• ").room(room)
            if with_users and users:
                message.text(": ").users(users)
        content = message.content(NoticeKind.STARTED, event_id)
        if content_size(content) <= MAX_CONTENT_BYTES:
            break
    return content


def welcome(
    event_id: str,
    room_name: str | None,
    parent: RoomLink,
    seconds_left: int | None,
    call: bool = False,
) -> dict[str, Any]:
    """In each child: which break-out this is, the way back, the time, and
    whether a call is ready (the parent's, re-created here)."""
    message = _Message().text(f"Welcome to {room_name}! " if room_name else "Welcome! ")
    message.text("This is a break-out room of ").room(parent).text(".")
    if seconds_left is not None:
        message.text(f" You have {time_left(seconds_left)}.")
    if call:
        message.text(f" {CALL_READY} in this room.")
    return message.content(NoticeKind.WELCOME, event_id)


def warning(event_id: str, seconds_left: int) -> dict[str, Any]:
    """In each child, before the deadline."""
    message = _Message().text(f"{time_left(seconds_left)} left in this break-out.")
    return message.content(NoticeKind.WARNING, event_id, formatted=False)


def deadline(event_id: str, seconds_left: int | None) -> dict[str, Any]:
    """In each child, after the deadline moved or was lifted."""
    text = (
        "The deadline was lifted: no time limit."
        if seconds_left is None
        else f"New deadline: {time_left(seconds_left)} left."
    )
    return _Message().text(text).content(NoticeKind.DEADLINE, event_id, False)


def broadcast(event_id: str, body: str) -> dict[str, Any]:
    """In each child: the host's words, as they are."""
    return _Message().text(body).content(NoticeKind.BROADCAST, event_id, False)


def ended_in_child(
    event_id: str, parent: RoomLink, message: str | None
) -> dict[str, Any]:
    """In each child: the end, the host's message, the way back."""
    notice = _Message()
    if message:
        notice.text(message).line().line()
    notice.text("The break-out has ended: back to ").room(parent).text(".")
    return notice.content(NoticeKind.ENDED, event_id)


def ended_in_parent(event_id: str) -> dict[str, Any]:
    """In the parent: everyone is back."""
    return (
        _Message()
        .text("The break-out has ended. Welcome back!")
        .content(NoticeKind.ENDED, event_id, False)
    )


def help_request(
    event_id: str,
    hosts: Sequence[str],
    asking: str,
    room: RoomLink,
    message: str | None,
    muted: bool = False,
) -> dict[str, Any]:
    """In the parent: who asks for help, from which room, mentioning the
    ``hosts`` so that it alerts them.

    An ``m.text``, not an ``m.notice``: Matrix's default push rule
    ``.m.rule.suppress_notices`` silences every notice before a mention is
    looked at. ``muted``: the asker may not post in the parent, so the acting
    user sends it, and it carries a fixed text, never the asker's words
    (``message`` is left out).
    """
    notice = _Message().users(hosts).text(": ").user(asking, mention=False)
    notice.text(" asks for help in ").room(room).text(".")
    if muted:
        notice.text(" (They may not post in this room: sent for them.)")
    elif message:
        notice.line().text(message)
    return notice.content(NoticeKind.HELP, event_id, msgtype="m.text")
