"""What participants see and may do (docs/participants.md), in Synapse's harness:
the notices, the children's power levels, invitations withdrawn at the end,
the room order of GET."""

from __future__ import annotations

import urllib.parse
from typing import Any

from harness import UNSTABLE, ParentRoomTestCase, links, module_config
from synapse.rest.client import sync
from tests.unittest import override_config

from synapse_breakout.matrix.notices import EVENT_ID_KEY, NOTICE_KEY, time_of_day

CALL_MEMBER = "org.matrix.msc3401.call.member"
PINNED = "m.room.pinned_events"
WIDGETS = "im.vector.modular.widgets"


class NoticesTestCase(ParentRoomTestCase):
    def start_two(self, **extra: Any) -> Any:
        result = self.start(
            {
                "rooms": [
                    {"name": "Table 1", "users": self.users[:2]},
                    {"name": "Table 2", "users": self.users[2:3]},
                ],
                **extra,
            }
        )
        self.pump()
        return result

    def test_started_in_the_parent_links_each_room_and_mentions_its_users(
        self,
    ) -> None:
        result = self.start_two()
        (started,) = self.notices(self.parent, "started")
        self.assertEqual(started[EVENT_ID_KEY], result["event_id"])
        rooms = [r["room_id"] for r in result["rooms"]]
        self.assertEqual(
            links(started),
            [
                (rooms[0], ["test"]),
                (self.users[0], []),
                (self.users[1], []),
                (rooms[1], ["test"]),
                (self.users[2], []),
            ],
        )
        self.assertEqual(started["m.mentions"]["user_ids"], self.users[:3])
        # Sent by the acting user, right after the break-out event; then
        # pinned (PinsTestCase), then the console widget once everyone was told.
        chunk = self.make_request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(self.parent)}/messages"
            "?dir=b&limit=4",
            access_token=self.host_tok,
        ).json_body["chunk"]
        self.assertEqual(
            [(e["type"], e["sender"]) for e in chunk],
            [
                ("im.vector.modular.widgets", self.host),
                (PINNED, self.host),
                ("m.room.message", self.host),
                (UNSTABLE, self.host),
            ],
        )
        # The link works: a participant invited there joins through it.
        self.helper.join(rooms[0], self.users[0], tok=self.toks[self.users[0]])

    def test_welcome_in_each_child_links_back_with_the_time(self) -> None:
        result = self.start_two(duration_seconds=1800)
        for room in result["rooms"]:
            (welcome,) = self.notices(room["room_id"], "welcome")
            self.assertEqual(welcome[EVENT_ID_KEY], result["event_id"])
            self.assertEqual(links(welcome), [(self.parent, ["test"])])
            self.assertIn(f"Welcome to {room['name']}!", welcome["body"])
            self.assertIn("You have 30 minutes.", welcome["body"])
            self.assertEqual(welcome["m.mentions"], {"user_ids": []})
        # The parent's notice says when it ends, as a time of day.
        (started,) = self.notices(self.parent, "started")
        until = time_of_day(result["ends_at"], result["ends_at"] - 1800_000)
        self.assertTrue(
            started["body"].startswith(f"Break-out started, until {until}: ")
        )

    def test_broadcast_and_ended_notices(self) -> None:
        result = self.start_two()
        self.call("POST", self.room_path(suffix="/broadcast"), {"body": "Hello"})
        self.call("DELETE", self.room_path(), {"message": "Thanks all"})
        for room in result["rooms"]:
            kinds = [c[NOTICE_KEY] for c in self.notices(room["room_id"])]
            self.assertEqual(kinds, ["welcome", "broadcast", "ended"])
            (ended,) = self.notices(room["room_id"], "ended")
            self.assertEqual(ended[EVENT_ID_KEY], result["event_id"])
            self.assertTrue(ended["body"].startswith("Thanks all\n\n"))
            self.assertEqual(links(ended), [(self.parent, ["test"])])
        (ended,) = self.notices(self.parent, "ended")
        self.assertEqual(ended[EVENT_ID_KEY], result["event_id"])

    @override_config(module_config(notices=False))
    def test_notices_false_sends_none(self) -> None:
        result = self.start_two(duration_seconds=600)
        self.call("DELETE", self.room_path())
        self.assertEqual(self.notices(self.parent), [])
        for room in result["rooms"]:
            self.assertEqual(self.notices(room["room_id"]), [])


class ChildPowerLevelsTestCase(ParentRoomTestCase):
    def parent_levels(self) -> dict[str, Any]:
        levels = self.state(self.parent, "m.room.power_levels")
        assert levels is not None
        return dict(levels)

    def set_parent_levels(self, **changes: Any) -> None:
        self.helper.send_state(
            self.parent,
            "m.room.power_levels",
            {**self.parent_levels(), **changes},
            tok=self.host_tok,
        )

    def call_member(self, room_id: str, user: str, expect: int) -> None:
        for event_type in (CALL_MEMBER, WIDGETS):
            self.helper.send_state(
                room_id,
                event_type,
                {"memberships": []} if event_type == CALL_MEMBER else {},
                state_key=user,
                tok=self.toks[user],
                expect_code=expect,
            )

    def test_members_may_call_in_the_child_when_they_may_in_the_parent(
        self,
    ) -> None:
        events = {**self.parent_levels()["events"], CALL_MEMBER: 0, WIDGETS: 0}
        self.set_parent_levels(
            events=events, users_default=5, invite=0, kick=75, ban=80, redact=40
        )
        user = self.users[0]
        self.call_member(self.parent, user, 200)
        result = self.start(
            {"rooms": [{"name": "Call", "users": [user]}], "move": "join"}
        )
        child = result["rooms"][0]["room_id"]
        levels = self.state(child, "m.room.power_levels")
        for field in ("users_default", "invite", "kick", "ban", "redact"):
            self.assertEqual(levels[field], self.parent_levels()[field], field)
        self.assertEqual(levels["events"], events)
        self.assertEqual(levels["users"][self.mod], 50)
        self.assertEqual(levels["users"][self.host], 100)
        self.call_member(child, user, 200)

    def test_members_who_may_not_call_in_the_parent_may_not_in_the_child(
        self,
    ) -> None:
        user = self.users[0]
        self.call_member(self.parent, user, 403)
        result = self.start(
            {"rooms": [{"name": "Call", "users": [user]}], "move": "join"}
        )
        self.call_member(result["rooms"][0]["room_id"], user, 403)

    def test_version_12_creator_keeps_administering(self) -> None:
        self.parent = self.make_parent(version="12")
        self.set_parent_levels(kick=60)
        result = self.start({"rooms": [{"name": "A", "users": self.users[:1]}]})
        child = result["rooms"][0]["room_id"]
        levels = self.state(child, "m.room.power_levels")
        self.assertNotIn(self.host, levels["users"])  # a creator is never listed
        self.assertEqual(levels["users"][self.mod], 50)
        self.assertEqual(levels["kick"], 60)
        # The acting user (the child's creator) still kicks.
        self.helper.change_membership(
            child, self.host, self.users[0], "leave", tok=self.host_tok
        )


class EndingTestCase(ParentRoomTestCase):
    servlets = [*ParentRoomTestCase.servlets, sync.register_servlets]

    def test_end_withdraws_invitations_nobody_accepted(self) -> None:
        result = self.start({"rooms": [{"name": "A", "users": self.users[:2]}]})
        child = result["rooms"][0]["room_id"]
        self.helper.join(child, self.users[0], tok=self.toks[self.users[0]])
        self.call("DELETE", self.room_path())
        self.assertEqual(self.membership_in(child, self.users[0]), "join")
        self.assertEqual(self.membership_in(child, self.users[1]), "leave")
        sync = self.make_request(
            "GET", "/_matrix/client/v3/sync", access_token=self.toks[self.users[1]]
        ).json_body
        self.assertNotIn(child, sync["rooms"].get("invite", {}))

    def test_replace_ends_the_old_break_out_in_its_own_rooms(self) -> None:
        old = self.start({"rooms": [{"name": "A", "users": self.users[:2]}]})
        child = old["rooms"][0]["room_id"]
        self.helper.join(child, self.users[0], tok=self.toks[self.users[0]])
        new = self.start(
            {"rooms": [{"name": "B", "users": self.users[2:4]}], "replace": True}
        )
        self.pump(1)
        # The old room: told it ended, the invitation nobody took withdrawn,
        # whoever is in stays (the room lives on, as after DELETE).
        (ended,) = self.notices(child, "ended")
        self.assertEqual(ended[EVENT_ID_KEY], old["event_id"])
        self.assertEqual(self.membership_in(child, self.users[1]), "leave")
        self.assertEqual(self.membership_in(child, self.users[0]), "join")
        # The parent hears of the new break-out, not of an end.
        self.assertEqual(self.notices(self.parent, "ended"), [])
        self.assertEqual(len(self.notices(self.parent, "started")), 2)
        new_child = new["rooms"][0]["room_id"]
        self.assertEqual(self.membership_in(new_child, self.users[2]), "invite")
        self.assertEqual(self.notices(new_child, "ended"), [])

    def test_deadline_end_withdraws_invitations_too(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A", "users": self.users[:1]}], "duration_seconds": 5}
        )
        self.reactor.advance(7)
        self.pump(1)
        child = result["rooms"][0]["room_id"]
        self.assertEqual(self.membership_in(child, self.users[0]), "leave")


class DescribeTestCase(ParentRoomTestCase):
    def test_rooms_in_start_order_and_started_at_stays(self) -> None:
        names = [f"Room {c}" for c in "QWERTYUIOP"]
        result = self.start({"rooms": [{"name": n} for n in names]})
        before = self.call("GET", self.room_path())
        self.assertEqual([r["name"] for r in before["rooms"]], names)
        self.assertEqual(
            [r["room_id"] for r in before["rooms"]],
            [r["room_id"] for r in result["rooms"]],
        )
        self.reactor.advance(30)
        self.call(
            "POST",
            self.room_path(suffix="/move"),
            {"user_id": self.users[0], "to": result["rooms"][3]["room_id"]},
        )
        after = self.call("GET", self.room_path())
        self.assertNotEqual(after["event_id"], before["event_id"])
        self.assertEqual(after["started_at"], before["started_at"])
        self.assertEqual([r["name"] for r in after["rooms"]], names)


class PinsTestCase(ParentRoomTestCase):
    """``started`` pinned in the parent, each ``welcome`` in its room, both
    unpinned at the end; the parent's other pins stay."""

    def prepare(self, *args: Any) -> None:
        super().prepare(*args)
        self.agenda = self.helper.send(self.parent, "Agenda", tok=self.host_tok)[
            "event_id"
        ]
        self.helper.send_state(
            self.parent, PINNED, {"pinned": [self.agenda]}, tok=self.host_tok
        )

    def pins(self, room_id: str, tok: str | None = None) -> list[str]:
        channel = self.make_request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/state/{PINNED}/",
            access_token=tok or self.host_tok,
        )
        return list(channel.json_body["pinned"]) if channel.code == 200 else []

    def notice_id(self, room_id: str, kind: str, tok: str | None = None) -> str:
        channel = self.make_request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages"
            "?dir=b&limit=100",
            access_token=tok or self.host_tok,
        )
        for event in channel.json_body["chunk"]:
            if event["content"].get(NOTICE_KEY) == kind:
                return str(event["event_id"])
        raise AssertionError(f"no {kind} notice in {room_id}")

    def start_pinned(self, name: str = "A", **extra: Any) -> tuple[Any, list[str]]:
        """A start of two rooms, its notices sent; (its answer, its rooms)."""
        result = self.start(
            {
                "rooms": [
                    {"name": f"{name}1", "users": self.users[:1]},
                    {"name": f"{name}2", "users": self.users[1:2]},
                ],
                **extra,
            }
        )
        self.pump(1)
        rooms = [r["room_id"] for r in result["rooms"]]
        self.assertIn(self.notice_id(self.parent, "started"), self.pins(self.parent))
        for room in rooms:
            self.assertEqual(self.pins(room), [self.notice_id(room, "welcome")])
        return result, rooms

    def test_started_pinned_beside_the_parents_pin_and_welcome_in_each_room(
        self,
    ) -> None:
        self.start_pinned()
        started = self.notice_id(self.parent, "started")
        self.assertEqual(self.pins(self.parent), [self.agenda, started])

    def test_delete_unpins_them_and_keeps_the_other_pin(self) -> None:
        _, rooms = self.start_pinned()
        self.call("DELETE", self.room_path())
        self.assertEqual(self.pins(self.parent), [self.agenda])
        for room in rooms:
            self.assertEqual(self.pins(room), [])

    def test_the_timer_unpins_them(self) -> None:
        _, rooms = self.start_pinned(duration_seconds=600)
        self.reactor.advance(602)
        self.pump(1)
        self.assertEqual(len(self.notices(self.parent, "ended")), 1)
        self.assertEqual(self.pins(self.parent), [self.agenda])
        for room in rooms:
            self.assertEqual(self.pins(room), [])

    def test_replace_unpins_the_old_and_pins_the_new(self) -> None:
        _, old_rooms = self.start_pinned("A")
        old_started = self.notice_id(self.parent, "started")
        new = self.start(
            {"rooms": [{"name": "B1", "users": self.users[2:3]}], "replace": True}
        )
        self.pump(1)
        new_started = self.notice_id(self.parent, "started")
        self.assertNotEqual(new_started, old_started)
        self.assertEqual(self.pins(self.parent), [self.agenda, new_started])
        for room in old_rooms:
            self.assertEqual(self.pins(room), [])
        new_room = new["rooms"][0]["room_id"]
        self.assertEqual(self.pins(new_room), [self.notice_id(new_room, "welcome")])

    def test_an_acting_user_who_may_not_pin_in_the_parent_starts_all_the_same(
        self,
    ) -> None:
        levels = self.state(self.parent, "m.room.power_levels")
        levels["events"][PINNED] = 100
        self.helper.send_state(
            self.parent, "m.room.power_levels", levels, tok=self.host_tok
        )
        result = self.start(
            {"rooms": [{"name": "A", "users": self.users[:1]}], "acting_user": self.mod}
        )
        self.pump(1)
        self.assertEqual(len(self.notices(self.parent, "started")), 1)
        self.assertEqual(self.pins(self.parent), [self.agenda])
        # In its own room the acting user (its creator) may pin.
        room = result["rooms"][0]["room_id"]
        welcome = self.notice_id(room, "welcome", self.mod_tok)
        self.assertEqual(self.pins(room, self.mod_tok), [welcome])
        self.call("DELETE", self.room_path())
        self.assertEqual(self.pins(self.parent), [self.agenda])
        self.assertEqual(self.pins(room, self.mod_tok), [])
