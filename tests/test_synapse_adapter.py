"""The adapter over Synapse code, run against the installed Synapse."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

from harness import BreakoutTestCase, find_module, probe_event, transactions_during
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase, make_event_from_dict
from synapse.logging.context import current_context
from synapse.module_api import make_deferred_yieldable
from synapse.module_api.errors import ConfigError
from synapse.server import HomeServer
from synapse.util.clock import Clock
from twisted.internet import defer
from twisted.internet.testing import MemoryReactor

from synapse_breakout import synapse_adapter
from synapse_breakout.config import BREAKOUT_EVENT_TYPES


class StateLoadedError(Exception):
    """Raised when Synapse's dispatcher starts loading the room's state."""


class ExplodingContext:
    async def get_prev_state_ids(self, *args: Any, **kwargs: Any) -> Any:
        raise StateLoadedError()


def event(event_type: str, state_key: str | None = "") -> EventBase:
    return probe_event(event_type, state_key=state_key)


class DispatcherShortcutTestCase(BreakoutTestCase):
    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.rules = hs.get_module_api_callbacks().third_party_event_rules

    def dispatch(self, ev: EventBase) -> Any:
        return self.get_success_or_raise(
            self.rules.check_event_allowed(ev, ExplodingContext())
        )

    def test_installed_on_this_synapse(self) -> None:
        self.assertTrue(self.rules.check_event_allowed._breakout_filtered)
        # Installing twice keeps one wrapper.
        module = find_module(self.hs)
        self.assertTrue(
            synapse_adapter.skip_state_load_for_other_event_types(
                self.module_api,
                module.check_event_allowed,
                BREAKOUT_EVENT_TYPES,
                module.room_capacity.concerns,
            )
        )

    def test_other_event_types_skip_the_state_load(self) -> None:
        self.assertEqual(self.dispatch(event("m.room.message", None)), (True, None))
        self.assertEqual(self.dispatch(event("m.room.topic")), (True, None))

    def test_membership_events_of_rooms_without_a_capacity_skip_it(self) -> None:
        member = probe_event(
            "m.room.member", {"membership": "join"}, "!a:test", "@u:test", "@u:test"
        )
        self.assertEqual(self.dispatch(member), (True, None))
        # Asked once per room and process: then no database access at all.
        again = transactions_during(self.hs, lambda: self.dispatch(member))
        self.assertEqual(again, [])

    def test_breakout_events_still_load_state_and_run_the_rules(self) -> None:
        for event_type in BREAKOUT_EVENT_TYPES:
            with self.assertRaises(StateLoadedError):
                self.dispatch(event(event_type))

    def test_another_modules_callback_still_sees_every_event(self) -> None:
        seen: list[str] = []

        async def other(ev: EventBase, state: Any) -> tuple[bool, None]:
            seen.append(ev.type)
            return True, None

        self.module_api.register_third_party_rules_callbacks(check_event_allowed=other)
        with self.assertRaises(StateLoadedError):
            self.dispatch(event("m.room.message", None))

    def test_falls_back_when_synapse_differs(self) -> None:
        class NotSynapse:
            pass

        self.assertFalse(
            synapse_adapter.skip_state_load_for_other_event_types(
                NotSynapse(),  # type: ignore[arg-type]
                lambda: None,
                BREAKOUT_EVENT_TYPES,
                find_module(self.hs).room_capacity.concerns,
            )
        )


class EmptyContext:
    async def get_prev_state_ids(self, *args: Any, **kwargs: Any) -> Any:
        return {}


class FreezingDispatcherTestCase(BreakoutTestCase):
    """Synapse releases whose dispatcher freezes events (1.141) and newer ones."""

    def test_the_freeze_is_read_right_from_this_synapse(self) -> None:
        """Synapse's own dispatcher breaks a version 12 event where we say so."""
        rules = self.hs.get_module_api_callbacks().third_party_event_rules
        original = rules.check_event_allowed.__wrapped__
        ev = make_event_from_dict(
            {
                "type": "m.room.topic",
                "state_key": "",
                "content": {"topic": "t"},
                "room_id": "!" + "A" * 43,
                "sender": "@u:test",
                "auth_events": ["$" + "B" * 43],
                "prev_events": [],
                "depth": 2,
                "hashes": {"sha256": "x"},
                "signatures": {},
                "origin_server_ts": 0,
            },
            KNOWN_ROOM_VERSIONS["12"],
        )
        self.assertEqual(len(ev.auth_event_ids()), 2)  # the create event's too
        self.get_success(original(ev, EmptyContext()))
        try:
            ev.auth_event_ids()
            broken = False
        except TypeError:
            broken = True
        self.assertEqual(broken, synapse_adapter.dispatcher_freezes_events(original))

    def test_breakout_events_in_room_version_12_are_sent(self) -> None:
        """On a freezing release, Synapse's own dispatcher would make this a 500."""
        self.register_user("owner", "pass")
        tok = self.login("owner", "pass")
        parent = self.helper.create_room_as(tok=tok, room_version="12")
        self.reactor.advance(1)  # another create event, another room ID
        child = self.helper.create_room_as(tok=tok, room_version="12")
        assert parent is not None and child is not None
        for event_type in sorted(BREAKOUT_EVENT_TYPES):
            content = {event_type: {child: {"via": ["test"]}}}
            self.helper.send_state(parent, event_type, content, tok=tok)
            bad = {event_type: {child: {"via": []}}}
            self.helper.send_state(parent, event_type, bad, tok=tok, expect_code=400)


class RequiredInternalsTestCase(BreakoutTestCase):
    """What the adapter calls exists in this Synapse, or start-up stops."""

    def test_this_synapse_has_every_internal(self) -> None:
        self.assertEqual(synapse_adapter.missing_internals(self.module_api), [])

    def test_a_synapse_without_them_stops_start_up_naming_them(self) -> None:
        class OtherHandler:
            async def update_membership(self, requester: Any, target: Any) -> None:
                pass

        class OtherSynapse:
            def get_room_member_handler(self) -> OtherHandler:
                return OtherHandler()

        class OtherApi:
            _hs = OtherSynapse()

        with self.assertRaises(ConfigError) as info:
            synapse_adapter.require_internals(OtherApi())  # type: ignore[arg-type]
        message = str(info.exception)
        for name in (
            "RoomMemberHandler.update_membership(ratelimit=)",
            "HomeServer.get_instance_id()",
            "store.get_users_in_room",
        ):
            self.assertIn(name, message)


class WakeTestCase(BreakoutTestCase):
    """``wake``: a waiter woken from another logging context."""

    def test_the_woken_and_the_waker_each_keep_their_logging_context(self) -> None:
        waiter: defer.Deferred[None] = defer.Deferred()
        seen: dict[str, tuple[str, str]] = {}

        async def sleeper() -> None:
            before = str(current_context())
            await make_deferred_yieldable(waiter)
            seen["sleeper"] = (before, str(current_context()))

        async def waker() -> None:
            before = str(current_context())
            synapse_adapter.wake(waiter)
            seen["waker"] = (before, str(current_context()))
            synapse_adapter.wake(waiter)  # once fired, it stays as it is

        self.module_api.run_as_background_process("sleeper", sleeper)
        self.assertEqual(seen, {})
        self.module_api.run_as_background_process("waker", waker)
        for before, after in seen.values():
            self.assertEqual(after, before)
        self.assertEqual(sorted(seen), ["sleeper", "waker"])
        self.assertNotEqual(seen["sleeper"][0], seen["waker"][0])

    def test_a_synapse_without_preserve_logging_context_stops_start_up(self) -> None:
        with patch.object(synapse_adapter, "logcontext", SimpleNamespace()):
            self.assertEqual(
                synapse_adapter.missing_internals(self.module_api),
                ["logcontext.PreserveLoggingContext"],
            )


class JoinedUsersTestCase(BreakoutTestCase):
    """``joined_users``: a room's joined members by ID, as membership changes."""

    def test_joined_only_and_kept_current(self) -> None:
        host = self.register_user("host", "pass")
        host_tok = self.login("host", "pass")
        ann = self.register_user("ann", "pass")
        ann_tok = self.login("ann", "pass")
        bob = self.register_user("bob", "pass")
        cat = self.register_user("cat", "pass")
        cat_tok = self.login("cat", "pass")
        room = self.helper.create_room_as(host, is_public=True, tok=host_tok)
        assert room is not None
        self.helper.join(room, ann, tok=ann_tok)
        self.helper.join(room, cat, tok=cat_tok)
        self.helper.invite(room, host, bob, tok=host_tok)  # invited: not joined

        def joined() -> frozenset[str]:
            return self.get_success(synapse_adapter.joined_users(self.module_api, room))

        self.assertEqual(joined(), {host, ann, cat})
        self.helper.leave(room, cat, tok=cat_tok)  # the cache follows
        self.assertEqual(joined(), {host, ann})
