"""The notice templates (notices.py): links, mentions, the size rule, the words."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from synapse_breakout.matrix import notices
from synapse_breakout.matrix.notices import (
    EVENT_ID_KEY,
    MAX_CONTENT_BYTES,
    NOTICE_KEY,
    HowToJoin,
    RoomLink,
    content_size,
    time_left,
    time_of_day,
)

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

TABLE = RoomLink("!abc:example.org", "Table <1>", ("example.org",))
PARENT = RoomLink("!main:example.org", "Main room", ("example.org",))


def links(formatted_body: str) -> list[str]:
    return [
        urllib.parse.unquote(h) for h in re.findall(r'href="([^"]+)"', formatted_body)
    ]


def test_room_link_is_matrix_to_with_via() -> None:
    assert TABLE.url == "https://matrix.to/#/!abc:example.org?via=example.org"


def test_started_links_every_room_and_mentions_its_users() -> None:
    content = notices.started(
        "$ev", [(TABLE, ["@a:example.org", "@b:example.org"]), (PARENT, [])]
    )
    assert content[NOTICE_KEY] == "started"
    assert content[EVENT_ID_KEY] == "$ev"
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {"user_ids": ["@a:example.org", "@b:example.org"]}
    assert links(content["formatted_body"]) == [
        "https://matrix.to/#/!abc:example.org?via=example.org",
        "https://matrix.to/#/@a:example.org",
        "https://matrix.to/#/@b:example.org",
        "https://matrix.to/#/!main:example.org?via=example.org",
    ]
    # Names are escaped in HTML, kept in the plain body.
    assert "Table &lt;1&gt;" in content["formatted_body"]
    assert content["body"].startswith("Break-out started: join your room.\n")
    assert (
        "• Table <1> (https://matrix.to/#/!abc:example.org?via=example.org)"
        in (content["body"])
    )


def test_started_leaves_users_out_when_too_large() -> None:
    users = [f"@participant-{i:05d}:example.org" for i in range(1000)]
    content = notices.started("$ev", [(TABLE, users), (PARENT, ["@x:example.org"])])
    assert content_size(content) <= MAX_CONTENT_BYTES
    assert content["m.mentions"] == {"user_ids": []}
    assert "@participant" not in content["body"]
    assert len(links(content["formatted_body"])) == 2
    small = notices.started("$ev", [(TABLE, users[:10])])
    assert len(small["m.mentions"]["user_ids"]) == 10


def test_welcome_links_back_and_says_the_time() -> None:
    content = notices.welcome("$ev", "Table 1", PARENT, 1800)
    assert content["body"] == (
        "Welcome to Table 1! This is a break-out room of Main room "
        "(https://matrix.to/#/!main:example.org?via=example.org). You have 30 minutes."
    )
    assert links(content["formatted_body"]) == [PARENT.url]
    assert "You have" not in notices.welcome("$ev", None, PARENT, None)["body"]


def test_help_is_a_text_that_mentions_the_hosts_and_links_the_room() -> None:
    hosts = ["@host:example.org", "@admin:example.org"]
    content = notices.help_request(
        "$ev", hosts, "@a:example.org", TABLE, "We are stuck"
    )
    assert content[NOTICE_KEY] == "help"
    # m.text: Matrix's default rules silence every m.notice, mentions included.
    assert content["msgtype"] == "m.text"
    assert content["m.mentions"]["user_ids"] == hosts
    assert links(content["formatted_body"]) == [
        "https://matrix.to/#/@host:example.org",
        "https://matrix.to/#/@admin:example.org",
        "https://matrix.to/#/@a:example.org",
        TABLE.url,
    ]
    assert content["body"].endswith("\nWe are stuck")


def test_help_for_a_muted_participant_never_carries_their_words() -> None:
    content = notices.help_request(
        "$ev", ["@host:example.org"], "@a:example.org", TABLE, "evil", muted=True
    )
    assert "evil" not in content["body"] and "evil" not in content["formatted_body"]
    assert "@a:example.org asks for help in Table <1>" in content["body"]
    assert content["m.mentions"]["user_ids"] == ["@host:example.org"]


def test_plain_kinds() -> None:
    assert notices.warning("$ev", 300)["body"] == "5 minutes left in this break-out."
    assert notices.deadline("$ev", 600)["body"] == "New deadline: 10 minutes left."
    assert "no time limit" in notices.deadline("$ev", None)["body"]
    assert notices.broadcast("$ev", "Hi <all>")["body"] == "Hi <all>"
    ended = notices.ended_in_child("$ev", PARENT, "Thanks")
    assert ended["body"].startswith("Thanks\n\nThe break-out has ended: back to Main")
    assert links(ended["formatted_body"]) == [PARENT.url]
    for content in (notices.warning("$e", 1), notices.ended_in_parent("$e")):
        assert content["m.mentions"] == {"user_ids": []}


def test_time_left_in_words() -> None:
    assert time_left(1) == "1 second"
    assert time_left(45) == "45 seconds"
    assert time_left(60) == "1 minute"
    assert time_left(299) == "5 minutes"
    assert time_left(3600) == "1 hour"
    assert time_left(5400) == "1 hour 30 minutes"
    assert time_left(7260) == "2 hours 1 minute"


def test_time_of_day_for_a_banner_that_does_not_tick() -> None:
    # 2026-08-24 14:30:59 UTC, seen from 14:00 the same day and from the day before.
    at = 1787581859000
    assert time_of_day(at, at - 1800_000) == "14:30 UTC"
    assert time_of_day(at, at - 30 * 3600_000) == "2026-08-24 14:30 UTC"
    started = notices.started("$ev", [(TABLE, [])], HowToJoin(until="14:30 UTC"))
    assert started["body"].startswith(
        "Break-out started, until 14:30 UTC: join your room.\n"
    )


def test_started_of_a_choose_breakout_says_choose_a_room() -> None:
    how = HowToJoin(choose=True, capacity=8)
    content = notices.started("$ev", [(TABLE, []), (PARENT, [])], how)
    assert content["body"] == (
        "Break-out started: choose a room (up to 8 people each).\n"
        f"• Table <1> ({TABLE.url})\n• Main room ({PARENT.url})"
    )
    assert links(content["formatted_body"]) == [TABLE.url, PARENT.url]
    one = HowToJoin(until="09:05 UTC", choose=True, capacity=1).headline
    assert (
        one
        == "Break-out started, until 09:05 UTC: choose a room (up to 1 person each)."
    )
