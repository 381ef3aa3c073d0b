"""Enforcement of local break-out sends (SPEC section 3), in Synapse's harness."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from harness import (
    STABLE,
    UNSTABLE,
    VERSIONS_AND_TYPES,
    BreakoutTestCase,
    find_module,
    module_config,
    probe_event,
    transactions_during,
)
from parameterized import parameterized_class
from synapse.server import HomeServer
from synapse.util.clock import Clock
from tests.unittest import override_config
from twisted.internet import defer
from twisted.internet.testing import MemoryReactor

from synapse_breakout.metrics import EVENTS_CHECKED

OTHER_SERVER_ROOM = "!elsewhere:remote.example"
V12_UNKNOWN = "!" + "Q" * 43


def counter(outcome: str, reason: str) -> float:
    return EVENTS_CHECKED.labels(outcome, reason)._value.get()


@parameterized_class(("room_version", "event_type"), VERSIONS_AND_TYPES)
class RulesTestCase(BreakoutTestCase):
    room_version: str
    event_type: str

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.owner = self.register_user("owner", "pass")
        self.owner_tok = self.login("owner", "pass")
        self.mod = self.register_user("mod", "pass")
        self.mod_tok = self.login("mod", "pass")
        self.member = self.register_user("member", "pass")
        self.member_tok = self.login("member", "pass")
        self.invitee = self.register_user("invitee", "pass")
        self.outsider = self.register_user("outsider", "pass")
        self.public_room = self.make_parent(public=True)
        self.private_room = self.make_parent(public=False)
        self.children = [self.make_child() for _ in range(3)]

    def make_parent(self, public: bool) -> str:
        users = {self.mod: 50}
        if self.room_version != "12":
            users[self.owner] = 100  # v12 creators must not be listed
        room_id = self.helper.create_room_as(
            self.owner,
            is_public=public,
            room_version=self.room_version,
            tok=self.owner_tok,
            extra_content={
                "preset": "public_chat" if public else "private_chat",
                "power_level_content_override": {
                    "users": users,
                    # Synapse's own rules let everyone send break-outs here, so
                    # that only the module's rules decide.
                    "events": {UNSTABLE: 0, STABLE: 0},
                },
            },
        )
        assert room_id is not None
        for user, tok in ((self.mod, self.mod_tok), (self.member, self.member_tok)):
            if not public:
                self.helper.invite(room_id, self.owner, user, tok=self.owner_tok)
            self.helper.join(room_id, user, tok=tok)
        self.helper.invite(room_id, self.owner, self.invitee, tok=self.owner_tok)
        return room_id

    def make_child(self) -> str:
        room_id = self.helper.create_room_as(
            self.owner, room_version=self.room_version, tok=self.owner_tok
        )
        assert room_id is not None
        return room_id

    def content(self, rooms: dict[str, Any] | None = None) -> dict[str, Any]:
        if rooms is None:
            rooms = {
                self.children[0]: {"via": ["test"], "users": [self.member]},
                self.children[1]: {"via": ["test"], "users": [self.invitee, self.mod]},
            }
        return {self.event_type: rooms}

    def send(
        self,
        content: dict[str, Any],
        tok: str | None = None,
        room_id: str | None = None,
        expect: int = HTTPStatus.OK,
        state_key: str = "",
    ) -> dict[str, Any]:
        return self.helper.send_state(
            room_id or self.public_room,
            self.event_type,
            content,
            tok=tok or self.mod_tok,
            expect_code=expect,
            state_key=state_key,
        )

    def assert_error(self, body: dict[str, Any], errcode: str, *named: str) -> None:
        self.assertEqual(body["errcode"], errcode, body)
        for name in named:
            self.assertIn(name, body["error"])

    def current(self, room_id: str | None = None) -> dict[str, Any] | None:
        channel = self.make_request(
            "GET",
            f"/rooms/{room_id or self.public_room}/state/{self.event_type}/",
            access_token=self.owner_tok,
        )
        return channel.json_body if channel.code == 200 else None

    # Row 1: state_key

    def test_state_key_must_be_empty(self) -> None:
        body = self.send(self.content(), state_key="x", expect=HTTPStatus.BAD_REQUEST)
        self.assert_error(body, "M_INVALID_PARAM", "state_key", '"x"')
        self.assertIsNone(self.current())

    # Row 2: shape

    def test_valid_breakout_is_stored_as_sent(self) -> None:
        allowed_before = counter("allowed", "")
        self.send(self.content())
        self.assertEqual(self.current(), self.content())
        self.assertEqual(counter("allowed", "") - allowed_before, 1)

    def test_bad_shape_names_the_field(self) -> None:
        rejected_before = counter("rejected", "bad_json")
        rooms = {self.children[0]: {"via": ["test", "not a server"]}}
        body = self.send(self.content(rooms), expect=HTTPStatus.BAD_REQUEST)
        self.assert_error(
            body,
            "M_BAD_JSON",
            f'{self.event_type}["{self.children[0]}"].via[1]',
            "not a valid server name",
        )
        self.assertEqual(counter("rejected", "bad_json") - rejected_before, 1)

    def test_bad_user_id_and_room_id(self) -> None:
        body = self.send(
            self.content({self.children[0]: {"via": ["test"], "users": ["bob"]}}),
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assert_error(body, "M_BAD_JSON", "users[0]", "not a valid user ID")
        body = self.send(
            self.content({"#alias:test": {"via": ["test"]}}),
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assert_error(body, "M_BAD_JSON", '["#alias:test"]', "not a valid room ID")

    def test_missing_via(self) -> None:
        body = self.send(
            self.content({self.children[0]: {"users": [self.member]}}),
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assert_error(body, "M_BAD_JSON", ".via", "is required")

    # Row 3: limits

    @override_config(module_config(max_child_rooms=2, max_users_per_room=1))
    def test_limits(self) -> None:
        three = {c: {"via": ["test"]} for c in self.children}
        body = self.send(self.content(three), expect=HTTPStatus.BAD_REQUEST)
        self.assert_error(body, "M_INVALID_PARAM", "3 child rooms", "at most 2")
        body = self.send(self.content(), expect=HTTPStatus.BAD_REQUEST)
        self.assert_error(
            body, "M_INVALID_PARAM", f'["{self.children[1]}"].users', "at most 1"
        )
        one_each = {
            c: {"via": ["test"], "users": [self.member]} for c in self.children[:2]
        }
        self.send(self.content(one_each))

    def test_parent_is_not_its_own_child(self) -> None:
        body = self.send(
            self.content({self.public_room: {"via": ["test"]}}),
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assert_error(body, "M_INVALID_PARAM", self.public_room, "own child")

    # Row 4: power level

    def test_low_power_sender_rejected_in_public_room(self) -> None:
        body = self.send(
            self.content(), tok=self.member_tok, expect=HTTPStatus.FORBIDDEN
        )
        self.assert_error(body, "M_FORBIDDEN", self.member, "power level 50")
        self.assertIsNone(self.current())

    def test_low_power_sender_cannot_end_it_either(self) -> None:
        self.send(self.content())
        for ending in ({}, {self.event_type: {}}):
            body = self.send(ending, tok=self.member_tok, expect=HTTPStatus.FORBIDDEN)
            self.assert_error(body, "M_FORBIDDEN", self.member)
        self.assertEqual(self.current(), self.content())

    def test_moderator_and_creator_may_end_it(self) -> None:
        self.send(self.content())
        self.send({})
        self.assertEqual(self.current(), {})
        self.send(self.content(), tok=self.owner_tok)
        self.send({self.event_type: {}}, tok=self.owner_tok)
        self.assertEqual(self.current(), {self.event_type: {}})

    def test_private_room_not_enforced_by_default(self) -> None:
        self.send(
            self.content(self.private_rooms()),
            tok=self.member_tok,
            room_id=self.private_room,
        )

    @override_config(module_config(enforce_power_level_in="all"))
    def test_enforce_all(self) -> None:
        body = self.send(
            self.content(self.private_rooms()),
            tok=self.member_tok,
            room_id=self.private_room,
            expect=HTTPStatus.FORBIDDEN,
        )
        self.assert_error(body, "M_FORBIDDEN", self.member)
        self.send(self.content(self.private_rooms()), room_id=self.private_room)

    @override_config(module_config(enforce_power_level_in="off"))
    def test_enforce_off(self) -> None:
        self.send(self.content(), tok=self.member_tok)
        self.send(
            self.content(self.private_rooms()),
            tok=self.member_tok,
            room_id=self.private_room,
        )

    @override_config(module_config(power_level=100))
    def test_configured_level(self) -> None:
        body = self.send(self.content(), expect=HTTPStatus.FORBIDDEN)
        self.assert_error(body, "M_FORBIDDEN", "power level 100", f"{self.mod} has 50")
        self.send(self.content(), tok=self.owner_tok)  # creator or PL 100

    def private_rooms(self) -> dict[str, Any]:
        # The invitee is invited to the private parent too.
        return {self.children[0]: {"via": ["test"], "users": [self.member]}}

    # Row 5: child rooms known

    def test_unknown_room_on_this_server(self) -> None:
        body = self.send(
            self.content({"!nosuchroom:test": {"via": ["remote.example"]}}),
            expect=HTTPStatus.NOT_FOUND,
        )
        self.assert_error(body, "M_NOT_FOUND", "!nosuchroom:test", "does not exist")

    def test_unknown_remote_room_naming_this_server_in_via(self) -> None:
        for room_id in (OTHER_SERVER_ROOM, V12_UNKNOWN):
            body = self.send(
                self.content({room_id: {"via": ["remote.example", "test"]}}),
                expect=HTTPStatus.NOT_FOUND,
            )
            self.assert_error(body, "M_NOT_FOUND", room_id, ".via names this server")

    def test_unknown_remote_room_allowed_by_default(self) -> None:
        rooms = {
            OTHER_SERVER_ROOM: {"via": ["remote.example"]},
            V12_UNKNOWN: {"via": ["remote.example"]},
            self.children[0]: {"via": ["test"]},
        }
        self.send(self.content(rooms))
        self.assertEqual(self.current(), self.content(rooms))

    @override_config(module_config(allow_unknown_remote_rooms=False))
    def test_unknown_remote_room_refused_when_configured(self) -> None:
        body = self.send(
            self.content({OTHER_SERVER_ROOM: {"via": ["remote.example"]}}),
            expect=HTTPStatus.NOT_FOUND,
        )
        self.assert_error(body, "M_NOT_FOUND", OTHER_SERVER_ROOM, "not known")

    # Row 6: listed users in the parent

    def test_listed_user_must_be_joined_or_invited(self) -> None:
        rooms = {
            self.children[0]: {"via": ["test"], "users": [self.member, self.outsider]}
        }
        body = self.send(self.content(rooms), expect=HTTPStatus.BAD_REQUEST)
        self.assert_error(body, "M_INVALID_PARAM", self.outsider, "users[1]")

    @override_config(module_config(users_must_be_members=False))
    def test_membership_not_required_when_configured(self) -> None:
        rooms = {self.children[0]: {"via": ["test"], "users": [self.outsider]}}
        self.send(self.content(rooms))

    def test_rules_apply_in_order(self) -> None:
        """A send breaking rows 4, 5 and 6 at once gets row 4's error."""
        rooms = {"!nosuchroom:test": {"via": ["test"], "users": [self.outsider]}}
        body = self.send(
            self.content(rooms), tok=self.member_tok, expect=HTTPStatus.FORBIDDEN
        )
        self.assert_error(body, "M_FORBIDDEN")
        body = self.send(self.content(rooms), expect=HTTPStatus.NOT_FOUND)
        self.assert_error(body, "M_NOT_FOUND")

    # Other events

    def test_other_events_pass_untouched(self) -> None:
        self.helper.send(self.public_room, "hello", tok=self.member_tok)
        self.helper.send_state(
            self.public_room, "m.room.topic", {"topic": "t"}, tok=self.owner_tok
        )
        # Content a break-out would never accept, under another type.
        self.helper.send_state(
            self.public_room,
            "org.example.custom",
            {"m.breakout": 1},
            tok=self.owner_tok,
            state_key="anything",
        )


class QueryCountTestCase(BreakoutTestCase):
    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.owner = self.register_user("owner", "pass")
        self.tok = self.login("owner", "pass")
        self.children = [self.create_room() for _ in range(50)]
        self.module = find_module(hs)

    def create_room(self) -> str:
        room_id = self.helper.create_room_as(self.owner, tok=self.tok)
        assert room_id is not None
        return room_id

    def count_transactions(self, action: Callable[[], Any]) -> tuple[int, list[str]]:
        descs = transactions_during(self.hs, action)
        return len(descs), descs

    def test_fifty_children_cost_the_same_as_one(self) -> None:
        """Checking a break-out costs one query, whatever its number of children."""
        parent = self.create_room()
        state = self.get_success(self.module_api.get_room_state(parent))
        counts = {}
        for n in (1, 10, 50):
            content = {UNSTABLE: {c: {"via": ["test"]} for c in self.children[:n]}}
            event = self.make_event(parent, UNSTABLE, content)
            counts[n], descs = self.count_transactions(
                lambda event=event: self.get_success(
                    self.module.check_event_allowed(event, state)
                )
            )
            self.assertEqual(descs, ["breakout_rooms_with_create_event"])
        self.assertEqual(counts, {1: 1, 10: 1, 50: 1})

    def test_whole_send_makes_one_module_query_for_1_and_50_children(self) -> None:
        parent = self.create_room()
        for n in (1, 50):
            content = {UNSTABLE: {c: {"via": ["test"]} for c in self.children[:n]}}
            _, descs = self.count_transactions(
                lambda content=content: self.helper.send_state(
                    parent, UNSTABLE, content, tok=self.tok
                )
            )
            ours = [d for d in descs if d.startswith("breakout_")]
            # The rules' one lookup, and the spam-checker's verdict (spam.py).
            self.assertEqual(
                sorted(ours),
                ["breakout_record_sender_verdict", "breakout_rooms_with_create_event"],
                n,
            )

    def test_no_database_access_for_other_event_types(self) -> None:
        parent = self.create_room()
        state = self.get_success(self.module_api.get_room_state(parent))
        message = self.make_event(parent, "m.room.message", {"body": "hi"}, None)
        calls, _ = self.count_transactions(
            lambda: self.assertEqual(
                # Completes without waiting on anything: no I/O at all.
                self.successResultOf(
                    defer.ensureDeferred(
                        self.module.check_event_allowed(message, state)
                    )
                ),
                (True, None),
            )
        )
        self.assertEqual(calls, 0)

    def make_event(
        self,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = "",
    ) -> Any:
        return probe_event(event_type, content, room_id, self.owner, state_key)
