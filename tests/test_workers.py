"""Synapse's worker model end to end: real processes, as operators run it.

PostgreSQL, Debian's ``redis-server`` on loopback, a main process and two
generic workers, the module loaded on all three, and the module's API routed
to the workers by a small reverse proxy (``RoutingProxy``: the routes of
docs/operations.md). What SPEC section 7 promises for workers:

- the API on any process: a start on worker 1, GET and DELETE on worker 2;
- timers and ejection exactly once (on the instance that runs background
  tasks, here the main process);
- recovery of a start whose worker died and never came back, within the
  lease (30 s) plus ``recovery_interval_seconds``;
- the same ``txn_id`` sent to both workers at once creates one break-out;
- ``room_capacity`` holds with joins sent to two workers at once: of two
  joins racing for the last place, one gets it (docs/rules.md).

Runs in ``tox -e workers`` (BREAKOUT_WORKERS=1; needs SYNAPSE_POSTGRES_*,
``redis-server`` and Synapse's ``redis`` extra); skipped elsewhere.
"""

from __future__ import annotations

import http.client
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from synapse_process import (
    HttpError,
    SynapseProcess,
    WorkerProcess,
    free_port,
    postgres_database,
)

BASE = "/_synapse/client/breakout/v1"
UNSTABLE = "org.matrix.msc3985.breakout"
RECOVERY_SECONDS = 5
#: SPEC section 4: a start on a worker that died is rolled back within a lease
#: of at most 30 s plus recovery_interval_seconds.
LEASE_SECONDS = float(os.environ.get("BREAKOUT_WORKER_LEASE_SECONDS", "30"))
ROOMS = 40
MODERATOR_LIMIT = 3

if os.environ.get("BREAKOUT_WORKERS") != "1":
    pytest.skip("run by tox -e workers", allow_module_level=True)
if not (os.environ.get("SYNAPSE_POSTGRES_HOST") and shutil.which("redis-server")):
    raise RuntimeError("the workers test needs SYNAPSE_POSTGRES_* and redis-server")


def wait_for(
    check: Callable[[], Any], timeout: float, what: str, every: float = 0.25
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(every)


class Redis:
    """Debian's redis-server on a free loopback port, nothing saved to disk."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def answers() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.connect()
                conn.close()
                return True
            except OSError:
                return False

        wait_for(answers, 10, "redis-server listens")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class RoutingProxy:
    """A reverse proxy with the routes of docs/operations.md.

    ``/_synapse/client/breakout/`` goes to the workers in turn (as an nginx
    upstream with two servers does); everything else to the main process. A
    test pins one request (of any path: a ``/join`` too, which generic workers
    serve) to a worker with the ``X-Upstream`` header, the way a proxy's
    sticky routing would. ``served`` records who answered what.
    """

    def __init__(self, main: SynapseProcess, workers: list[WorkerProcess]):
        self.main = main
        self.workers = {w.name: w for w in workers}
        self._turn = itertools.cycle(workers)
        self._lock = threading.Lock()
        self.served: list[tuple[str, str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                upstream = proxy.route(self.path, self.headers.get("X-Upstream"))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", upstream.port, 300)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type")
                }
                conn.request(self.command, self.path, body, headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                name = getattr(upstream, "name", "main")
                with proxy._lock:
                    proxy.served.append((self.command, self.path, name))
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type", ""))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def route(self, path: str, pinned: str | None) -> SynapseProcess:
        if pinned:
            return self.workers[pinned]
        if not path.startswith("/_synapse/client/breakout/"):
            return self.main
        with self._lock:
            return next(self._turn)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Deployment:
    """Main + two workers + Redis + PostgreSQL, behind the routing proxy."""

    def __init__(self, workdir: Path):
        self.redis = Redis(workdir)
        replication = free_port()
        self.main = SynapseProcess(
            workdir,
            port=free_port(),
            module_config={
                "recovery_interval_seconds": RECOVERY_SECONDS,
                # Moderators use the API, a few starts an hour each (the
                # limit's test); every other test acts as a server admin.
                "admin_api": {"allow_room_moderators": True},
                "moderator_starts_per_hour": MODERATOR_LIMIT,
            },
            database=postgres_database(f"breakout_workers_{os.getpid()}"),
            extra_config={
                "redis": {
                    "enabled": True,
                    "host": "127.0.0.1",
                    "port": self.redis.port,
                },
                "instance_map": {"main": {"host": "127.0.0.1", "port": replication}},
            },
        )
        self.main.write_config()
        self._add_replication_listener(replication)
        self.workers = [
            WorkerProcess(self.main, f"worker{i}", free_port()) for i in (1, 2)
        ]
        self.proxy: RoutingProxy | None = None
        try:
            self.main.start()
            for worker in self.workers:
                worker.start()
        except BaseException:
            self.stop()  # leave no process behind, Redis included
            raise
        self.proxy = RoutingProxy(self.main, self.workers)
        # Through the proxy from here on, as a client sees the server.
        self.front = SynapseProcess(workdir, port=self.proxy.port)
        self.front.shared_secret = self.main.shared_secret
        self.admin, self.admin_tok = self.front.register("admin", admin=True)

    def _add_replication_listener(self, port: int) -> None:
        import yaml

        config = yaml.safe_load(self.main.config_path.read_text())
        config["listeners"].append(
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "resources": [{"names": ["replication"]}],
            }
        )
        self.main.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for process in [*self.workers, self.main]:
            process.stop()
        self.redis.stop()

    # --- calls through the proxy -------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        worker: str | None = None,
        tok: str | None = None,
    ) -> Any:
        import json
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.front.base_url + BASE + path, data=data, method=method
        )
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {tok or self.admin_tok}")
        if worker:
            req.add_header("X-Upstream", worker)
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise HttpError(e.code, json.loads(e.read() or b"{}")) from None

    def served_by(self, method: str, path: str) -> list[str]:
        assert self.proxy is not None
        return [w for m, p, w in self.proxy.served if m == method and p == BASE + path]

    def rooms(self) -> set[str]:
        listed = self.front.request(
            "GET", "/_synapse/admin/v1/rooms?limit=1000", self.admin_tok
        )
        return {r["room_id"] for r in listed["rooms"]}


class Parent:
    """A public parent room with a host and members, for one test."""

    def __init__(self, d: Deployment, tag: str, members: int = 3):
        self.d = d
        self.host, self.host_tok = d.front.register(f"host_{tag}")
        self.members = [d.front.register(f"{tag}_{i}") for i in range(members)]
        self.room_id = d.front.create_room(self.host_tok, preset="public_chat")
        for _, tok in self.members:
            d.front.join(tok, self.room_id)
        self.path = "/rooms/" + urllib.parse.quote(self.room_id)

    def timeline(self, room_id: str | None = None) -> list[dict[str, Any]]:
        room = urllib.parse.quote(room_id or self.room_id)
        events: list[dict[str, Any]] = []
        token = ""
        while True:
            page = self.d.front.request(
                "GET",
                f"/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100{token}",
                self.host_tok,
            )
            events += page["chunk"]
            if not page.get("end") or not page["chunk"]:
                return events
            token = "&from=" + urllib.parse.quote(page["end"])

    def emptied_events(self) -> list[dict[str, Any]]:
        """The break-out events in the parent that end a break-out."""
        return [
            e
            for e in self.timeline()
            if e["type"] == UNSTABLE and not any(e["content"].get(UNSTABLE) or {})
        ]

    def breakout_state(self) -> Any:
        try:
            return self.d.front.request(
                "GET",
                f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.room_id)}"
                f"/state/{UNSTABLE}/",
                self.host_tok,
            )
        except HttpError as e:
            if e.status == 404:
                return None
            raise


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    workdir = Path(tempfile.mkdtemp(prefix="breakout-workers-"))
    d = None
    try:
        d = Deployment(workdir)
        yield d
    finally:
        if d is not None:
            d.stop()
        if not os.environ.get("KEEP_E2E"):
            shutil.rmtree(workdir, ignore_errors=True)


def test_the_module_loads_on_every_process(deployment: Deployment) -> None:
    for process in [deployment.main, *deployment.workers]:
        assert "synapse_breakout loaded" in process.log_path.read_text()


def test_start_on_one_worker_get_and_delete_on_the_other(
    deployment: Deployment,
) -> None:
    d = deployment
    p = Parent(d, "any")
    started = d.api(
        "POST",
        p.path,
        {"acting_user": p.host, "auto_assign": {"rooms": 2, "users": "joined"}},
        worker="worker1",
    )
    current = d.api("GET", p.path, worker="worker2")
    assert current["active"] and current["event_id"] == started["event_id"]
    assert {r["room_id"] for r in current["rooms"]} == {
        r["room_id"] for r in started["rooms"]
    }
    d.api("DELETE", p.path, {"message": "Back"}, worker="worker2")
    assert d.api("GET", p.path, worker="worker1")["active"] is False
    assert d.served_by("POST", p.path) == ["worker1"]
    assert d.served_by("DELETE", p.path) == ["worker2"]
    assert len(p.emptied_events()) == 1


def test_a_deadline_ends_the_breakout_exactly_once(deployment: Deployment) -> None:
    d = deployment
    p = Parent(d, "deadline")
    started = d.api(
        "POST",
        p.path,
        {"acting_user": p.host, "rooms": [{"name": "A"}], "duration_seconds": 2},
        worker="worker2",
    )
    wait_for(lambda: not d.api("GET", p.path)["active"], 30, "the deadline ends it")
    child = started["rooms"][0]["room_id"]

    def time_is_up() -> list[dict[str, Any]]:
        return [
            e
            for e in p.timeline(child)
            if e["type"] == "m.room.message"
            and e["content"].get("body", "").startswith("Time is up")
        ]

    wait_for(time_is_up, 30, "the notice in the child")
    # Two timer passes more: a second end, on any process, would show by now.
    time.sleep(3)
    assert len(p.emptied_events()) == 1
    assert len(time_is_up()) == 1


def test_ejection_runs_once(deployment: Deployment) -> None:
    d = deployment
    p = Parent(d, "eject")
    leaver, leaver_tok = p.members[0]
    started = d.api(
        "POST",
        p.path,
        {
            "acting_user": p.host,
            "rooms": [{"name": "A", "users": [leaver]}],
            "move": "join",
        },
        worker="worker1",
    )
    child = started["rooms"][0]["room_id"]
    d.front.request(
        "POST",
        f"/_matrix/client/v3/rooms/{urllib.parse.quote(p.room_id)}/leave",
        leaver_tok,
        {},
    )

    def removals() -> list[dict[str, Any]]:
        return [
            e
            for e in p.timeline(child)
            if e["type"] == "m.room.member"
            and e["state_key"] == leaver
            and e["content"]["membership"] in ("leave", "ban")
        ]

    wait_for(removals, 30, "the leaver is removed from the child")
    time.sleep(6)  # one more ejection pass (every 5 s) on any process
    assert len(removals()) == 1


def test_same_txn_id_on_both_workers_at_once_makes_one_breakout(
    deployment: Deployment,
) -> None:
    d = deployment
    p = Parent(d, "txn")
    before = d.rooms()
    body = {
        "acting_user": p.host,
        "rooms": [{"name": "A"}, {"name": "B"}],
        "txn_id": "t",
    }
    answers: dict[str, Any] = {}
    gate = threading.Barrier(2)

    def call(worker: str) -> None:
        gate.wait()
        try:
            answers[worker] = d.api("POST", p.path, body, worker=worker)
        except HttpError as e:
            answers[worker] = e

    threads = [threading.Thread(target=call, args=(w,)) for w in ("worker1", "worker2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(d.served_by("POST", p.path)) == ["worker1", "worker2"]
    # One wins; the other gets the same answer, or, while the winner is still
    # under way, 409 saying so (docs/admin_api.md).
    won = [a for a in answers.values() if isinstance(a, dict)]
    assert won, answers
    for other in answers.values():
        if isinstance(other, HttpError):
            assert other.status == 409, other
            assert "txn_id 't' is still under way" in other.body["error"]
        else:
            assert other == won[0]
    assert len(d.rooms() - before) == 2
    assert d.api("GET", p.path)["event_id"] == won[0]["event_id"]
    # Asked again, on either worker: the first answer, nothing new.
    for worker in ("worker1", "worker2"):
        assert d.api("POST", p.path, body, worker=worker) == won[0]
    assert len(d.rooms() - before) == 2


def test_the_moderator_limit_holds_across_workers(deployment: Deployment) -> None:
    """Eight starts of one moderator at the same moment, on eight parents,
    alternately on both workers: exactly the limit succeed."""
    d = deployment
    _, host_tok = d.front.register("host_limit")
    mod, mod_tok = d.front.register("mod_limit")
    parents = []
    for _ in range(8):
        room = d.front.create_room(host_tok, preset="public_chat")
        d.front.grant(host_tok, room, mod, 50)
        d.front.join(mod_tok, room)
        parents.append("/rooms/" + urllib.parse.quote(room))
    gate = threading.Barrier(len(parents))
    codes: dict[str, int] = {}

    def start(path: str, worker: str) -> None:
        gate.wait()
        try:
            d.api("POST", path, {"rooms": [{"name": "A"}]}, worker=worker, tok=mod_tok)
            codes[path] = 200
        except HttpError as e:
            codes[path] = e.status

    workers = itertools.cycle(["worker1", "worker2"])
    threads = [
        threading.Thread(target=start, args=(path, next(workers))) for path in parents
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(codes.values()) == [200] * MODERATOR_LIMIT + [429] * (
        len(parents) - MODERATOR_LIMIT
    ), codes
    for path in parents:
        assert set(d.served_by("POST", path)) <= {"worker1", "worker2"}


def test_room_capacity_holds_with_joins_sent_to_two_workers(
    deployment: Deployment,
) -> None:
    d = deployment
    p = Parent(d, "cap", members=2)
    started = d.api(
        "POST",
        p.path,
        {
            "acting_user": p.host,
            "auto_assign": {"rooms": 5},
            "move": "choose",
            "room_capacity": 1,
        },
    )
    rooms = [r["room_id"] for r in started["rooms"]]

    def join(
        worker: str, tok: str, room: str, gate: threading.Barrier, answers: dict
    ) -> None:
        gate.wait()
        try:
            answers[worker] = d.front.request(
                "POST",
                f"/_matrix/client/v3/join/{urllib.parse.quote(room)}",
                tok,
                {},
                headers={"X-Upstream": worker},
            )
        except HttpError as e:
            answers[worker] = e

    for room in rooms:
        gate = threading.Barrier(2)
        answers: dict[str, Any] = {}
        threads = [
            threading.Thread(target=join, args=(worker, tok, room, gate, answers))
            for worker, (_, tok) in zip(("worker1", "worker2"), p.members, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        refused = [a for a in answers.values() if isinstance(a, HttpError)]
        assert len(answers) == 2 and len(refused) == 1, answers
        assert refused[0].status == 403, refused[0]
        assert refused[0].body["errcode"] == "ORG.MATRIX.MSC3985.ROOM_FULL"
    assert d.proxy is not None
    quoted = {f"/join/{urllib.parse.quote(room)}" for room in rooms}
    joins = [w for m, path, w in d.proxy.served if path.endswith(tuple(quoted))]
    assert sorted(joins) == ["worker1"] * 5 + ["worker2"] * 5
    got = d.api("GET", p.path)["rooms"]
    assert [(r["capacity"], r["counted_members"]) for r in got] == [(1, 1)] * 5


def test_sigkill_of_a_worker_mid_start_leaves_no_room(
    deployment: Deployment,
) -> None:
    """Worker 1 dies in a 40-room start and does not come back."""
    d = deployment
    p = Parent(d, "kill")
    state_before = p.breakout_state()
    baseline = d.rooms()
    body = {
        "acting_user": p.host,
        "rooms": [{"name": f"Room {i}"} for i in range(ROOMS)],
        "move": "suggest",
        "txn_id": "crash",
    }
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["result"] = d.api("POST", p.path, body, worker="worker1")
        except Exception as e:  # the connection dies with the worker
            outcome["error"] = e

    caller = threading.Thread(target=call)
    caller.start()
    wait_for(
        lambda: "result" in outcome or len(d.rooms() - baseline) >= 10,
        120,
        "ten rooms created",
        every=0.05,
    )
    assert "result" not in outcome, "the start finished before the kill"
    worker1 = d.workers[0]
    worker1.kill()
    killed = time.monotonic()
    caller.join(timeout=60)
    assert len(d.rooms() - baseline) >= 10

    bound = LEASE_SECONDS + RECOVERY_SECONDS + 10
    wait_for(
        lambda: not (d.rooms() - baseline), bound, "no room of the dead start left", 1
    )
    recovered_after = time.monotonic() - killed
    assert p.breakout_state() == state_before
    print(f"recovered {recovered_after:.1f}s after the kill (bound {bound:.0f}s)")
    # The same txn_id, on the other worker, says what happened.
    with pytest.raises(HttpError) as info:
        d.api("POST", p.path, body, worker="worker2")
    assert "rolled back" in info.value.body["error"]
    worker1.start()  # for whatever runs after
