"""Shared ground for the project's tests in Synapse's own harness.

``from tests import unittest`` is Synapse's harness (see the root conftest.py).
"""

from __future__ import annotations

import inspect
import os
import re
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from unittest.mock import patch

from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase, make_event_from_dict
from synapse.logging import context as logcontext
from synapse.module_api import ModuleApi
from synapse.rest import admin
from synapse.rest.client import login, register, room
from synapse.server import HomeServer
from synapse.storage.database import LoggingTransaction
from synapse.util.clock import Clock
from tests.server import FakeChannel
from twisted.internet.testing import MemoryReactor
from twisted.web.resource import Resource

from synapse_breakout.hooks.sender_trust import SENDER_TRUST_KEY
from synapse_breakout.journal.rows import Operation, OperationState
from synapse_breakout.journal.schema import Schema
from synapse_breakout.matrix.notices import NOTICE_KEY
from synapse_breakout.module import BreakoutModule
from tests import unittest

MODULE = "synapse_breakout.BreakoutModule"
BASE = "/_synapse/client/breakout/v1"
#: How long (on the test clock) an API call may take. The harness's reactor
#: moves its clock 0.1 s per turn while a request is waited for, and a start
#: that places hundreds of users gives way to other traffic between slices of
#: its work (pacing.py), each pause a turn or more: the harness's default of
#: one second would cut it short.
API_TIMEOUT_MS = 600_000
UNSTABLE = "org.matrix.msc3985.breakout"
STABLE = "m.breakout"
#: (room version, event type) for the classes that test the rules per room
#: version: every pair in the main SQLite run; where tox.ini sets
#: BREAKOUT_TEST_PAIRS=2 (PostgreSQL, the lowest Synapse) the two pairs that
#: still take each version and each type once, since the pairs differ only in
#: the rules (the module's pure Python) and those runs are CI's longest.
VERSIONS_AND_TYPES = (
    [("10", STABLE), ("12", UNSTABLE)]
    if os.environ.get("BREAKOUT_TEST_PAIRS") == "2"
    else [("10", UNSTABLE), ("10", STABLE), ("12", UNSTABLE), ("12", STABLE)]
)
ACTIVE = "ORG.MATRIX.MSC3985.BREAKOUT_ACTIVE"


def module_config(**config: Any) -> dict[str, Any]:
    """A homeserver config fragment loading the module with ``config``."""
    return {"modules": [{"module": MODULE, "config": config}]}


#: Synapse's own logging-context slips that the harness lets through (they
#: are logged as Synapse logs them): up to 1.141, ``WorkerLocksHandler``
#: woke lock waiters from a ``call_later`` without ``PreserveLoggingContext``,
#: so a room purge waiting on a lock (a rolled-back start deletes its rooms)
#: leaked its task's context; later releases wake them in
#: ``WaitingLock.release_lock``.
_SYNAPSE_OWN_SLIPS = frozenset(
    {"WorkerLocksHandler._on_lock_released.<locals>._wake_all_locks"}
)

_synapse_logcontext_error = logcontext.logcontext_error


def _logcontext_error(msg: str) -> None:
    """Fails the test on a logging-context error, unless Synapse made it."""
    frame = inspect.currentframe()
    while frame is not None:
        callback = frame.f_locals.get("callback")
        if frame.f_code.co_name == "wrapped_callback" and (
            getattr(callback, "__qualname__", None) in _SYNAPSE_OWN_SLIPS
        ):
            _synapse_logcontext_error(msg)
            return
        frame = frame.f_back
    raise AssertionError(f"logcontext error: {msg}")


class BreakoutTestCase(unittest.HomeserverTestCase):
    """A homeserver with the module loaded (``module_config()`` by default).

    Tests change the module's config with ``@override_config(module_config(...))``.
    Every test fails on a broken Synapse logging context, as under Synapse's
    ``logcontext_clean`` (work that runs in the wrong one loses its logs'
    request and its metrics).
    """

    def setUp(self) -> None:
        patcher = patch("synapse.logging.context.logcontext_error", _logcontext_error)
        patcher.start()
        self.addCleanup(patcher.stop)
        super().setUp()

    servlets = [
        admin.register_servlets,
        login.register_servlets,
        register.register_servlets,
        room.register_servlets,
    ]

    def default_config(self) -> dict[str, Any]:
        config = super().default_config()
        # @override_config has been applied by now: keep its modules entry.
        config.setdefault("modules", module_config()["modules"])
        # Lifted by the harness of newer Synapse releases, not by older ones.
        config.setdefault(
            "rc_room_creation", {"per_second": 10000, "burst_count": 10000}
        )
        return config

    def create_resource_dict(self) -> dict[str, Resource]:
        # Synapse's app adds module resources to its listeners; the harness
        # does not, so the tests do.
        resources = super().create_resource_dict()
        resources.update(self.hs._module_web_resources)
        return resources

    #: Whether the pacer (rooms/pacing.py) measures the real process, as in
    #: production. It ends its slices on the wall clock and judges by the
    #: CPU used whether others are busy; this harness's clock moves only
    #: when a test moves it, so paced work (every write of a break-out)
    #: would go on or wait depending on how loaded the machine running the
    #: tests is. Unless a test measures giving way itself, the pacer sees a
    #: wall clock that stands still: its slices never end, it never pauses,
    #: and it is the fair queue alone, the same on every machine.
    REAL_PACER = False

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        self.module_api: ModuleApi = hs.get_module_api()
        self.store = Schema(self.module_api)
        if not self.REAL_PACER:
            find_module(hs).pacer._wall = lambda: 0.0


def find_module(hs: HomeServer) -> BreakoutModule:
    """The module instance loaded into ``hs``, found through its rules callback."""
    rules = hs.get_module_api_callbacks().third_party_event_rules
    for callback in rules._check_event_allowed_callbacks:
        module = getattr(callback, "__self__", None)
        if isinstance(module, BreakoutModule):
            return module
    raise AssertionError("synapse_breakout is not loaded in this homeserver")


class ParentRoomTestCase(BreakoutTestCase):
    """A public parent room (host: creator, mod: 50, six members) and API helpers."""

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.admin = self.register_user("admin", "pass", admin=True)
        self.admin_tok = self.login("admin", "pass")
        self.host = self.register_user("host", "pass")
        self.host_tok = self.login("host", "pass")
        self.mod = self.register_user("mod", "pass")
        self.mod_tok = self.login("mod", "pass")
        self.users = []
        self.toks = {}
        for i in range(6):
            user = self.register_user(f"u{i}", "pass")
            self.users.append(user)
            self.toks[user] = self.login(f"u{i}", "pass")
        self.parent = self.make_parent()

    def make_parent(
        self, version: str = "10", public: bool = True, **extra: Any
    ) -> str:
        users = {self.mod: 50}
        if version != "12":
            users[self.host] = 100
        room_id = self.helper.create_room_as(
            self.host,
            is_public=public,
            room_version=version,
            tok=self.host_tok,
            extra_content={"power_level_content_override": {"users": users}, **extra},
        )
        assert room_id is not None
        for user, tok in [(self.mod, self.mod_tok), *self.toks.items()]:
            if not public:
                self.helper.invite(room_id, self.host, user, tok=self.host_tok)
            self.helper.join(room_id, user, tok=tok)
        return room_id

    def api_request(
        self, method: str, path: str, body: Any, access_token: str | None
    ) -> FakeChannel:
        """A request to the module's API, waited for as long as a start may
        take: the default wait gives up after about 100 reactor turns, and a
        start on PostgreSQL takes one or more per database query."""
        channel = self.make_request(
            method,
            BASE + path,
            body if body is not None else b"",
            access_token=access_token,
            await_result=False,
        )
        channel.await_result(timeout_ms=API_TIMEOUT_MS)
        return channel

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        tok: str | None = None,
        expect: int = HTTPStatus.OK,
    ) -> Any:
        channel = self.api_request(
            method, path, body, tok if tok is not None else self.admin_tok
        )
        self.assertEqual(channel.code, expect, channel.json_body)
        return channel.json_body

    def room_path(self, room_id: str | None = None, suffix: str = "") -> str:
        return "/rooms/" + urllib.parse.quote(room_id or self.parent) + suffix

    def start(
        self, body: dict[str, Any], expect: int = HTTPStatus.OK, **kw: Any
    ) -> Any:
        body = {"acting_user": self.host, **body}
        return self.call("POST", self.room_path(), body, expect=expect, **kw)

    def state(self, room_id: str, event_type: str, state_key: str = "") -> Any:
        channel = self.make_request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/state/{event_type}/{state_key}",
            access_token=self.host_tok,
        )
        return channel.json_body if channel.code == 200 else None

    def membership_in(self, room_id: str, user: str) -> str | None:
        event = self.get_success(
            self.module_api.get_room_state(room_id, [("m.room.member", user)])
        ).get(("m.room.member", user))
        return event.content["membership"] if event else None

    def room_exists(self, room_id: str) -> bool:
        return (
            self.get_success(self.hs.get_datastores().main.get_room(room_id))
            is not None
        )

    def local_room_count(self) -> int:
        def count_txn(txn: LoggingTransaction) -> int:
            txn.execute("SELECT COUNT(*) FROM rooms")
            row = txn.fetchone()
            assert row is not None
            return int(row[0])

        return self.get_success(
            self.module_api.run_db_interaction("test_rooms", count_txn)
        )

    def messages(self, room_id: str) -> list[dict[str, Any]]:
        channel = self.make_request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages?dir=b&limit=100",
            access_token=self.host_tok,
        )
        return [e for e in channel.json_body["chunk"] if e["type"] == "m.room.message"]

    def notices(self, room_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The contents of the module's messages in ``room_id`` (of ``kind``),
        oldest first: ``m.notice``, or ``m.text`` for ``help`` (SPEC 9)."""
        contents = [m["content"] for m in reversed(self.messages(room_id))]
        return [
            c
            for c in contents
            if c.get("msgtype")
            == ("m.text" if c.get(NOTICE_KEY) == "help" else "m.notice")
            and (kind is None or c.get(NOTICE_KEY) == kind)
        ]

    def notice_bodies(self, room_id: str, kind: str | None = None) -> list[str]:
        return [c["body"] for c in self.notices(room_id, kind)]


def links(content: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The (room or user ID, via servers) of every matrix.to link of a notice."""
    found = []
    for href in re.findall(r'href="([^"]+)"', content["formatted_body"]):
        url = urllib.parse.urlsplit(href.replace("&amp;", "&"))
        assert url.netloc == "matrix.to", href
        target, _, query = url.fragment.lstrip("/").partition("?")
        found.append(
            (
                urllib.parse.unquote(target),
                urllib.parse.parse_qs(query).get("via", []),
            )
        )
    return found


def probe_event(
    event_type: str,
    content: dict[str, Any] | None = None,
    room_id: str = "!r:test",
    sender: str = "@u:test",
    state_key: str | None = "",
) -> EventBase:
    """An unsigned, unpersisted event to hand straight to a callback."""
    event_dict: dict[str, Any] = {
        "type": event_type,
        "room_id": room_id,
        "sender": sender,
        "content": content or {},
        "origin_server_ts": 0,
        "auth_events": [],
        "prev_events": [],
        "depth": 1,
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    if state_key is not None:
        event_dict["state_key"] = state_key
    return make_event_from_dict(event_dict, KNOWN_ROOM_VERSIONS["10"])


def transactions_during(hs: HomeServer, action: Callable[[], Any]) -> list[str]:
    """The descriptions of the database transactions ``action`` makes."""
    db_pool = hs.get_datastores().main.db_pool
    original = db_pool.runInteraction
    seen: list[str] = []

    def counting(desc: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(desc)
        return original(desc, func, *args, **kwargs)

    db_pool.runInteraction = counting  # type: ignore[method-assign]
    try:
        action()
    finally:
        db_pool.runInteraction = original  # type: ignore[method-assign]
    return seen


def journal_crashed_start(
    test: BreakoutTestCase,
    parent: str,
    requester: str,
    acting_user: str,
    request: dict[str, Any] | None = None,
) -> Operation:
    """Journal a start as a previous run of this instance left it: pending.

    What a crash leaves behind, for recovery to find.
    """
    module = find_module(test.hs)
    now = test.clock.time_msec()
    op = Operation(
        op_id=f"{now}-crashed",
        kind="start",
        parent_room_id=parent,
        requester=requester,
        txn_id="crashed",
        state=OperationState.PENDING,
        instance=module.ownership.instance,
        process_token="a-previous-process",
        created_ts=now,
        updated_ts=now,
        response=None,
        acting_user=acting_user,
        request=request or {},
    )
    test.assertEqual(test.get_success(module.operation_store.begin(op)), op)
    return op


def annotation_in(events: list[dict[str, Any]], event_id: str) -> Any:
    """The sender-trust annotation of ``event_id`` among ``events`` served to a
    client: None when served without one, "absent" when not served at all."""
    for event in events:
        if event["event_id"] == event_id:
            return event.get("unsigned", {}).get(SENDER_TRUST_KEY)
    return "absent"
