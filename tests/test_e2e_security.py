"""The security fixes on a real Synapse process (SQLite, or PostgreSQL in the
postgres run): console sessions that cannot become admin keys, and the
moderator limit under starts at the same moment (docs/security.md)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synapse_process import HttpError, SynapseProcess, free_port
from test_e2e import postgres_database

BASE = "/_synapse/client/breakout/v1"
CONSOLE = "/_synapse/client/breakout/console/api"
LIMIT = 3


class Server:
    """One process for the module's tests: moderators may use the API, and
    start at most ``LIMIT`` break-outs an hour."""

    def __init__(self, workdir: Path):
        database = (
            postgres_database(f"breakout_security_{os.getpid()}")
            if os.environ.get("SYNAPSE_POSTGRES")
            else None
        )
        self.synapse = SynapseProcess(
            workdir,
            port=free_port(),
            module_config={
                "admin_api": {"allow_room_moderators": True},
                "moderator_starts_per_hour": LIMIT,
            },
            database=database,
        )
        self.synapse.start()
        self.admin, self.admin_tok = self.synapse.register("admin", admin=True)

    def request(self, method: str, path: str, tok: str | None, body: Any = None) -> Any:
        return self.synapse.request(method, path, tok, body, timeout=120)

    def status(self, method: str, path: str, tok: str | None, body: Any = None) -> int:
        try:
            self.request(method, path, tok, body)
        except HttpError as e:
            return e.status
        return 200

    def parent(self, host_tok: str, moderator: str | None = None) -> str:
        """A public room of the host, with ``moderator`` at 50 in it."""
        room = self.synapse.create_room(host_tok, preset="public_chat")
        if moderator:
            self.synapse.grant(host_tok, room, moderator, 50)
        return room

    def openid(self, user: str, tok: str) -> dict[str, Any]:
        quoted = urllib.parse.quote(user)
        return dict(
            self.request(
                "POST",
                f"/_matrix/client/v3/user/{quoted}/openid/request_token",
                tok,
                {},
            )
        )

    def session(self, credentials: dict[str, Any], room: str) -> str:
        body = {**credentials, "room_id": room}
        return str(
            self.request("POST", f"{CONSOLE}/session", None, body)["access_token"]
        )


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix="breakout-security-"))
    s = None
    try:
        s = Server(workdir)
        yield s
    finally:
        if s is not None:
            s.synapse.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def room_path(room: str) -> str:
    return f"{BASE}/rooms/{urllib.parse.quote(room)}"


def test_an_openid_token_makes_one_session_which_logout_all_ends(
    server: Server,
) -> None:
    host, host_tok = server.synapse.register("host1")
    parent = server.parent(host_tok)
    credentials = server.openid(host, host_tok)
    session = server.session(credentials, parent)
    assert server.status("GET", room_path(parent), session) == 200
    # The same OpenID token, a second time: no second session.
    with pytest.raises(HttpError) as second:
        server.session(credentials, parent)
    assert second.value.status == 401
    assert second.value.body["errcode"] == "M_UNKNOWN_TOKEN"
    # A token fetched before the logout, and the session: both dead after it.
    earlier = server.openid(host, host_tok)
    server.request("POST", "/_matrix/client/v3/logout/all", host_tok, {})
    assert server.status("GET", room_path(parent), session) == 401
    with pytest.raises(HttpError) as after:
        server.session(earlier, parent)
    assert after.value.status == 401


def test_an_admins_session_is_refused_admin_reads(server: Server) -> None:
    host, host_tok = server.synapse.register("host2")
    parent = server.parent(host_tok)
    private = server.synapse.create_room(host_tok, preset="private_chat")
    server.synapse.join(server.admin_tok, parent)
    session = server.session(server.openid(server.admin, server.admin_tok), parent)
    assert server.status("GET", f"{BASE}/flags", server.admin_tok) == 200
    assert server.status("GET", f"{BASE}/flags", session) == 403
    assert server.status("GET", room_path(private), server.admin_tok) == 200
    assert server.status("GET", room_path(private), session) == 403
    quoted = urllib.parse.quote(private)
    assert server.status("GET", f"{CONSOLE}/rooms/{quoted}", session) == 403
    body = {"rooms": [{"name": "A"}], "acting_user": host}
    assert server.status("POST", room_path(parent), session, body) == 403


def test_the_moderator_limit_holds_for_starts_at_the_same_moment(
    server: Server,
) -> None:
    _, host_tok = server.synapse.register("host3")
    mod, mod_tok = server.synapse.register("mod3")
    parents = [server.parent(host_tok, mod) for _ in range(8)]
    for parent in parents:
        server.synapse.join(mod_tok, parent)
    gate = threading.Barrier(len(parents))
    codes: list[int] = []

    def start(parent: str) -> None:
        gate.wait()
        codes.append(
            server.status(
                "POST", room_path(parent), mod_tok, {"rooms": [{"name": "A"}]}
            )
        )

    threads = [threading.Thread(target=start, args=(p,)) for p in parents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(codes) == [200] * LIMIT + [429] * (len(parents) - LIMIT)
    active = [
        server.request("GET", room_path(p), server.admin_tok)["active"] for p in parents
    ]
    assert active.count(True) == LIMIT
