"""POST .../help (help.py): participants ask the host for help."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from harness import UNSTABLE, ParentRoomTestCase, links

from synapse_breakout.matrix.notices import EVENT_ID_KEY


class HelpTestCase(ParentRoomTestCase):
    def prepare(self, *args: Any) -> None:
        super().prepare(*args)
        self.result = self.start(
            {
                "rooms": [
                    {"name": "Table 1", "users": self.users[:2]},
                    {"name": "Table 2", "users": self.users[2:4]},
                ],
                "move": "join",
            }
        )
        self.tables = [r["room_id"] for r in self.result["rooms"]]

    def ask(
        self,
        user: str,
        body: Any,
        expect: int = HTTPStatus.OK,
        parent: str | None = None,
    ) -> Any:
        return self.call(
            "POST",
            self.room_path(parent, "/help"),
            body,
            tok=self.toks[user],
            expect=expect,
        )

    def test_a_participant_asks_and_the_host_is_mentioned(self) -> None:
        asking = self.users[0]
        answer = self.ask(asking, {"room_id": self.tables[0], "message": "We're stuck"})
        (notice,) = self.notices(self.parent, "help")
        self.assertEqual(notice[EVENT_ID_KEY], self.result["event_id"])
        self.assertEqual(notice["m.mentions"]["user_ids"], [self.host, asking])
        self.assertEqual(
            links(notice), [(self.host, []), (asking, []), (self.tables[0], ["test"])]
        )
        self.assertIn("asks for help in Table 1", notice["body"])
        self.assertTrue(notice["body"].endswith("\nWe're stuck"))
        event = self.helper.get_event(
            self.parent, answer["event_id"], tok=self.host_tok
        )
        self.assertEqual(event["sender"], asking)

    def test_once_a_minute_per_room(self) -> None:
        self.ask(self.users[0], {"room_id": self.tables[0]})
        error = self.ask(
            self.users[1], {"room_id": self.tables[0]}, HTTPStatus.TOO_MANY_REQUESTS
        )
        self.assertEqual(error["errcode"], "M_LIMIT_EXCEEDED")
        self.assertTrue(0 < error["retry_after_ms"] <= 60_000)
        self.ask(self.users[2], {"room_id": self.tables[1]})  # another room may
        self.reactor.advance(61)
        self.ask(self.users[1], {"room_id": self.tables[0]})
        self.assertEqual(len(self.notices(self.parent, "help")), 3)

    def test_only_members_of_own_children(self) -> None:
        # In the other table, not in this one.
        self.ask(self.users[2], {"room_id": self.tables[0]}, HTTPStatus.FORBIDDEN)
        # Assigned to no room.
        self.ask(self.users[5], {"room_id": self.tables[0]}, HTTPStatus.FORBIDDEN)
        # Invited, not joined.
        self.helper.invite(self.tables[0], self.host, self.users[4], tok=self.host_tok)
        self.ask(self.users[4], {"room_id": self.tables[0]}, HTTPStatus.FORBIDDEN)
        # A room listed by hand, which the break-out does not own.
        other = self.helper.create_room_as(self.users[5], tok=self.toks[self.users[5]])
        content = self.state(self.parent, UNSTABLE)
        content[UNSTABLE][other] = {"via": ["test"]}
        self.helper.send_state(self.parent, UNSTABLE, content, tok=self.host_tok)
        self.ask(self.users[5], {"room_id": other}, HTTPStatus.FORBIDDEN)
        # No active break-out, or an unknown parent.
        self.call("DELETE", self.room_path())
        self.ask(self.users[0], {"room_id": self.tables[0]}, HTTPStatus.FORBIDDEN)
        self.ask(
            self.users[0],
            {"room_id": self.tables[0]},
            HTTPStatus.FORBIDDEN,
            "!nope:test",
        )
        self.assertEqual(self.notices(self.parent, "help"), [])

    def test_bad_bodies(self) -> None:
        user = self.users[0]
        for body, field, code in [
            ({}, "room_id", "M_MISSING_PARAM"),
            ({"room_id": "nope"}, "room_id", "M_INVALID_PARAM"),
            ({"room_id": self.tables[0], "message": "x" * 1001}, "message", None),
            ({"room_id": self.tables[0], "message": 5}, "message", None),
            ({"room_id": self.tables[0], "urgent": True}, "urgent", None),
        ]:
            error = self.ask(user, body, HTTPStatus.BAD_REQUEST)
            self.assertTrue(error["error"].startswith(field), error)
            if code:
                self.assertEqual(error["errcode"], code)
        channel = self.make_request(
            "POST", "/_synapse/client/breakout/v1" + self.room_path(suffix="/help"), {}
        )
        self.assertEqual(channel.code, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(self.notices(self.parent, "help"), [])

    def test_from_the_acting_user_when_the_participant_may_not_post(self) -> None:
        levels = self.state(self.parent, "m.room.power_levels")
        self.helper.send_state(
            self.parent,
            "m.room.power_levels",
            {**levels, "events_default": 50},
            tok=self.host_tok,
        )
        answer = self.ask(self.users[0], {"room_id": self.tables[0]})
        event = self.helper.get_event(
            self.parent, answer["event_id"], tok=self.host_tok
        )
        self.assertEqual(event["sender"], self.host)
        self.assertIn(self.users[0], event["content"]["m.mentions"]["user_ids"])
