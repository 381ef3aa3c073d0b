"""End to end, as participants: a real Matrix client library (matrix-nio)
against a real Synapse process; warnings across a restart.

- A participant signs in with matrix-nio, finds the ``started`` notice in the
  main room, joins their room through its matrix.to link, and reads the
  ``welcome`` notice there (docs/participants.md).
- Two clients race for the last place of a ``move: choose`` room with
  ``room_capacity``: one joins, the other is refused ``ROOM_FULL``
  (docs/rules.md, "Room capacity").
- Warnings are sent once each, also when Synapse is killed and started again:
  one sent before the kill is not sent again; one whose time passed while
  Synapse was down is sent late, with the time actually left.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    JoinError,
    JoinResponse,
    LoginResponse,
    RoomMessagesResponse,
)
from test_e2e import Homeserver, engines

NOTICE_KEY = "org.matrix.msc3985.notice"
#: The warnings of the restart test: at 60 and 30 seconds before the end.
WARNINGS = [60, 30]


@pytest.fixture(params=engines())
def participants_server(request: pytest.FixtureRequest) -> Iterator[Homeserver]:
    workdir = Path(tempfile.mkdtemp(prefix="breakout-e2e-p-"))
    hs = None
    try:
        hs = Homeserver(workdir, request.param, {"warn_before_end_seconds": WARNINGS})
        yield hs
    finally:
        if hs is not None:
            hs.synapse.stop()
        shutil.rmtree(workdir, ignore_errors=True)


async def notices(client: AsyncClient, room_id: str, kind: str) -> list[dict[str, Any]]:
    """The contents of the notices of ``kind`` in a room, newest first."""
    response = await client.room_messages(room_id, start="", limit=50)
    assert isinstance(response, RoomMessagesResponse), response
    return [
        event.source["content"]
        for event in response.chunk
        if event.source.get("type") == "m.room.message"
        and event.source["content"].get(NOTICE_KEY) == kind
    ]


async def wait_for(client: AsyncClient, room_id: str, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = await notices(client, room_id, kind)
        if found:
            return found[0]
        await asyncio.sleep(0.25)
    raise AssertionError(f"no {kind} notice in {room_id}")


def test_a_client_joins_through_the_started_notice(
    participants_server: Homeserver,
) -> None:
    hs = participants_server
    user, tok = hs.synapse.register("zoe", password="zoe-password")
    hs.synapse.join(tok, hs.parent)
    started = hs.api(
        "POST",
        hs.parent_path(),
        {
            "acting_user": hs.host,
            "rooms": [{"name": "Table 1", "users": [user]}, {"name": "Table 2"}],
            "duration_seconds": 600,
        },
    )
    table = started["rooms"][0]["room_id"]

    async def as_participant() -> None:
        client = AsyncClient(hs.synapse.base_url, user)
        try:
            assert isinstance(await client.login("zoe-password"), LoginResponse)
            notice = await wait_for(client, hs.parent, "started")
            assert user in notice["m.mentions"]["user_ids"]
            # The link next to the name "Table 1" in the notice.
            href = re.search(r'<a href="([^"]+)">Table 1</a>', notice["formatted_body"])
            assert href is not None, notice["formatted_body"]
            url = urllib.parse.urlsplit(href.group(1).replace("&amp;", "&"))
            room_id = urllib.parse.unquote(url.fragment.lstrip("/").split("?")[0])
            assert urllib.parse.parse_qs(url.fragment.split("?")[1])["via"] == [
                hs.synapse.server_name
            ]
            joined = await client.join(room_id)
            assert isinstance(joined, JoinResponse), joined
            assert joined.room_id == table
            welcome = await wait_for(client, room_id, "welcome")
            assert welcome["body"].startswith("Welcome to Table 1!")
            assert "You have 10 minutes." in welcome["body"]
            assert urllib.parse.quote(hs.parent, safe="!:") in welcome["formatted_body"]
        finally:
            await client.close()

    asyncio.run(as_participant())


def test_two_clients_race_for_the_last_place(
    participants_server: Homeserver,
) -> None:
    hs = participants_server
    racers = [hs.synapse.register(f"racer{i}", password=f"racer-{i}") for i in (0, 1)]
    for _, tok in racers:
        hs.synapse.join(tok, hs.parent)
    started = hs.api(
        "POST",
        hs.parent_path(),
        {
            "acting_user": hs.host,
            "auto_assign": {"rooms": 3},
            "move": "choose",
            "room_capacity": 1,
        },
    )
    rooms = [r["room_id"] for r in started["rooms"]]

    async def race() -> None:
        clients = [AsyncClient(hs.synapse.base_url, user) for user, _ in racers]
        try:
            for i, client in enumerate(clients):
                assert isinstance(await client.login(f"racer-{i}"), LoginResponse)
            for room in rooms:
                # Both joins on the wire at once, for the one place.
                results = await asyncio.gather(*(c.join(room) for c in clients))
                won = [r for r in results if isinstance(r, JoinResponse)]
                lost = [r for r in results if isinstance(r, JoinError)]
                assert (len(won), len(lost)) == (1, 1), results
                assert lost[0].status_code == "ORG.MATRIX.MSC3985.ROOM_FULL"
                assert lost[0].message.endswith(" is full (1 of 1)"), lost[0].message
        finally:
            for client in clients:
                await client.close()

    asyncio.run(race())
    got = hs.api("GET", hs.parent_path())["rooms"]
    assert [(r["capacity"], r["counted_members"]) for r in got] == [(1, 1)] * 3


def test_warnings_once_each_across_a_restart(participants_server: Homeserver) -> None:
    hs = participants_server
    duration = 95
    started = hs.api(
        "POST",
        hs.parent_path(),
        {
            "acting_user": hs.host,
            "rooms": [{"name": "A"}],
            "duration_seconds": duration,
        },
    )
    t0 = time.monotonic()
    child = started["rooms"][0]["room_id"]

    def warning_events() -> list[dict[str, Any]]:
        messages = hs.synapse.request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(child)}/messages"
            "?dir=f&limit=50",
            hs.host_tok,
        )
        return [
            e
            for e in messages["chunk"]
            if e["type"] == "m.room.message"
            and e["content"].get(NOTICE_KEY) == "warning"
        ]

    def warnings() -> list[str]:
        return [e["content"]["body"] for e in warning_events()]

    # The first warning, 60 seconds before the end, on time.
    while not warnings() and time.monotonic() - t0 < duration - 50:
        time.sleep(0.25)
    assert warnings() == ["1 minute left in this break-out."]
    hs.synapse.kill()
    # The second one's time (30 seconds before the end) passes while down,
    # and more than deadlines.ON_TIME_MS (5 s) with it: it is late.
    time.sleep(max(0.0, duration - 22 - (time.monotonic() - t0)))
    restarted_ms = time.time() * 1000
    hs.synapse.start()
    assert time.monotonic() - t0 < duration - 5, "Synapse took too long to start"
    deadline = t0 + duration + 30
    while len(warnings()) < 2 and time.monotonic() < deadline:
        time.sleep(0.25)
    first, late = warnings()
    assert first == "1 minute left in this break-out."
    # Late, after the restart: it says the time actually left when it was
    # sent (its timestamp against the deadline), not the nominal 30 seconds.
    match = re.fullmatch(r"(\d+) seconds? left in this break-out\.", late)
    assert match is not None, late
    assert warning_events()[1]["origin_server_ts"] >= restarted_ms
    assert 0 < int(match[1]) < 30, late
    while hs.api("GET", hs.parent_path())["active"] and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not hs.api("GET", hs.parent_path())["active"]
    assert len(warnings()) == 2
