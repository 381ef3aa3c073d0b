"""What a break-out owns, who acts, and deciding under the lock (SPEC section 4).

Each test is an attack or a race that worked before the module acted only in
its own rooms, as the caller, on what it read under the parent's lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from http import HTTPStatus

from harness import UNSTABLE, ParentRoomTestCase, find_module, module_config
from synapse.server import HomeServer
from synapse.util.clock import Clock
from tests.unittest import override_config
from twisted.internet.testing import MemoryReactor

from synapse_breakout.matrix.notices import NOTICE_KEY, NoticeKind

MODERATORS = module_config(admin_api={"allow_room_moderators": True})


class OwnRoomsTestCase(ParentRoomTestCase):
    """A moderator adds the host's private room R, where a victim V is, to
    the break-out by hand; nothing the module does may touch R."""

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.victim = self.users[5]
        private = self.helper.create_room_as(
            self.host, is_public=False, tok=self.host_tok, extra_content={"name": "R"}
        )
        assert private is not None
        self.private = private
        self.helper.invite(private, self.host, self.victim, tok=self.host_tok)
        self.helper.join(private, self.victim, tok=self.toks[self.victim])
        self.helper.send(private, "private talk", tok=self.host_tok)
        result = self.start({"rooms": [{"name": "A", "users": [self.users[0]]}]})
        self.child = result["rooms"][0]["room_id"]
        content = self.state(self.parent, UNSTABLE)
        content[UNSTABLE][private] = {"via": ["test"], "users": [self.mod]}
        self.helper.send_state(self.parent, UNSTABLE, content, tok=self.mod_tok)

    def private_untouched(self) -> None:
        self.assertEqual(self.membership_in(self.private, self.victim), "join")
        self.assertIsNone(self.membership_in(self.private, self.mod))
        bodies = [m["content"]["body"] for m in self.messages(self.private)]
        self.assertEqual(bodies, ["private talk"])

    def test_ejection_leaves_a_room_added_by_hand_alone(self) -> None:
        self.helper.ban(self.parent, self.mod, self.victim, tok=self.mod_tok)
        self.helper.ban(self.parent, self.mod, self.users[0], tok=self.mod_tok)
        self.reactor.advance(6)
        self.private_untouched()
        # The break-out's own room is still policed.
        self.assertEqual(self.membership_in(self.child, self.users[0]), "leave")

    @override_config(MODERATORS)
    def test_get_lists_it_unmanaged_without_reading_it(self) -> None:
        got = self.call("GET", self.room_path(), tok=self.mod_tok)
        rooms = {r["room_id"]: r for r in got["rooms"]}
        self.assertEqual(
            (rooms[self.private]["managed"], rooms[self.private]["name"]),
            (False, None),
        )
        self.assertIsNone(rooms[self.private]["joined_members"])
        self.assertEqual(
            (rooms[self.child]["managed"], rooms[self.child]["name"]), (True, "A")
        )

    @override_config(MODERATORS)
    def test_broadcast_move_and_close_rooms_leave_it_alone(self) -> None:
        sent = self.call(
            "POST",
            self.room_path(suffix="/broadcast"),
            {"body": "hi"},
            tok=self.mod_tok,
        )
        self.assertEqual(list(sent["event_ids"]), [self.child])
        err = self.call(
            "POST",
            self.room_path(suffix="/move"),
            {"user_id": self.mod, "to": self.private},
            tok=self.mod_tok,
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assertEqual(err["errcode"], "M_INVALID_PARAM")
        self.call(
            "DELETE",
            self.room_path(),
            {"message": "bye", "close_rooms": True},
            tok=self.mod_tok,
        )
        self.private_untouched()
        self.assertTrue(self.room_exists(self.private))


class WhoActsTestCase(ParentRoomTestCase):
    @override_config(MODERATORS)
    def test_a_moderator_acts_as_themselves(self) -> None:
        # Started by a server admin through the host; the moderator is in no child.
        result = self.start({"rooms": [{"name": "A"}], "join_rule": "invite"})
        child = result["rooms"][0]["room_id"]
        self.assertIsNone(self.membership_in(child, self.mod))
        self.call(
            "POST",
            self.room_path(suffix="/broadcast"),
            {"body": "hi"},
            tok=self.mod_tok,
        )
        # The welcome notice came first, sent by the acting user.
        [notice] = [
            m
            for m in self.messages(child)
            if m["content"].get(NOTICE_KEY) == NoticeKind.BROADCAST
        ]
        self.assertEqual(notice["sender"], self.mod)
        self.assertEqual(self.membership_in(child, self.mod), "join")
        ended = self.call("DELETE", self.room_path(), tok=self.mod_tok)
        event = self.get_success(
            self.hs.get_datastores().main.get_event(ended["event_id"])
        )
        self.assertEqual(event.sender, self.mod)

    def test_a_server_admin_acts_through_the_acting_user(self) -> None:
        result = self.start({"rooms": [{"name": "A"}]})
        child = result["rooms"][0]["room_id"]
        self.call("POST", self.room_path(suffix="/broadcast"), {"body": "hi"})
        # The welcome notice came first, sent by the acting user.
        [notice] = [
            m
            for m in self.messages(child)
            if m["content"].get(NOTICE_KEY) == NoticeKind.BROADCAST
        ]
        self.assertEqual(notice["sender"], self.host)


class ForcedJoinTestCase(ParentRoomTestCase):
    def test_join_only_joins_users_joined_to_the_parent(self) -> None:
        outsider = self.register_user("outsider", "pass")
        self.helper.invite(self.parent, self.host, outsider, tok=self.host_tok)
        result = self.start(
            {
                "rooms": [{"name": "A", "users": [outsider, self.users[0]]}],
                "move": "join",
                "join_rule": "invite",
            }
        )
        child = result["rooms"][0]["room_id"]
        self.assertEqual(self.membership_in(child, outsider), "invite")
        self.assertEqual(self.membership_in(child, self.users[0]), "join")
        # So does a later move.
        self.call(
            "POST", self.room_path(suffix="/move"), {"user_id": outsider, "to": None}
        )
        self.call(
            "POST", self.room_path(suffix="/move"), {"user_id": outsider, "to": child}
        )
        self.assertEqual(self.membership_in(child, outsider), "invite")


class UnderTheLockTestCase(ParentRoomTestCase):
    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.module = find_module(hs)

    def end_before_the_lock(self, kind: str) -> None:
        """Make an end run between a ``kind`` call's first read and its lock."""
        locks = self.module.locks
        original = locks.hold
        ender = self.module.operations.ender
        admin = self.admin

        @contextlib.asynccontextmanager
        async def lock(parent: str, lock_kind: str) -> AsyncIterator[None]:
            if lock_kind == kind:
                locks.hold = original  # type: ignore[method-assign]
                await ender.end(admin, parent, None, False)
            async with original(parent, lock_kind):
                yield

        locks.hold = lock  # type: ignore[method-assign]

    def test_move_after_an_end_does_not_revive_the_breakout(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A", "users": [self.users[0]]}, {"name": "B"}]}
        )
        b = next(r["room_id"] for r in result["rooms"] if r["name"] == "B")
        self.end_before_the_lock("move")
        err = self.call(
            "POST",
            self.room_path(suffix="/move"),
            {"user_id": self.users[0], "to": b},
            expect=HTTPStatus.CONFLICT,
        )
        self.assertIn("changed", err["error"])
        self.assertFalse(self.call("GET", self.room_path())["active"])

    def test_end_after_another_end_is_a_conflict(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        self.end_before_the_lock("end")
        self.call("DELETE", self.room_path(), expect=HTTPStatus.CONFLICT)
        self.assertEqual(self.state(self.parent, UNSTABLE), {UNSTABLE: {}})

    def test_the_deadline_does_not_end_a_replacement(self) -> None:
        self.start({"rooms": [{"name": "A"}], "duration_seconds": 10})
        store = self.module.operation_store
        stale = self.get_success(store.list_running())
        replaced = self.start({"rooms": [{"name": "B"}], "replace": True})

        async def due(now: int) -> list:  # type: ignore[type-arg]
            return stale  # read just before the replacement

        store.due = due  # type: ignore[method-assign]
        self.get_success(self.module.loops.end_due())
        got = self.call("GET", self.room_path())
        self.assertTrue(got["active"])
        self.assertEqual(got["event_id"], replaced["event_id"])
