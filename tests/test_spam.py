"""Unknown senders (SPEC section 5): the hook, the annotation and ``/flags``.

Local sends here; events from another server are in test_spam_federation.py.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from harness import (
    STABLE,
    UNSTABLE,
    VERSIONS_AND_TYPES,
    BreakoutTestCase,
    annotation_in,
    find_module,
    module_config,
    probe_event,
    transactions_during,
)
from parameterized import parameterized_class
from synapse.api.errors import Codes, SynapseError
from synapse.module_api import NOT_SPAM
from synapse.rest import admin
from synapse.rest.client import login, room, sync
from synapse.server import HomeServer
from synapse.util.clock import Clock
from tests.unittest import override_config
from twisted.internet import defer
from twisted.internet.testing import MemoryReactor

from synapse_breakout.hooks.sender_trust import (
    SENDER_TRUST_KEY,
    LruCache,
    judge,
    synapse_will_persist,
)
from synapse_breakout.http.flags import make_token, parse_flags_query, parse_token
from synapse_breakout.journal.verdicts import SenderVerdict, VerdictStore
from synapse_breakout.metrics import SENDER_VERDICTS
from tests import unittest

FLAGS = "/_synapse/client/breakout/v1/flags"
ENFORCEMENT_OFF = {"enforce_power_level_in": "off"}


def verdicts(origin: str, verdict: str) -> float:
    return SENDER_VERDICTS.labels(origin, verdict)._value.get()


# --- the decision functions ---------------------------------------------------


class FakeEvent:
    def __init__(self, sender: str, content: dict[str, Any]):
        self.sender = sender
        self.content = content


def state_of(
    creator: str = "@owner:test",
    version: str = "10",
    users: dict[str, int] | None = None,
    events: dict[str, int] | None = None,
    current: FakeEvent | None = None,
) -> dict[tuple[str, str], Any]:
    state: dict[tuple[str, str], Any] = {
        ("m.room.create", ""): FakeEvent(creator, {"room_version": version}),
        ("m.room.power_levels", ""): FakeEvent(
            creator, {"users": users or {}, "events": events or {}}
        ),
    }
    if current is not None:
        state[(UNSTABLE, "")] = current
    return state


class DecisionTestCase(unittest.TestCase):
    def test_judge(self) -> None:
        self.assertEqual((judge(50, 50, False).trusted), True)
        self.assertIsNone(judge(100, 50, False).reason)
        low = judge(49, 50, False)
        self.assertFalse(low.trusted)
        self.assertEqual(low.reason.value if low.reason else None, "low_power_level")
        admin_ = judge(0, 50, True)
        self.assertTrue(admin_.trusted)
        self.assertEqual(admin_.reason.value if admin_.reason else None, "server_admin")
        # A negative threshold trusts everyone at the default level.
        self.assertTrue(judge(0, -1, False).trusted)

    def test_synapse_will_persist(self) -> None:
        content = {UNSTABLE: {"!a:test": {"via": ["test"]}}}
        # Synapse's own rules need 50 for state events by default.
        self.assertFalse(
            synapse_will_persist(UNSTABLE, "", "@m:test", content, state_of())
        )
        open_ = state_of(events={UNSTABLE: 0})
        self.assertTrue(synapse_will_persist(UNSTABLE, "", "@m:test", content, open_))
        # The same content again from the same sender is dropped by Synapse...
        same = state_of(events={UNSTABLE: 0}, current=FakeEvent("@m:test", content))
        self.assertFalse(synapse_will_persist(UNSTABLE, "", "@m:test", content, same))
        # ...from someone else it is a new event.
        self.assertTrue(synapse_will_persist(UNSTABLE, "", "@o:test", content, same))
        self.assertTrue(
            synapse_will_persist(UNSTABLE, "", "@m:test", {UNSTABLE: {}}, same)
        )

    def test_tokens_round_trip(self) -> None:
        verdict = SenderVerdict("$a_b|c", "!r:test", "@u:test", False, 0, 50, None, 17)
        token = make_token(verdict)
        self.assertTrue(all(c.isalnum() or c in "-_" for c in token), token)
        self.assertEqual(parse_token(token), (17, "$a_b|c"))
        for bad in ("", "!!!", "abc", make_token(verdict)[:-3]):
            self.assertIsNone(parse_token(bad), bad)

    def test_parse_flags_query(self) -> None:
        query = parse_flags_query({})
        self.assertEqual((query.room_id, query.before, query.limit), (None, None, 20))
        token = make_token(
            SenderVerdict("$e", "!r:test", "@u:test", False, 0, 50, None, 5)
        )
        query = parse_flags_query(
            {b"room_id": [b"!r:test"], b"from": [token.encode()], b"limit": [b"100"]}
        )
        self.assertEqual(
            (query.room_id, query.before, query.limit), ("!r:test", (5, "$e"), 100)
        )
        for args, name in (
            ({b"limit": [b"0"]}, "limit"),
            ({b"limit": [b"101"]}, "limit"),
            ({b"limit": [b"-1"]}, "limit"),
            ({b"limit": [b"ten"]}, "limit"),
            ({b"limit": [b"1", b"2"]}, "limit"),
            ({b"from": [b"nope"]}, "from"),
            ({b"room_id": [b"not a room"]}, "room_id"),
            ({b"room_id": [b"\xff"]}, "room_id"),
        ):
            with self.assertRaises(SynapseError) as cm:
                parse_flags_query(args)
            self.assertEqual(cm.exception.code, 400)
            self.assertEqual(cm.exception.errcode, Codes.INVALID_PARAM)
            self.assertTrue(cm.exception.msg.startswith(f"{name}: "), cm.exception.msg)

    def test_lru_cache(self) -> None:
        cache: LruCache[str, int] = LruCache(2)
        cache.put("a", 1)
        cache.put("b", 2)
        self.assertEqual(cache.get("a"), 1)  # "b" is now the oldest
        cache.put("c", 3)
        self.assertIsNone(cache.get("b"))
        self.assertEqual((cache.get("a"), cache.get("c"), len(cache)), (1, 3, 2))


# --- local senders, served through every client API --------------------------


class TrustTestCase(BreakoutTestCase):
    """A parent room whose power levels let anyone send break-outs."""

    room_version = "10"
    event_type = UNSTABLE
    #: The module's config for the whole class; a test's own
    #: ``@override_config(module_config(...))`` still wins.
    breakout_config: dict[str, Any] = {}

    servlets = [
        admin.register_servlets,
        login.register_servlets,
        room.register_servlets,
        sync.register_servlets,
    ]

    def default_config(self) -> dict[str, Any]:
        config = super().default_config()
        if "modules" not in (self._extra_config or {}):
            config["modules"] = module_config(**self.breakout_config)["modules"]
        return config

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.module = find_module(hs)
        self.verdicts = VerdictStore(self.module_api)
        self.toks: dict[str, str] = {}
        self.owner = self.user("owner")
        self.mod = self.user("mod")
        self.member = self.user("member")
        self.admin = self.user("admin", admin=True)
        self.parent = self.make_parent()
        self.child = self.make_room()

    def user(self, name: str, admin: bool = False) -> str:
        user_id = self.register_user(name, "pass", admin=admin)
        self.toks[user_id] = self.login(name, "pass")
        return user_id

    def make_room(self, **extra: Any) -> str:
        room_id = self.helper.create_room_as(
            self.owner,
            room_version=self.room_version,
            tok=self.toks[self.owner],
            extra_content=extra or None,
        )
        assert room_id is not None
        return room_id

    def make_parent(self, events_level: int = 0, **extra: Any) -> str:
        users = {self.mod: 50}
        if self.room_version != "12":
            users[self.owner] = 100  # v12 creators must not be listed
        room_id = self.make_room(
            preset="public_chat",
            power_level_content_override={
                "users": users,
                "events": {UNSTABLE: events_level, STABLE: events_level},
            },
            **extra,
        )
        for user in (self.mod, self.member, self.admin):
            self.helper.join(room_id, user, tok=self.toks[user])
        return room_id

    def content(self, n: int = 0) -> dict[str, Any]:
        return {self.event_type: {self.child: {"via": ["test"], "seq": n}}}

    def send(
        self,
        sender: str,
        content: dict[str, Any] | None = None,
        room_id: str | None = None,
        expect: int = HTTPStatus.OK,
    ) -> dict[str, Any]:
        return self.helper.send_state(
            room_id or self.parent,
            self.event_type,
            content if content is not None else self.content(),
            tok=self.toks[sender],
            expect_code=expect,
        )

    def expected(
        self, level: int | None, trusted: bool, reason: str | None
    ) -> dict[str, Any]:
        return {
            "trusted": trusted,
            "power_level": level,
            "required_power_level": 50,
            "reason": reason,
        }

    def served(self, event_id: str, room_id: str | None = None) -> dict[str, Any]:
        """The annotation of ``event_id`` in /event, /messages, /state and /sync.

        Each value is the annotation, None when served without one, or the
        string "absent" when the API does not serve the event at all.
        """
        room_id = room_id or self.parent
        tok = self.toks[self.owner]
        found: dict[str, Any] = {}

        def pick(where: str, events: list[dict[str, Any]]) -> None:
            found[where] = annotation_in(events, event_id)

        channel = self.make_request(
            "GET", f"/rooms/{room_id}/event/{event_id}", access_token=tok
        )
        pick("event", [channel.json_body] if channel.code == 200 else [])
        channel = self.make_request(
            "GET", f"/rooms/{room_id}/messages?dir=b&limit=100", access_token=tok
        )
        self.assertEqual(channel.code, 200, channel.json_body)
        pick("messages", channel.json_body["chunk"])
        channel = self.make_request("GET", f"/rooms/{room_id}/state", access_token=tok)
        self.assertEqual(channel.code, 200, channel.text_body)
        pick("state", json.loads(channel.text_body))
        channel = self.make_request("GET", "/sync", access_token=tok)
        self.assertEqual(channel.code, 200, channel.json_body)
        joined = channel.json_body["rooms"]["join"][room_id]
        pick("sync", joined["timeline"]["events"] + joined["state"]["events"])
        return found

    def assert_served(
        self, event_id: str, annotation: Any, room_id: str | None = None
    ) -> None:
        self.assertEqual(
            self.served(event_id, room_id),
            {w: annotation for w in ("event", "messages", "state", "sync")},
        )

    def flags(
        self, query: str = "", tok: str | None = None, expect: int = HTTPStatus.OK
    ) -> dict[str, Any]:
        channel = self.make_request(
            "GET",
            f"{FLAGS}?{query}" if query else FLAGS,
            access_token=tok or self.toks[self.admin],
        )
        self.assertEqual(channel.code, expect, channel.json_body)
        return channel.json_body

    def flagged_ids(self, query: str = "") -> list[str]:
        return [f["event_id"] for f in self.flags(query)["flags"]]


@parameterized_class(("room_version", "event_type"), VERSIONS_AND_TYPES)
class AnnotateTestCase(TrustTestCase):
    breakout_config = ENFORCEMENT_OFF

    def test_low_power_sender_is_unknown(self) -> None:
        before = verdicts("local", "unknown")
        event_id = self.send(self.member)["event_id"]
        self.assert_served(event_id, self.expected(0, False, "low_power_level"))
        self.assertEqual(verdicts("local", "unknown") - before, 1)
        stored = self.get_success(self.verdicts.get(event_id))
        assert stored is not None
        self.assertEqual(
            (stored.room_id, stored.sender, stored.trusted),
            (self.parent, self.member, False),
        )
        self.assertEqual(self.flagged_ids(), [event_id])

    def test_moderator_is_trusted(self) -> None:
        before = verdicts("local", "trusted")
        event_id = self.send(self.mod)["event_id"]
        self.assert_served(event_id, self.expected(50, True, None))
        self.assertEqual(verdicts("local", "trusted") - before, 1)
        self.assertEqual(self.flagged_ids(), [])

    def test_creator_is_trusted(self) -> None:
        event_id = self.send(self.owner)["event_id"]
        level = None if self.room_version == "12" else 100
        self.assert_served(event_id, self.expected(level, True, None))

    def test_server_admin_is_trusted(self) -> None:
        event_id = self.send(self.admin)["event_id"]
        self.assert_served(event_id, self.expected(0, True, "server_admin"))

    def test_ending_it_is_judged_too(self) -> None:
        self.send(self.mod)
        event_id = self.send(self.member, {})["event_id"]
        self.assert_served(event_id, self.expected(0, False, "low_power_level"))

    def test_other_events_carry_nothing(self) -> None:
        event_id = self.helper.send(self.parent, "hi", tok=self.toks[self.member])[
            "event_id"
        ]
        self.assertEqual(
            self.served(event_id),
            {"event": None, "messages": None, "state": "absent", "sync": None},
        )

    def test_synapse_refusal_and_duplicate_leave_no_flag(self) -> None:
        # Synapse's own power levels refuse it after the hook ran: no row.
        guarded = self.make_parent(events_level=50)
        self.send(self.member, room_id=guarded, expect=HTTPStatus.FORBIDDEN)
        # The same state again: Synapse keeps the first event, no new row.
        first = self.send(self.member)["event_id"]
        again = self.send(self.member)["event_id"]
        self.assertEqual(again, first)
        self.assertEqual(self.flagged_ids(), [first])

    def test_initial_state_is_judged_when_first_served(self) -> None:
        # createRoom's initial_state does not go through the spam-checker.
        room_id = self.make_room(
            initial_state=[
                {"type": self.event_type, "state_key": "", "content": self.content()}
            ]
        )
        state = self.get_success(
            self.module_api.get_room_state(room_id, [(self.event_type, "")])
        )
        event_id = state[(self.event_type, "")].event_id
        self.assertIsNone(self.get_success(self.verdicts.get(event_id)))
        level = None if self.room_version == "12" else 100
        self.assert_served(event_id, self.expected(level, True, None), room_id)
        self.assertIsNotNone(self.get_success(self.verdicts.get(event_id)))


class ModesTestCase(TrustTestCase):
    @override_config(
        module_config(enforce_power_level_in="off", unknown_senders="reject")
    )
    def test_reject_mode_refuses_unknown_local_senders(self) -> None:
        before = verdicts("local", "unknown")
        body = self.send(self.member, expect=HTTPStatus.FORBIDDEN)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        self.assertIn(self.member, body["error"])
        self.assertEqual(
            body[SENDER_TRUST_KEY], self.expected(0, False, "low_power_level")
        )
        self.assertEqual(verdicts("local", "unknown") - before, 1)
        self.assertIsNone(self.current_breakout())
        # Nothing recorded for an event that does not exist.
        self.assertEqual(self.flagged_ids(), [])
        # Moderators and server admins still may; no annotation in this mode.
        for sender in (self.mod, self.admin):
            event_id = self.send(sender, self.content(len(sender)))["event_id"]
            found = self.served(event_id)
            self.assertEqual(set(found.values()), {None}, found)

    @override_config(module_config(enforce_power_level_in="off", unknown_senders="off"))
    def test_off_mode_does_nothing(self) -> None:
        hook = self.hs.get_module_api_callbacks().spam_checker
        self.assertEqual(hook._check_event_for_spam_callbacks, [])
        event_id = self.send(self.member)["event_id"]
        found = self.served(event_id)
        self.assertEqual(set(found.values()), {None}, found)
        self.assertIsNone(self.get_success(self.verdicts.get(event_id)))

    def test_enforced_rules_refuse_before_the_hook(self) -> None:
        # Default config: the public parent enforces power_level (section 3).
        before = verdicts("local", "unknown")
        self.send(self.member, expect=HTTPStatus.FORBIDDEN)
        self.assertEqual(verdicts("local", "unknown"), before)
        event_id = self.send(self.mod)["event_id"]
        self.assert_served(event_id, self.expected(50, True, None))

    def current_breakout(self) -> dict[str, Any] | None:
        channel = self.make_request(
            "GET",
            f"/rooms/{self.parent}/state/{self.event_type}/",
            access_token=self.toks[self.owner],
        )
        return channel.json_body if channel.code == 200 else None


# --- GET /flags ------------------------------------------------------------------


class FlagsTestCase(TrustTestCase):
    breakout_config = ENFORCEMENT_OFF

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.other = self.make_parent()
        # 13 flagged events in two rooms, and trusted ones in between.
        self.flagged: list[str] = []
        for n in range(13):
            room_id = self.parent if n % 3 else self.other
            self.flagged.append(
                self.send(self.member, self.content(n), room_id)["event_id"]
            )
            if n % 4 == 0:
                self.send(self.mod, self.content(n), room_id)

    def page_through(self, limit: int, room_id: str | None = None) -> list[str]:
        seen: list[str] = []
        token: str | None = None
        for _ in range(100):
            query = {"limit": str(limit)}
            if room_id:
                query["room_id"] = room_id
            if token:
                query["from"] = token
            body = self.flags(urllib.parse.urlencode(query))
            self.assertLessEqual(len(body["flags"]), limit)
            seen.extend(f["event_id"] for f in body["flags"])
            token = body["next"]
            if token is None:
                return seen
        raise AssertionError("paging did not end")

    def test_every_flag_exactly_once_newest_first(self) -> None:
        for limit in (1, 2, 5, 13, 100):
            seen = self.page_through(limit)
            self.assertEqual(seen, list(reversed(self.flagged)), limit)
        first = self.flags()["flags"][0]
        self.assertEqual(
            {k: v for k, v in first.items() if k != "received_ts"},
            {
                "event_id": self.flagged[-1],
                "room_id": self.other,  # n = 12
                "sender": self.member,
                "power_level": 0,
                "required_power_level": 50,
                "reason": "low_power_level",
            },
        )
        self.assertIsInstance(first["received_ts"], int)

    def test_same_millisecond_is_paged_exactly_once(self) -> None:
        # Verdicts from several processes may share a timestamp: the event ID
        # breaks the tie.
        now = self.clock.time_msec() + 1000
        # Real events: /flags lists only events Synapse accepted.
        same = [
            self.helper.send(self.parent, f"m{n}", tok=self.toks[self.member])[
                "event_id"
            ]
            for n in range(9)
        ]
        trusted = self.helper.send(self.parent, "t", tok=self.toks[self.member])[
            "event_id"
        ]
        for event_id in [*same, trusted]:
            verdict = SenderVerdict(
                event_id,
                self.parent,
                self.member,
                event_id == trusted,
                0,
                50,
                "low_power_level",
                now,
            )
            self.assertTrue(self.get_success(self.verdicts.record(verdict)))
        # A second verdict on an event does not replace the first.
        self.assertFalse(self.get_success(self.verdicts.record(verdict)))
        for limit in (1, 2, 4, 9, 10):
            seen = self.page_through(limit)
            self.assertEqual(seen[:9], sorted(same, reverse=True), limit)
            self.assertEqual(seen[9:], list(reversed(self.flagged)), limit)

    def test_default_limit_is_20(self) -> None:
        for n in range(13, 25):
            self.send(self.member, self.content(n))
        body = self.flags()
        self.assertEqual(len(body["flags"]), 20)
        self.assertIsNotNone(body["next"])

    def test_room_filter(self) -> None:
        in_other = [e for n, e in enumerate(self.flagged) if n % 3 == 0]
        self.assertEqual(self.page_through(2, self.other), list(reversed(in_other)))
        self.assertEqual(self.flagged_ids(f"room_id={self.child}"), [])

    def test_admins_only(self) -> None:
        body = self.flags(tok=self.toks[self.mod], expect=HTTPStatus.FORBIDDEN)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        channel = self.make_request("GET", FLAGS)
        self.assertEqual(channel.code, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(channel.json_body["errcode"], "M_MISSING_TOKEN")

    def test_bad_parameters_are_named(self) -> None:
        for query, name in (
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=x", "limit"),
            ("from=garbage", "from"),
            ("room_id=nope", "room_id"),
        ):
            body = self.flags(query, expect=HTTPStatus.BAD_REQUEST)
            self.assertEqual(body["errcode"], "M_INVALID_PARAM")
            self.assertTrue(body["error"].startswith(f"{name}: "), body)


# --- cost ------------------------------------------------------------------------


#: The transactions of the module's background loops.
LOOPS = frozenset(
    {
        "breakout_due",
        "breakout_armed_deadlines",
        "breakout_renew_leases",
        "breakout_list_active",
    }
)


class CostTestCase(TrustTestCase):
    breakout_config = ENFORCEMENT_OFF

    def count_transactions(self, action: Callable[[], Any]) -> list[str]:
        # The background loops (deadlines and warnings every second, leases
        # and ejection every 5) may tick inside the window, as they do under
        # Synapse 1.141's harness; they are not part of serving.
        return [d for d in transactions_during(self.hs, action) if d not in LOOPS]

    def make_event(self, event_type: str, content: dict[str, Any]) -> Any:
        return probe_event(event_type, content, self.parent, self.member, None)

    def test_no_database_access_for_other_event_types(self) -> None:
        message = self.make_event("m.room.message", {"body": "hi"})
        trust = self.module.trust

        def run() -> None:
            # Both complete without waiting on anything: no I/O at all.
            self.assertEqual(
                self.successResultOf(
                    defer.ensureDeferred(trust.check_event_for_spam(message))
                ),
                NOT_SPAM,
            )
            self.assertEqual(
                self.successResultOf(defer.ensureDeferred(trust.add_unsigned(message))),
                {},
            )

        self.assertEqual(self.count_transactions(run), [])

    def test_a_message_send_makes_no_module_query(self) -> None:
        descs = self.count_transactions(
            lambda: self.helper.send(self.parent, "hi", tok=self.toks[self.member])
        )
        self.assertEqual([d for d in descs if d.startswith("breakout_")], [])

    def test_serving_costs_one_query_per_event_at_most(self) -> None:
        ids = [self.send(self.member, self.content(n))["event_id"] for n in range(5)]
        for n in range(5):
            self.helper.send(self.parent, f"message {n}", tok=self.toks[self.member])
        path = f"/rooms/{self.parent}/messages?dir=b&limit=100"

        def fetch() -> None:
            channel = self.make_request("GET", path, access_token=self.toks[self.owner])
            self.assertEqual(channel.code, 200)
            served = {
                e["event_id"]: e["unsigned"].get(SENDER_TRUST_KEY)
                for e in channel.json_body["chunk"]
            }
            for event_id in ids:
                self.assertEqual(served[event_id]["trusted"], False)

        # Fresh from the hook: in the cache already.
        self.assertEqual(
            [d for d in self.count_transactions(fetch) if d.startswith("breakout_")], []
        )
        # A cold cache (another worker, a restart): one query per break-out event,
        # then none.
        self.module.trust.cache.clear()
        ours = [d for d in self.count_transactions(fetch) if d.startswith("breakout_")]
        self.assertEqual(ours, ["breakout_get_sender_verdict"] * len(ids))
        ours = [d for d in self.count_transactions(fetch) if d.startswith("breakout_")]
        self.assertEqual(ours, [])
