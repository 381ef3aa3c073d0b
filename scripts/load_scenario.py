"""Many hosts at once on a real Synapse process (SPEC section 11): the scenario
of ``python -m benchmarks.load`` and, smaller, of tests/test_load.py.

Standard library only (and psycopg2 on PostgreSQL), beside synapse_process.py.
:class:`Conference` signs the people up: parents of N members each, one server
admin hosting them all, and a hall where some members chat. :class:`Chat` has
each of them post one message a second into the hall, timing each one.
:class:`Scenario` runs the phases, every parent at once: the starts
(auto-assigned; half ``wait: true``, half ``wait: false`` polled every 0.5 s,
as a 202 from ``wait: true`` is too); the changes (a move, a broadcast and a
deadline change per break-out); the ends (half with ``close_rooms``). Every
request is recorded (:class:`Recorder`). The invariants are its ``check_*``
methods, each a list of what is wrong: no 5xx, no orphan room, assignments
right, no pending invitation after the ends, no lock left.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from synapse_process import HttpError, SynapseProcess

API = "/_synapse/client/breakout/v1"
#: How often a host asks ``GET /operations/{id}`` after a 202.
POLL_SECONDS = 0.5
#: How long a request may take before it counts as unanswered (a reverse
#: proxy would end it at about 60 s: the durations are in the figures).
TIMEOUT = 600.0
#: How long a host follows a start before giving up on it.
FOLLOW_SECONDS = 1800.0
#: The homeserver's settings besides the module's: hundreds of sign-ups need
#: no strong password hashes; a conference's set-up makes its rooms and joins
#: their members faster than Synapse's defaults allow (SynapseProcess lifts the
#: other rate limits).
_UNLIMITED = {"per_second": 10000, "burst_count": 100000}
HOMESERVER = {
    "bcrypt_rounds": 4,
    "rc_room_creation": _UNLIMITED,
    "rc_joins_per_room": _UNLIMITED,
}
#: Each break-out's deadline when it starts, and what the change adds.
DURATION_SECONDS = 3600
ADD_SECONDS = 300


def quoted(room_id: str) -> str:
    return urllib.parse.quote(room_id)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank); NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def count_rows(database: dict[str, Any], table: str) -> int:
    """Rows of ``table`` in a Synapse ``database`` configuration's database."""
    if database["name"] == "sqlite3":
        with sqlite3.connect(database["args"]["database"]) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    import psycopg2

    args = {k: v for k, v in database["args"].items() if not k.startswith("cp_")}
    conn = psycopg2.connect(dbname=args.pop("database"), **args)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


@dataclasses.dataclass(frozen=True)
class Shape:
    """How large the conference is."""

    parents: int
    #: Members of each parent (the host comes on top).
    members: int
    #: Child rooms of each break-out (``auto_assign``).
    rooms: int
    #: Members who post one message a second into the hall.
    chatters: int


@dataclasses.dataclass(frozen=True)
class Call:
    """One request: what it was, its status (0: no answer), when it began
    (``time.monotonic()``) and how long it took."""

    kind: str
    status: int
    began: float
    seconds: float


class Recorder:
    """Makes requests and records each one; thread-safe."""

    def __init__(self, synapse: SynapseProcess):
        self.synapse = synapse
        self._lock = threading.Lock()
        self.calls: list[Call] = []

    def call(
        self, kind: str, method: str, path: str, token: str, body: Any = None
    ) -> tuple[int, Any]:
        """The request's status and body; errors are answers too."""
        began = time.monotonic()
        try:
            status, answer = self.synapse.call(
                method, path, token, body, timeout=TIMEOUT
            )
        except HttpError as e:
            status, answer = e.status, e.body
        except OSError as e:
            status, answer = 0, str(e)
        with self._lock:
            self.calls.append(Call(kind, status, began, time.monotonic() - began))
        return status, answer

    def seconds(self, kind: str, since: float, until: float) -> list[float]:
        """How long each ``kind`` request that began in [since, until) took."""
        with self._lock:
            return [
                c.seconds
                for c in self.calls
                if c.kind == kind and since <= c.began < until
            ]

    def server_errors(self) -> list[str]:
        """The requests that got a 5xx or no answer at all."""
        with self._lock:
            return [
                f"{c.kind}: HTTP {c.status}"
                for c in self.calls
                if c.status >= 500 or c.status == 0
            ]


@dataclasses.dataclass
class Parent:
    room_id: str
    members: list[str]


def at_once(work: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run every item of ``work`` in its own thread, all let go together."""
    gate = threading.Barrier(len(work))

    def run(item: Callable[[], Any]) -> Any:
        gate.wait()
        return item()

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(run, work))


class Conference:
    """A server admin hosting every parent, the members, and the hall."""

    def __init__(self, synapse: SynapseProcess, shape: Shape, workers: int = 4):
        self.shape = shape
        self.host, self.token = synapse.register("host", admin=True)
        with ThreadPoolExecutor(workers) as pool:
            people = list(
                pool.map(
                    synapse.register,
                    [
                        f"p{p}m{m}"
                        for p in range(shape.parents)
                        for m in range(shape.members)
                    ],
                )
            )
            self.parents: list[Parent] = []
            joins = []
            for p in range(shape.parents):
                room = synapse.create_room(
                    self.token, preset="public_chat", name=f"Session {p + 1}"
                )
                mine = people[p * shape.members : (p + 1) * shape.members]
                self.parents.append(Parent(room, [user for user, _ in mine]))
                joins += [(token, room) for _, token in mine]
            self.hall = synapse.create_room(
                self.token, preset="public_chat", name="Hall"
            )
            self.chatters = [
                people[(i % shape.parents) * shape.members + i // shape.parents][1]
                for i in range(shape.chatters)
            ]
            joins += [(token, self.hall) for token in self.chatters]
            list(pool.map(lambda join: synapse.join(*join), joins))


class Chat:
    """Each chatter posts one message a second into the hall (spread over the
    second; a late one is followed at once by the next, none made up), while
    the ``with`` block runs."""

    def __init__(self, recorder: Recorder, room: str, tokens: Sequence[str]):
        self._recorder = recorder
        self._path = f"/_matrix/client/v3/rooms/{quoted(room)}/send/m.room.message"
        self._tokens = tokens
        #: Transaction IDs of this chat's own: a repeated one sends nothing.
        self._tag = secrets.token_hex(4)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Chat:
        for index, token in enumerate(self._tokens):
            thread = threading.Thread(target=self._post, args=(index, token))
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _post(self, index: int, token: str) -> None:
        due = time.monotonic() + index / len(self._tokens)
        sent = 0
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            body = {"msgtype": "m.text", "body": f"message {sent}"}
            self._recorder.call(
                "message",
                "PUT",
                f"{self._path}/{self._tag}-{index}-{sent}",
                token,
                body,
            )
            sent += 1
            due = max(due + 1, time.monotonic())


@dataclasses.dataclass
class Started:
    """One start as its host saw it."""

    parent: Parent
    wait: bool
    #: The POST's status, and seconds from the phase's beginning to its answer.
    status: int
    answered: float
    #: Seconds to the answer with every user placed (None: never had one).
    placed: float | None = None
    answer: dict[str, Any] | None = None
    error: Any = None


@dataclasses.dataclass
class Phase:
    """When a phase began and how long it took (``time.monotonic()``)."""

    began: float
    seconds: float

    @property
    def ended(self) -> float:
        return self.began + self.seconds


class Scenario:
    """The phases, every parent at once, and the invariants."""

    def __init__(
        self, recorder: Recorder, conference: Conference, database: dict[str, Any]
    ):
        self._rec = recorder
        self._conf = conference
        self._database = database
        #: Every child room of every start's answer.
        self.children: set[str] = set()
        #: Per parent: the user moved, from which room, to which.
        self.moves: dict[str, tuple[str, str, str]] = {}

    def _api(self, kind: str, method: str, path: str, body: Any = None) -> Any:
        return self._rec.call(kind, method, API + path, self._conf.token, body)

    # --- the phases ----------------------------------------------------------------

    def start_all(self, tag: str) -> tuple[Phase, list[Started]]:
        """Every parent's start at once (even ones ``wait: true``), each
        followed to its answer."""
        began = time.monotonic()
        work = [
            lambda i=i, p=p: self._start(tag, i, p, began)
            for i, p in enumerate(self._conf.parents)
        ]
        started: list[Started] = at_once(work)
        ends = [s.placed for s in started if s.placed is not None]
        for s in started:
            if s.answer is not None:
                self.children.update(r["room_id"] for r in s.answer["rooms"])
        return Phase(began, max(ends, default=math.nan)), started

    def _start(self, tag: str, index: int, parent: Parent, began: float) -> Started:
        body = {
            "auto_assign": {"rooms": self._conf.shape.rooms, "users": "joined"},
            "duration_seconds": DURATION_SECONDS,
            "wait": index % 2 == 0,
            "txn_id": f"{tag}-{index}",
        }
        status, answer = self._api(
            "start", "POST", f"/rooms/{quoted(parent.room_id)}", body
        )
        seen = Started(parent, body["wait"], status, time.monotonic() - began)
        if status == 200:
            seen.answer, seen.placed = answer, seen.answered
        elif status == 202:
            self._follow(seen, answer["operation_id"], began)
        else:
            seen.error = answer
        return seen

    def _follow(self, seen: Started, op_id: str, began: float) -> None:
        """Ask ``GET /operations`` every POLL_SECONDS until the answer."""
        give_up = time.monotonic() + FOLLOW_SECONDS
        while time.monotonic() < give_up:
            time.sleep(POLL_SECONDS)
            status, op = self._api("poll", "GET", f"/operations/{quoted(op_id)}")
            if status == 200 and op["response"] is not None:
                seen.answer, seen.placed = op["response"], time.monotonic() - began
                return
            if status == 200 and op["state"] == "rolled_back":
                seen.error = op["error"]
                return
        seen.error = f"no answer within {FOLLOW_SECONDS} s"

    def change_all(self, started: Sequence[Started]) -> Phase:
        """A move, a broadcast and a deadline change per break-out, at once."""
        work: list[Callable[[], Any]] = []
        for s in started:
            if s.answer is None:
                continue
            path = f"/rooms/{quoted(s.parent.room_id)}"
            first, second = s.answer["rooms"][0], s.answer["rooms"][1]
            user = first["users"][0]
            self.moves[s.parent.room_id] = (user, first["room_id"], second["room_id"])
            move = {"user_id": user, "to": second["room_id"]}
            work += [
                lambda p=path, b=move: self._api("move", "POST", p + "/move", b),
                lambda p=path: self._api(
                    "broadcast", "POST", p + "/broadcast", {"body": "5 minutes left"}
                ),
                lambda p=path: self._api(
                    "deadline", "POST", p + "/deadline", {"add_seconds": ADD_SECONDS}
                ),
            ]
        began = time.monotonic()
        at_once(work)
        return Phase(began, time.monotonic() - began)

    def end_all(self) -> Phase:
        """Every break-out ended at once, odd ones with ``close_rooms``."""
        work = [
            lambda i=i, p=p: self._api(
                "end",
                "DELETE",
                f"/rooms/{quoted(p.room_id)}",
                {"message": "Back to the main room", "close_rooms": i % 2 == 1},
            )
            for i, p in enumerate(self._conf.parents)
        ]
        began = time.monotonic()
        at_once(work)
        return Phase(began, time.monotonic() - began)

    # --- the invariants ----------------------------------------------------------------

    def members_of(self, room_id: str, membership: str) -> list[str]:
        """The users with ``membership`` in a room, as its host reads them."""
        status, answer = self._rec.call(
            "check",
            "GET",
            f"/_matrix/client/v3/rooms/{quoted(room_id)}/members?membership={membership}",
            self._conf.token,
        )
        if status != 200:
            return [f"(HTTP {status})"]
        return sorted(e["state_key"] for e in answer["chunk"])

    def check_started(self, started: Sequence[Started]) -> list[str]:
        """Every start answered, placed everyone of its parent once, into
        rooms whose sizes differ by one at most, and invited each there."""
        wrong = []
        for s in started:
            name = s.parent.room_id
            if s.answer is None:
                wrong.append(f"{name}: no answer ({s.status}: {s.error})")
                continue
            rooms = s.answer["rooms"]
            users = sorted(u for r in rooms for u in r["users"])
            sizes = [len(r["users"]) for r in rooms]
            if users != sorted(s.parent.members) or s.answer["failed_users"]:
                wrong.append(f"{name}: placed {users}, {s.answer['failed_users']}")
            if len(rooms) != self._conf.shape.rooms or max(sizes) - min(sizes) > 1:
                wrong.append(f"{name}: rooms of {sizes}")
            for room in rooms:
                invited = self.members_of(room["room_id"], "invite")
                if invited != sorted(room["users"]):
                    wrong.append(f"{room['room_id']}: invited {invited}")
        return wrong

    def check_moved(self) -> list[str]:
        """Each moved user is assigned and invited to their new room only."""
        wrong = []
        for parent, (user, old, new) in self.moves.items():
            _, now = self._api("check", "GET", f"/rooms/{quoted(parent)}")
            where = [r["room_id"] for r in now.get("rooms", []) if user in r["users"]]
            if where != [new]:
                wrong.append(f"{parent}: {user} is assigned to {where}")
            if user not in self.members_of(new, "invite"):
                wrong.append(f"{new}: {user} not invited")
            if user in self.members_of(old, "invite") + self.members_of(old, "join"):
                wrong.append(f"{old}: {user} still in")
        return wrong

    def check_ended(self) -> list[str]:
        """No break-out left, and no invitation pending in any child room."""
        wrong = []
        for parent in self._conf.parents:
            _, now = self._api("check", "GET", f"/rooms/{quoted(parent.room_id)}")
            if now.get("active") is not False:
                wrong.append(f"{parent.room_id}: still active")
        for room in sorted(self.children):
            if pending := self.members_of(room, "invite"):
                wrong.append(f"{room}: invitations pending for {pending}")
        return wrong

    def check_no_orphans(self) -> list[str]:
        """No room but the parents, the hall and the starts' child rooms."""
        known = {p.room_id for p in self._conf.parents} | {self._conf.hall}
        listed: set[str] = set()
        start = 0
        while True:
            _, page = self._rec.call(
                "check",
                "GET",
                f"/_synapse/admin/v1/rooms?limit=500&from={start}",
                self._conf.token,
            )
            listed.update(r["room_id"] for r in page["rooms"])
            if page.get("next_batch") is None:
                break
            start = page["next_batch"]
        return [f"{room}: an orphan" for room in sorted(listed - known - self.children)]

    def check_no_locks(self) -> list[str]:
        """No parent lock left in the module's journal."""
        left = count_rows(self._database, "breakout_parent_locks")
        return [f"{left} parent locks left"] if left else []
