"""End to end: a real Synapse process with the module, on SQLite and PostgreSQL.

- The admin API driven over HTTP with treq: start, get, end.
- Crash recovery (SPEC section 4): Synapse is killed with SIGKILL in the middle
  of a 40-room break-out, at several points, and started again; within
  ``recovery_interval_seconds`` no room of that operation is left and the
  parent's break-out state is unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import treq
from synapse_process import HttpError, SynapseProcess, free_port, postgres_database
from twisted.internet import defer, reactor
from twisted.trial import unittest as trial
from twisted.web.client import HTTPConnectionPool

BASE = "/_synapse/client/breakout/v1"
UNSTABLE = "org.matrix.msc3985.breakout"
RECOVERY_SECONDS = 10
ROOMS = 40


def engines() -> list[str]:
    # One database a run: the SQLite run (tox -e py) and the PostgreSQL run
    # (tox -e postgres) each take their own, not both.
    return ["postgres"] if os.environ.get("SYNAPSE_POSTGRES") else ["sqlite"]


class Homeserver:
    """A started Synapse with an admin, a host, members and a public parent."""

    def __init__(
        self, workdir: Path, engine: str, module_config: dict[str, Any] | None = None
    ):
        database = (
            postgres_database(f"breakout_e2e_{os.getpid()}")
            if engine == "postgres"
            else None
        )
        self.synapse = SynapseProcess(
            workdir,
            port=free_port(),
            module_config={
                "recovery_interval_seconds": RECOVERY_SECONDS,
                **(module_config or {}),
            },
            database=database,
            # Synapse's own default rate limits: the module must not trip them.
            rate_limits=True,
        )
        try:
            self.synapse.start()
            self.admin, self.admin_tok = self.synapse.register("admin", admin=True)
            self.host, self.host_tok = self.synapse.register("host")
            self.members = [self.synapse.register(f"m{i}") for i in range(4)]
            self.parent = self.synapse.create_room(self.host_tok, preset="public_chat")
            for _, tok in self.members:
                self.synapse.join(tok, self.parent)
        except BaseException:
            self.synapse.stop()  # leave no process behind
            raise

    def api(
        self, method: str, path: str, body: Any = None, tok: str | None = None
    ) -> Any:
        return self.synapse.request(
            method, BASE + path, tok or self.admin_tok, body, timeout=300
        )

    def parent_path(self) -> str:
        return "/rooms/" + urllib.parse.quote(self.parent)

    def rooms(self) -> set[str]:
        listed = self.synapse.request(
            "GET", "/_synapse/admin/v1/rooms?limit=1000", self.admin_tok
        )
        return {r["room_id"] for r in listed["rooms"]}

    def breakout_state(self) -> Any:
        try:
            return self.synapse.request(
                "GET",
                f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.parent)}/state/{UNSTABLE}/",
                self.host_tok,
            )
        except HttpError as e:
            if e.status == 404:
                return None
            raise


@pytest.fixture(params=engines())
def homeserver(request: pytest.FixtureRequest) -> Iterator[Homeserver]:
    workdir = Path(tempfile.mkdtemp(prefix="breakout-e2e-"))
    hs = None
    try:
        hs = Homeserver(workdir, request.param)
        yield hs
    finally:
        if hs is not None:
            hs.synapse.stop()
        if not os.environ.get("KEEP_E2E"):
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("kill_after_rooms", [1, 20, 38])
def test_sigkill_mid_breakout_leaves_no_room(
    homeserver: Homeserver, kill_after_rooms: int
) -> None:
    hs = homeserver
    baseline = hs.rooms()
    state_before = hs.breakout_state()
    body = {
        "acting_user": hs.host,
        "rooms": [{"name": f"Room {i}"} for i in range(ROOMS)],
        "move": "suggest",
        "txn_id": "crash",
    }
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = hs.api("POST", hs.parent_path(), body)
        except Exception as e:  # the connection dies with the process
            outcome["error"] = e

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "result" not in outcome:
        if len(hs.rooms() - baseline) >= kill_after_rooms:
            break
        time.sleep(0.05)
    assert "result" not in outcome, "the break-out finished before the kill point"
    made = hs.rooms() - baseline
    hs.synapse.kill()
    caller.join(timeout=60)
    assert "error" in outcome
    assert len(made) >= kill_after_rooms

    hs.synapse.start()
    started = time.monotonic()
    left = hs.rooms() - baseline
    while left and time.monotonic() - started < RECOVERY_SECONDS:
        time.sleep(0.25)
        left = hs.rooms() - baseline
    assert left == set(), f"{len(left)} rooms of the killed operation are left"
    assert hs.breakout_state() == state_before
    # Asking again with the same txn_id tells the caller what happened.
    with pytest.raises(HttpError) as info:
        hs.api("POST", hs.parent_path(), body)
    assert info.value.status == 500 and "rolled back" in info.value.body["error"]
    # And the parent is free for a new break-out.
    result = hs.api(
        "POST",
        hs.parent_path(),
        {**body, "rooms": body["rooms"][:2], "txn_id": "after"},
    )
    assert len(result["rooms"]) == 2


class TreqEndToEndTestCase(trial.TestCase):
    """Start, get and end over HTTP with treq, against the real process."""

    def setUp(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="breakout-treq-"))
        self.hs = Homeserver(self.workdir, "sqlite")
        # No kept-alive connections: trial checks that the reactor is clean.
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    def tearDown(self) -> defer.Deferred[None]:
        self.hs.synapse.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.pool.closeCachedConnections()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = self.hs.synapse.base_url + BASE + path
        headers = {"Authorization": f"Bearer {self.hs.admin_tok}"}
        data = json.dumps(body).encode() if body is not None else None
        response = await treq.request(
            method, url, headers=headers, data=data, pool=self.pool
        )
        return response.code, json.loads(await response.text())

    def test_start_get_end(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._start_get_end())

    async def _start_get_end(self) -> None:
        users = [u for u, _ in self.hs.members]
        path = self.hs.parent_path()
        code, started = await self.call(
            "POST",
            path,
            {
                "acting_user": self.hs.host,
                "auto_assign": {"rooms": 2, "users": "joined"},
                "duration_seconds": 600,
            },
        )
        self.assertEqual(code, 200, started)
        self.assertEqual(
            sorted(u for r in started["rooms"] for u in r["users"]), sorted(users)
        )
        self.assertEqual(started["failed_users"], [])
        code, current = await self.call("GET", path)
        self.assertEqual(code, 200)
        self.assertTrue(current["active"])
        self.assertEqual(current["ends_at"], started["ends_at"])
        self.assertEqual(
            {r["room_id"] for r in current["rooms"]},
            {r["room_id"] for r in started["rooms"]},
        )
        self.assertTrue(
            all(r["joined_members"] == 1 for r in current["rooms"])
        )  # the host; others invited
        code, ended = await self.call(
            "DELETE", path, {"message": "Back to the main room"}
        )
        self.assertEqual(code, 200, ended)
        code, current = await self.call("GET", path)
        self.assertFalse(current["active"])
        code, error = await self.call("DELETE", path)
        self.assertEqual((code, error["errcode"]), (404, "M_NOT_FOUND"))


def test_deadline_passed_while_down_ends_the_breakout_after_restart(
    homeserver: Homeserver,
) -> None:
    hs = homeserver
    started = hs.api(
        "POST",
        hs.parent_path(),
        {"acting_user": hs.host, "rooms": [{"name": "A"}], "duration_seconds": 2},
    )
    hs.synapse.kill()
    time.sleep(3)  # the deadline passes while Synapse is down
    hs.synapse.start()
    deadline = time.monotonic() + 15
    while hs.api("GET", hs.parent_path())["active"] and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not hs.api("GET", hs.parent_path())["active"]
    child = started["rooms"][0]["room_id"]

    def notices() -> list[str]:
        messages = hs.synapse.request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(child)}/messages?dir=b&limit=50",
            hs.host_tok,
        )
        return [
            e["content"]["body"]
            for e in messages["chunk"]
            if e["type"] == "m.room.message"
            and e["content"].get("org.matrix.msc3985.notice") == "ended"
        ]

    # The emptied event goes first, the notices right after it.
    while not notices() and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(1)  # a second notice, if there were one, would be here by now
    (ended,) = notices()
    assert ended.startswith("Time is up\n")


@pytest.mark.parametrize("engine", engines())
def test_sigkill_mid_placement_goes_on_after_restart(engine: str) -> None:
    """2,000 users placed in the background; Synapse is killed half-way and
    started again: the placement completes, nobody is invited twice, nothing
    is rolled back."""
    workdir = Path(tempfile.mkdtemp(prefix="breakout-place-"))
    synapse = SynapseProcess(
        workdir,
        port=free_port(),
        module_config={
            "recovery_interval_seconds": RECOVERY_SECONDS,
            # Invitees need not exist for an invite; they need not be members.
            "users_must_be_members": False,
        },
        database=postgres_database(f"breakout_place_{os.getpid()}")
        if engine == "postgres"
        else None,
    )
    try:
        synapse.start()
        _, tok = synapse.register("admin", admin=True)
        parent = synapse.create_room(tok, preset="public_chat")
        path = BASE + "/rooms/" + urllib.parse.quote(parent)
        users = [f"@p{i}:{synapse.server_name}" for i in range(2000)]
        body = {"auto_assign": {"users": users, "room_size": 50}, "wait": False}
        op_id = synapse.request("POST", path, tok, body, timeout=120)["operation_id"]
        op_path = BASE + "/operations/" + urllib.parse.quote(op_id)

        def progress() -> Any:
            return synapse.request("GET", op_path, tok)

        deadline = time.monotonic() + 300
        while progress()["progress"]["users_placed"] < 300:
            assert time.monotonic() < deadline, "placement did not start"
            time.sleep(0.05)
        before = progress()
        assert before["state"] == "committed" and before["response"] is None
        synapse.kill()

        synapse.start()
        deadline = time.monotonic() + 300
        while (after := progress())["response"] is None:
            assert time.monotonic() < deadline, f"placement not resumed: {after}"
            time.sleep(0.25)
        assert after["state"] == "committed"
        assert after["progress"] == {
            "rooms_created": 40,
            "rooms_total": 40,
            "users_placed": 2000,
            "users_total": 2000,
            "failed_users": 0,
        }
        answer = after["response"]
        assert answer["failed_users"] == []
        assert len(answer["rooms"]) == 40
        event = synapse.request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(parent)}/state/{UNSTABLE}/",
            tok,
        )
        assert set(event[UNSTABLE]) == {r["room_id"] for r in answer["rooms"]}
        invited: list[str] = []
        member_filter = urllib.parse.quote(json.dumps({"types": ["m.room.member"]}))
        for room in answer["rooms"]:
            chunk = synapse.request(
                "GET",
                f"/_matrix/client/v3/rooms/{urllib.parse.quote(room['room_id'])}"
                f"/messages?dir=b&limit=1000&filter={member_filter}",
                tok,
            )["chunk"]
            here = [
                e["state_key"]
                for e in chunk
                if e["content"].get("membership") == "invite"
            ]
            assert sorted(here) == sorted(room["users"])
            invited += here
        assert sorted(invited) == sorted(users)  # each invited exactly once
    finally:
        synapse.stop()
        if not os.environ.get("KEEP_E2E"):
            shutil.rmtree(workdir, ignore_errors=True)
