"""``move: choose`` and ``room_capacity`` (docs/rules.md, "Room capacity";
docs/admin_api.md), in Synapse's harness: rooms nobody is assigned to, joins
up to the capacity and the next one refused, moderators never counted, a
leave that frees a place, two joins racing for the last place, and joins
elsewhere untouched (no database access once a room was seen)."""

from __future__ import annotations

import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import UNSTABLE, ParentRoomTestCase, find_module, transactions_during
from tests.server import FakeChannel

from synapse_breakout.journal.capacity import SEAT_HOLD_MS
from synapse_breakout.matrix.errors import ROOM_FULL


class ChooseTestCase(ParentRoomTestCase):
    def start_choose(self, capacity: int | None = 2, **extra: Any) -> Any:
        body: dict[str, Any] = {
            "rooms": [{"name": "Room 1"}, {"name": "Room 2"}],
            "move": "choose",
            **extra,
        }
        if capacity is not None:
            body["room_capacity"] = capacity
        result = self.start(body)
        self.pump(1)
        return result

    def join(self, room_id: str, user: str, tok: str | None = None) -> FakeChannel:
        return self.make_request(
            "POST",
            f"/_matrix/client/v3/join/{urllib.parse.quote(room_id)}",
            {},
            access_token=tok or self.toks[user],
        )

    def leave(self, room_id: str, user: str) -> None:
        self.helper.leave(room_id, user, tok=self.toks[user])

    def test_choose_assigns_nobody_and_the_notice_says_choose_a_room(self) -> None:
        result = self.start_choose()
        self.assertEqual([r["users"] for r in result["rooms"]], [[], []])
        event = self.state(self.parent, UNSTABLE)
        for child in event[UNSTABLE].values():
            self.assertNotIn("users", child)
        (started,) = self.notices(self.parent, "started")
        self.assertTrue(
            started["body"].startswith(
                "Break-out started: choose a room (up to 2 people each).\n• Room 1 ("
            ),
            started["body"],
        )
        got = self.call("GET", self.room_path())
        self.assertEqual(
            [(r["name"], r["capacity"], r["counted_members"]) for r in got["rooms"]],
            [("Room 1", 2, 0), ("Room 2", 2, 0)],
        )
        # Nobody was invited: every member of the parent may join any room.
        for room in result["rooms"]:
            self.assertIsNone(self.membership_in(room["room_id"], self.users[0]))

    def test_auto_assign_gives_the_number_of_rooms_only(self) -> None:
        result = self.start({"auto_assign": {"rooms": 3}, "move": "choose"})
        self.assertEqual(
            [r["name"] for r in result["rooms"]], ["Room 1", "Room 2", "Room 3"]
        )
        self.assertEqual([r["users"] for r in result["rooms"]], [[], [], []])
        self.assertEqual(
            [r["capacity"] for r in self.call("GET", self.room_path())["rooms"]],
            [None, None, None],
        )

    def test_bad_requests_name_the_field(self) -> None:
        for body, field in [
            (
                {"rooms": [{"name": "A", "users": self.users[:1]}], "move": "choose"},
                "rooms[0].users",
            ),
            ({"rooms": [{"name": "A"}], "room_capacity": 0}, "room_capacity"),
            ({"rooms": [{"name": "A"}], "room_capacity": 1001}, "room_capacity"),
            ({"rooms": [{"name": "A"}], "room_capacity": "8"}, "room_capacity"),
            (
                {"rooms": [{"name": "A", "users": self.users[:3]}], "room_capacity": 2},
                "rooms[0].users",
            ),
            ({"auto_assign": {"rooms": 1}, "room_capacity": 2}, "auto_assign.users"),
        ]:
            error = self.start(body, expect=HTTPStatus.BAD_REQUEST)
            self.assertTrue(error["error"].startswith(f"{field}: "), (body, error))
        self.assertIn("a room_capacity of 2", error["error"])
        self.assertFalse(self.call("GET", self.room_path())["active"])

    def test_joins_up_to_the_capacity_then_room_full(self) -> None:
        result = self.start_choose()
        room = result["rooms"][1]["room_id"]
        for user in self.users[:2]:
            self.assertEqual(self.join(room, user).code, HTTPStatus.OK)
        refused = self.join(room, self.users[2])
        self.assertEqual(refused.code, HTTPStatus.FORBIDDEN, refused.json_body)
        self.assertEqual(
            refused.json_body,
            {"errcode": ROOM_FULL, "error": "Room 2 is full (2 of 2)"},
        )
        self.assertIsNone(self.membership_in(room, self.users[2]))
        # The other room is another matter.
        other = result["rooms"][0]["room_id"]
        self.assertEqual(self.join(other, self.users[2]).code, HTTPStatus.OK)
        # A member already in changes their name: no new place taken.
        self.helper.send_state(
            room,
            "m.room.member",
            {"membership": "join", "displayname": "Zed"},
            state_key=self.users[0],
            tok=self.toks[self.users[0]],
        )
        got = {r["room_id"]: r for r in self.call("GET", self.room_path())["rooms"]}
        self.assertEqual(got[room]["counted_members"], 2)
        self.assertEqual(got[room]["joined_members"], 3)  # with the host

    def test_moderators_are_not_counted_and_never_refused(self) -> None:
        room = self.start_choose(capacity=1)["rooms"][0]["room_id"]
        self.assertEqual(self.join(room, self.users[0]).code, HTTPStatus.OK)
        self.assertEqual(self.join(room, self.mod, self.mod_tok).code, HTTPStatus.OK)
        self.assertEqual(self.join(room, self.users[1]).code, HTTPStatus.FORBIDDEN)
        # The host (the acting user, in the room from its creation) and the
        # moderator: neither takes the place.
        got = self.call("GET", self.room_path())["rooms"][0]
        self.assertEqual((got["joined_members"], got["counted_members"]), (3, 1))

    def test_a_leave_frees_a_place(self) -> None:
        room = self.start_choose(capacity=1)["rooms"][0]["room_id"]
        self.assertEqual(self.join(room, self.users[0]).code, HTTPStatus.OK)
        self.assertEqual(self.join(room, self.users[1]).code, HTTPStatus.FORBIDDEN)
        self.leave(room, self.users[0])
        self.assertEqual(self.join(room, self.users[1]).code, HTTPStatus.OK)
        # A kick frees it too.
        self.helper.change_membership(
            room, self.host, self.users[1], "leave", tok=self.host_tok
        )
        self.assertEqual(self.join(room, self.users[2]).code, HTTPStatus.OK)

    def test_two_joins_racing_for_the_last_place_one_wins(self) -> None:
        room = self.start_choose(capacity=2)["rooms"][0]["room_id"]
        self.assertEqual(self.join(room, self.users[0]).code, HTTPStatus.OK)
        racing = [
            self.make_request(
                "POST",
                f"/_matrix/client/v3/join/{urllib.parse.quote(room)}",
                {},
                access_token=self.toks[user],
                await_result=False,
            )
            for user in self.users[1:3]
        ]
        for channel in racing:
            channel.await_result()
        self.assertEqual(
            sorted(channel.code for channel in racing),
            [HTTPStatus.OK, HTTPStatus.FORBIDDEN],
        )
        got = self.call("GET", self.room_path())["rooms"][0]
        self.assertEqual(got["counted_members"], 2)

    def test_move_join_into_a_full_room_is_a_failed_user(self) -> None:
        result = self.start(
            {
                "rooms": [{"name": "A", "users": self.users[:2]}],
                "move": "join",
                "room_capacity": 2,
            }
        )
        room = result["rooms"][0]["room_id"]
        self.assertEqual(result["failed_users"], [])
        moved = self.call(
            "POST",
            self.room_path(suffix="/move"),
            {"user_id": self.users[2], "to": room},
        )
        (failed,) = moved["failed"]
        self.assertEqual((failed["room_id"], failed["errcode"]), (room, ROOM_FULL))
        self.assertNotEqual(self.membership_in(room, self.users[2]), "join")

    def test_after_the_end_the_room_is_on_its_own(self) -> None:
        room = self.start_choose(capacity=1)["rooms"][0]["room_id"]
        self.assertEqual(self.join(room, self.users[0]).code, HTTPStatus.OK)
        self.call("DELETE", self.room_path())
        self.assertEqual(self.join(room, self.users[1]).code, HTTPStatus.OK)

    def test_joins_elsewhere_cost_no_database_access(self) -> None:
        """A room that is not capped, a break-out room without a capacity:
        once the process has seen the room, a join asks the journal nothing."""
        self.start_choose(capacity=None)
        plain = self.helper.create_room_as(self.host, is_public=True, tok=self.host_tok)
        child = self.call("GET", self.room_path())["rooms"][0]["room_id"]
        for room in (plain, child):
            self.assertEqual(self.join(room, self.users[0]).code, HTTPStatus.OK)
            seen = transactions_during(
                self.hs, lambda room=room: self.join(room, self.users[1])
            )
            self.assertEqual([t for t in seen if t.startswith("breakout_")], [])
            self.assertEqual(self.membership_in(room, self.users[1]), "join")

    def test_a_capped_room_is_known_as_such_at_once(self) -> None:
        """The creating process drops what its creator's join cached."""
        module = find_module(self.hs)
        room = self.start_choose(capacity=1)["rooms"][0]["room_id"]
        capped = self.get_success(module.capacity.capped(room))
        assert capped is not None
        self.assertEqual((capped.parent_room_id, capped.capacity), (self.parent, 1))

    def test_a_place_taken_by_a_join_on_its_way_counts(self) -> None:
        """What keeps two workers from both letting in the last member: the
        place a join took counts before the join shows in the room's state
        (as on a worker whose state lags), for a minute at most if it never
        does, and a leave gives it back."""
        store = find_module(self.hs).capacity
        room = self.start_choose(capacity=1)["rooms"][0]["room_id"]
        first, second = self.users[:2]
        self.assertIsNone(self.get_success(store.claim(room, first, (), 1)))
        self.assertEqual(self.get_success(store.claim(room, second, (), 1)), 1)
        # Asked again (Synapse retries), the first keeps its place.
        self.assertIsNone(self.get_success(store.claim(room, first, (), 1)))
        self.reactor.advance(SEAT_HOLD_MS / 1000 + 1)
        self.assertIsNone(self.get_success(store.claim(room, second, (), 1)))
        self.get_success(store.release(room, second))
        self.assertIsNone(self.get_success(store.claim(room, first, (), 1)))
