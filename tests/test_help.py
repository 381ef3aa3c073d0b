"""POST .../help (operations/help.py): participants ask the host for help,
and it alerts the host (SPEC 4)."""

from __future__ import annotations

import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import UNSTABLE, ParentRoomTestCase, links
from synapse.rest.client import notifications

from synapse_breakout.matrix.notices import EVENT_ID_KEY


class HelpTestCase(ParentRoomTestCase):
    servlets = [*ParentRoomTestCase.servlets, notifications.register_servlets]

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

    def test_a_participant_asks_and_the_hosts_are_mentioned(self) -> None:
        """An m.text (a notice would alert nobody), mentioning the acting user
        and the start's caller (the admin here); the asker is named, not
        mentioned (they would alert themselves)."""
        asking = self.users[0]
        answer = self.ask(asking, {"room_id": self.tables[0], "message": "We're stuck"})
        (notice,) = self.notices(self.parent, "help")
        self.assertEqual(notice["msgtype"], "m.text")
        self.assertEqual(notice[EVENT_ID_KEY], self.result["event_id"])
        self.assertEqual(notice["m.mentions"]["user_ids"], [self.host, self.admin])
        self.assertEqual(
            links(notice),
            [
                (self.host, []),
                (self.admin, []),
                (asking, []),
                (self.tables[0], ["test"]),
            ],
        )
        self.assertIn("asks for help in Table 1", notice["body"])
        self.assertTrue(notice["body"].endswith("\nWe're stuck"))
        event = self.helper.get_event(
            self.parent, answer["event_id"], tok=self.host_tok
        )
        self.assertEqual(event["sender"], asking)

    def test_once_a_minute_per_user_and_room(self) -> None:
        self.ask(self.users[0], {"room_id": self.tables[0]})
        error = self.ask(
            self.users[0], {"room_id": self.tables[0]}, HTTPStatus.TOO_MANY_REQUESTS
        )
        self.assertEqual(error["errcode"], "M_LIMIT_EXCEEDED")
        self.assertTrue(0 < error["retry_after_ms"] <= 60_000)
        # One member does not use the limit up for the others of the room.
        self.ask(self.users[1], {"room_id": self.tables[0]})
        self.ask(self.users[2], {"room_id": self.tables[1]})  # another room may
        self.reactor.advance(61)
        self.ask(self.users[0], {"room_id": self.tables[0]})
        self.assertEqual(len(self.notices(self.parent, "help")), 4)

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
        words = "Official: the session moved to https://evil.example/login"
        answer = self.ask(self.users[0], {"room_id": self.tables[0], "message": words})
        event = self.helper.get_event(
            self.parent, answer["event_id"], tok=self.host_tok
        )
        self.assertEqual(event["sender"], self.host)
        content = event["content"]
        # A fixed text naming them and the room: never their words.
        self.assertNotIn("evil", content["body"])
        self.assertNotIn("evil", content["formatted_body"])
        self.assertIn(f"{self.users[0]} asks for help in Table 1", content["body"])
        self.assertIn("may not post", content["body"])
        self.assertEqual(content["m.mentions"]["user_ids"], [self.host, self.admin])

    def test_the_parent_is_required(self) -> None:
        """A member of a break-out room who is not (or no longer) in the parent
        may not ask: nobody speaks in a room they are not in."""
        self.helper.leave(self.parent, self.users[0], tok=self.toks[self.users[0]])
        error = self.ask(
            self.users[0], {"room_id": self.tables[0]}, HTTPStatus.FORBIDDEN
        )
        self.assertEqual(error["errcode"], "M_FORBIDDEN")
        self.assertEqual(self.notices(self.parent, "help"), [])

    def test_the_host_is_alerted_by_synapses_push_rules(self) -> None:
        """Synapse's bulk push rule evaluator gives the host a highlight for
        the help message: it alerts them on every client."""
        answer = self.ask(self.users[0], {"room_id": self.tables[0], "message": "?"})
        channel = self.make_request(
            "GET", "/_matrix/client/v3/notifications", access_token=self.host_tok
        )
        self.assertEqual(channel.code, 200, channel.json_body)
        found = [
            n
            for n in channel.json_body["notifications"]
            if n["event"]["event_id"] == answer["event_id"]
        ]
        self.assertEqual(len(found), 1, channel.json_body)
        actions = found[0]["actions"]
        self.assertIn("notify", actions)
        self.assertIn({"set_tweak": "highlight"}, actions)
        # The module's other notices (m.notice) alert nobody.
        started = self.notices(self.parent, "started")
        self.assertTrue(started)
        self.assertFalse(
            [
                n
                for n in channel.json_body["notifications"]
                if n["event"]["content"].get("msgtype") == "m.notice"
            ]
        )

    def test_the_console_lists_help_from_the_record_with_who_asked(self) -> None:
        """A message that only looks like a help request (any member can put
        the notice key in a message) is not listed; a real one is, with who
        asked and from where."""
        self.helper.send(self.parent, "x", tok=self.toks[self.users[5]])
        self.helper.send_event(
            self.parent,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "@u0:test asks for help in https://evil.example",
                "org.matrix.msc3985.notice": "help",
            },
            tok=self.toks[self.users[5]],
        )
        answer = self.ask(self.users[0], {"room_id": self.tables[0], "message": "?"})
        view = self.call_console(f"/api/rooms/{urllib.parse.quote(self.parent)}")
        (listed,) = view["help_requests"]
        self.assertEqual(listed["user_id"], self.users[0])
        self.assertEqual(listed["room_id"], self.tables[0])
        self.assertEqual(listed["room_name"], "Table 1")
        self.assertEqual(listed["event_id"], answer["event_id"])

    def call_console(self, path: str) -> Any:
        channel = self.make_request(
            "GET",
            "/_synapse/client/breakout/console" + path,
            access_token=self.admin_tok,
        )
        self.assertEqual(channel.code, HTTPStatus.OK, channel.json_body)
        return channel.json_body
