"""The admin API (SPEC section 4) in Synapse's harness."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from harness import ACTIVE, BASE, UNSTABLE, ParentRoomTestCase, module_config
from tests.unittest import override_config


class AdminApiTestCase(ParentRoomTestCase):
    # --- start ---------------------------------------------------------------------

    def test_start_creates_rooms_sends_event_and_invites(self) -> None:
        result = self.start(
            {
                "rooms": [
                    {"name": "Table 1", "users": self.users[:2]},
                    {"name": "Table 2", "topic": "Plans", "users": self.users[2:4]},
                ]
            }
        )
        self.assertEqual(result["room_id"], self.parent)
        self.assertIsNone(result["ends_at"])
        self.assertEqual(result["failed_users"], [])
        rooms = {r["name"]: r for r in result["rooms"]}
        self.assertEqual(set(rooms), {"Table 1", "Table 2"})
        self.assertEqual(rooms["Table 1"]["users"], self.users[:2])
        self.assertEqual(rooms["Table 1"]["via"], ["test"])
        # The parent's break-out event lists them all, sent by the acting user.
        content = self.state(self.parent, UNSTABLE)
        self.assertEqual(
            content,
            {
                UNSTABLE: {
                    r["room_id"]: {"via": ["test"], "users": r["users"]}
                    for r in result["rooms"]
                }
            },
        )
        t1, t2 = rooms["Table 1"]["room_id"], rooms["Table 2"]["room_id"]
        self.assertEqual(self.state(t2, "m.room.topic")["topic"], "Plans")
        self.assertEqual(self.state(t1, "m.room.name"), {"name": "Table 1"})
        self.assertEqual(
            self.state(t1, "m.room.join_rules"),
            {
                "join_rule": "restricted",
                "allow": [{"type": "m.room_membership", "room_id": self.parent}],
            },
        )
        pl = self.state(t1, "m.room.power_levels")
        self.assertEqual(pl["users"][self.mod], 50)
        self.assertEqual(self.membership_in(t1, self.host), "join")
        self.assertEqual(self.membership_in(t1, self.users[0]), "invite")
        self.assertEqual(self.membership_in(t2, self.users[3]), "invite")
        self.assertIsNone(self.membership_in(t1, self.users[3]))
        # ...and the invited user can join: the room lets the parent's members in.
        self.helper.join(t1, self.users[0], tok=self.toks[self.users[0]])

    def test_parent_settings_are_copied(self) -> None:
        parent = self.make_parent(
            initial_state=[
                {
                    "type": "m.room.encryption",
                    "state_key": "",
                    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                },
                {
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": {"history_visibility": "joined"},
                },
                {
                    "type": "m.room.guest_access",
                    "state_key": "",
                    "content": {"guest_access": "forbidden"},
                },
            ]
        )
        result = self.call(
            "POST",
            self.room_path(parent),
            {"acting_user": self.host, "rooms": [{"name": "A"}]},
        )
        child = result["rooms"][0]["room_id"]
        self.assertEqual(
            self.state(child, "m.room.encryption"),
            {"algorithm": "m.megolm.v1.aes-sha2"},
        )
        self.assertEqual(
            self.state(child, "m.room.history_visibility"),
            {"history_visibility": "joined"},
        )
        self.assertEqual(
            self.state(child, "m.room.guest_access"), {"guest_access": "forbidden"}
        )

    def test_join_rules_and_move_modes(self) -> None:
        result = self.start(
            {
                "rooms": [{"name": "A", "users": self.users[:2]}],
                "join_rule": "invite",
                "move": "join",
            }
        )
        child = result["rooms"][0]["room_id"]
        self.assertEqual(
            self.state(child, "m.room.join_rules"), {"join_rule": "invite"}
        )
        self.assertEqual(self.membership_in(child, self.users[0]), "join")
        self.assertEqual(self.membership_in(child, self.users[1]), "join")
        self.call("DELETE", self.room_path())
        result = self.start(
            {
                "rooms": [{"name": "B", "users": self.users[:2]}],
                "join_rule": "public",
                "move": "suggest",
            }
        )
        child = result["rooms"][0]["room_id"]
        self.assertEqual(
            self.state(child, "m.room.join_rules"), {"join_rule": "public"}
        )
        self.assertIsNone(self.membership_in(child, self.users[0]))
        self.assertEqual(
            self.state(self.parent, UNSTABLE)[UNSTABLE][child]["users"], self.users[:2]
        )

    @override_config(module_config(event_type="m.breakout"))
    def test_configured_event_type(self) -> None:
        result = self.start({"rooms": [{"name": "A"}]})
        self.assertEqual(
            list(self.state(self.parent, "m.breakout")["m.breakout"]),
            [result["rooms"][0]["room_id"]],
        )
        self.assertIsNone(self.state(self.parent, UNSTABLE))

    def test_room_version_12_parent(self) -> None:
        parent = self.make_parent(version="12")
        result = self.call(
            "POST",
            self.room_path(parent),
            {
                "acting_user": self.host,
                "rooms": [{"name": "A", "users": [self.users[0]]}],
            },
        )
        child = result["rooms"][0]["room_id"]
        create = self.state(child, "m.room.create")
        self.assertEqual(create["room_version"], "12")
        self.assertEqual(
            self.state(child, "m.room.power_levels")["users"], {self.mod: 50}
        )
        self.assertEqual(self.membership_in(child, self.users[0]), "invite")

    def test_child_create_event_names_the_parent(self) -> None:
        result = self.start({"rooms": [{"name": "A"}]})
        create = self.state(result["rooms"][0]["room_id"], "m.room.create")
        self.assertEqual(
            create["org.matrix.msc3985.breakout_parent"]["room_id"], self.parent
        )

    def test_auto_assign_joined_spreads_evenly_without_moderators(self) -> None:
        result = self.start({"auto_assign": {"rooms": 4, "users": "joined"}})
        sizes = sorted(len(r["users"]) for r in result["rooms"])
        self.assertEqual(sizes, [1, 1, 2, 2])
        assigned = [u for r in result["rooms"] for u in r["users"]]
        self.assertEqual(sorted(assigned), sorted(self.users))
        self.assertNotIn(self.host, assigned)
        self.assertNotIn(self.mod, assigned)

    def test_auto_assign_explicit_list(self) -> None:
        result = self.start({"auto_assign": {"rooms": 2, "users": self.users[:3]}})
        self.assertEqual(sorted(len(r["users"]) for r in result["rooms"]), [1, 2])
        self.assertEqual(
            sorted(u for r in result["rooms"] for u in r["users"]),
            sorted(self.users[:3]),
        )

    def test_duration_sets_ends_at(self) -> None:
        result = self.start({"rooms": [{"name": "A"}], "duration_seconds": 60})
        got = self.call("GET", self.room_path())
        self.assertEqual(got["ends_at"], result["ends_at"])
        self.assertEqual(got["ends_at"] - got["started_at"], 60_000)

    # --- conflicts, replace, idempotency, concurrency -----------------------------------

    def test_active_breakout_is_409_unless_replace(self) -> None:
        first = self.start({"rooms": [{"name": "A"}]})
        body = self.start({"rooms": [{"name": "B"}]}, expect=HTTPStatus.CONFLICT)
        self.assertEqual(body["errcode"], ACTIVE)
        second = self.start({"rooms": [{"name": "B"}], "replace": True})
        content = self.state(self.parent, UNSTABLE)[UNSTABLE]
        self.assertEqual(list(content), [second["rooms"][0]["room_id"]])
        self.assertTrue(self.room_exists(first["rooms"][0]["room_id"]))  # rooms live on

    def test_hand_made_breakout_blocks_too(self) -> None:
        child = self.helper.create_room_as(self.mod, tok=self.mod_tok)
        self.helper.send_state(
            self.parent,
            "m.breakout",
            {"m.breakout": {child: {"via": ["test"]}}},
            tok=self.mod_tok,
        )
        body = self.start({"rooms": [{"name": "B"}]}, expect=HTTPStatus.CONFLICT)
        self.assertEqual(body["errcode"], ACTIVE)
        new = self.start({"rooms": [{"name": "B"}], "replace": True})
        # The other type's break-out is ended too.
        self.assertEqual(self.state(self.parent, "m.breakout"), {"m.breakout": {}})
        self.assertEqual(
            list(self.state(self.parent, UNSTABLE)[UNSTABLE]),
            [new["rooms"][0]["room_id"]],
        )

    def test_same_txn_id_returns_first_response_and_creates_nothing(self) -> None:
        body = {"rooms": [{"name": "A", "users": [self.users[0]]}], "txn_id": "abc"}
        first = self.start(body)
        before = self.local_room_count()
        again = self.start(body)
        self.assertEqual(again, first)
        self.assertEqual(self.local_room_count(), before)
        # Another caller's txn_id is their own.
        self.call("DELETE", self.room_path())
        other = self.call(
            "POST",
            self.room_path(),
            {"acting_user": self.host, **body},
            tok=self.host_tok,
            expect=HTTPStatus.FORBIDDEN,
        )
        self.assertEqual(other["errcode"], "M_FORBIDDEN")

    def test_txn_id_of_another_parent_is_refused(self) -> None:
        self.start({"rooms": [{"name": "A"}], "txn_id": "t"})
        other = self.make_parent()
        body = self.call(
            "POST",
            self.room_path(other),
            {"acting_user": self.host, "rooms": [{"name": "B"}], "txn_id": "t"},
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assertIn("txn_id", body["error"])
        self.assertIn(self.parent, body["error"])
        # The same when the caller does not wait (not a 202 with the other
        # parent's operation).
        body = self.call(
            "POST",
            self.room_path(other),
            {
                "acting_user": self.host,
                "rooms": [{"name": "B"}],
                "txn_id": "t",
                "wait": False,
            },
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assertEqual(body["errcode"], "M_INVALID_PARAM")
        self.assertIn("txn_id", body["error"])

    def test_replace_checks_the_old_type_can_be_ended_before_creating(self) -> None:
        parent = self.make_parent(
            power_level_content_override={
                "users": {self.mod: 50, self.host: 100},
                "events": {"m.breakout": 100},
            }
        )
        child = self.helper.create_room_as(self.host, tok=self.host_tok)
        self.helper.send_state(
            parent,
            "m.breakout",
            {"m.breakout": {child: {"via": ["test"]}}},
            tok=self.host_tok,
        )
        before = self.local_room_count()
        body = self.call(
            "POST",
            self.room_path(parent),
            {"acting_user": self.mod, "rooms": [{"name": "B"}], "replace": True},
            expect=HTTPStatus.FORBIDDEN,
        )
        self.assertIn("m.breakout", body["error"])
        self.pump(1)
        self.assertEqual(self.local_room_count(), before)
        self.assertEqual(list(self.state(parent, "m.breakout")["m.breakout"]), [child])

    def test_failed_call_is_replayed_with_its_error(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        body = {"rooms": [{"name": "B"}], "txn_id": "t1"}
        first = self.start(body, expect=HTTPStatus.CONFLICT)
        self.call("DELETE", self.room_path())
        again = self.start(body, expect=HTTPStatus.CONFLICT)
        self.assertEqual(again, first)

    def test_ten_concurrent_calls_one_wins_no_orphans(self) -> None:
        before = self.local_room_count()
        channels = [
            self.make_request(
                "POST",
                BASE + self.room_path(),
                {
                    "acting_user": self.host,
                    "rooms": [{"name": f"R{i}-{j}"} for j in range(3)],
                },
                access_token=self.admin_tok,
                await_result=False,
            )
            for i in range(10)
        ]
        self.pump(1)
        for _ in range(50):
            if all(c.is_finished() for c in channels):
                break
            self.pump(1)
        codes = sorted(c.code for c in channels)
        self.assertEqual(codes, [200] + [409] * 9)
        for c in channels:
            if c.code == 409:
                self.assertEqual(c.json_body["errcode"], ACTIVE)
        self.pump(10)
        # Exactly the winner's three rooms were added.
        self.assertEqual(self.local_room_count(), before + 3)

    # --- GET, DELETE, broadcast, move -------------------------------------------------

    def test_get_without_breakout(self) -> None:
        self.assertEqual(
            self.call("GET", self.room_path()),
            {
                "active": False,
                "event_id": None,
                "sender": None,
                "started_at": None,
                "ends_at": None,
                "rooms": [],
                "operation": None,
            },
        )

    def test_get_lists_hand_made_breakouts_unmanaged_and_unread(self) -> None:
        child = self.helper.create_room_as(
            self.mod, tok=self.mod_tok, extra_content={"name": "Mine"}
        )
        self.helper.join(child, self.users[0], tok=self.toks[self.users[0]])
        remote = "!far:remote.example"
        event_id = self.helper.send_state(
            self.parent,
            "m.breakout",
            {
                "m.breakout": {
                    child: {"via": ["test"], "users": [self.users[0]]},
                    remote: {"via": ["remote.example"]},
                }
            },
            tok=self.mod_tok,
        )["event_id"]
        got = self.call("GET", self.room_path())
        self.assertTrue(got["active"])
        self.assertEqual(got["event_id"], event_id)
        self.assertEqual(got["sender"], self.mod)
        self.assertIsNone(got["ends_at"])
        rooms = {r["room_id"]: r for r in got["rooms"]}
        # Not the break-out's own room: listed, never read (its name and size
        # are no business of whoever listed it).
        self.assertEqual(
            rooms[child],
            {
                "room_id": child,
                "name": None,
                "via": ["test"],
                "users": [self.users[0]],
                "joined_members": None,
                "managed": False,
                "capacity": None,
                "counted_members": None,
            },
        )
        self.assertEqual(rooms[remote]["managed"], False)

    def test_delete_posts_message_and_closes_rooms(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A", "users": self.users[:2]}], "move": "join"}
        )
        child = result["rooms"][0]["room_id"]
        ended = self.call(
            "DELETE",
            self.room_path(),
            {"message": "Back to the main room", "close_rooms": True},
        )
        self.assertEqual(ended["rooms"], [child])
        self.assertEqual(self.state(self.parent, UNSTABLE), {UNSTABLE: {}})
        (ended_notice,) = self.notice_bodies(child, "ended")
        self.assertTrue(ended_notice.startswith("Back to the main room\n"))
        self.assertEqual(self.membership_in(child, self.users[0]), "leave")
        self.assertTrue(self.room_exists(child))
        body = self.call("DELETE", self.room_path(), expect=HTTPStatus.NOT_FOUND)
        self.assertEqual(body["errcode"], "M_NOT_FOUND")

    def test_delete_without_body_keeps_members(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A", "users": self.users[:1]}], "move": "join"}
        )
        child = result["rooms"][0]["room_id"]
        self.call("DELETE", self.room_path())
        self.assertEqual(self.membership_in(child, self.users[0]), "join")
        (ended_notice,) = self.notice_bodies(child, "ended")
        self.assertTrue(ended_notice.startswith("The break-out has ended"))

    def test_broadcast(self) -> None:
        result = self.start({"rooms": [{"name": "A"}, {"name": "B"}]})
        sent = self.call(
            "POST", self.room_path(suffix="/broadcast"), {"body": "5 minutes left"}
        )
        self.assertEqual(
            set(sent["event_ids"]), {r["room_id"] for r in result["rooms"]}
        )
        for r in result["rooms"]:
            self.assertEqual(
                self.notice_bodies(r["room_id"], "broadcast"), ["5 minutes left"]
            )
        for bad_body in ({"body": ""}, {"body": "x" * 32001}, {"body": 5}, {}):
            err = self.call(
                "POST",
                self.room_path(suffix="/broadcast"),
                bad_body,
                expect=HTTPStatus.BAD_REQUEST,
            )
            self.assertIn("body", err["error"])

    def test_broadcast_without_breakout_is_404(self) -> None:
        err = self.call(
            "POST",
            self.room_path(suffix="/broadcast"),
            {"body": "x"},
            expect=HTTPStatus.NOT_FOUND,
        )
        self.assertEqual(err["errcode"], "M_NOT_FOUND")

    def test_move_user_between_rooms_and_back(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A", "users": [self.users[0]]}, {"name": "B"}]}
        )
        a = next(r["room_id"] for r in result["rooms"] if r["name"] == "A")
        b = next(r["room_id"] for r in result["rooms"] if r["name"] == "B")
        moved = self.call(
            "POST", self.room_path(suffix="/move"), {"user_id": self.users[0], "to": b}
        )
        self.assertEqual((moved["from"], moved["to"]), ([a], b))
        content = self.state(self.parent, UNSTABLE)[UNSTABLE]
        self.assertEqual(content[a].get("users", []), [])
        self.assertEqual(content[b]["users"], [self.users[0]])
        self.assertEqual(self.membership_in(a, self.users[0]), "leave")
        self.assertEqual(self.membership_in(b, self.users[0]), "invite")
        # GET says where they are now: A, emptied, lists nobody.
        listed = {
            r["room_id"]: r["users"]
            for r in self.call("GET", self.room_path())["rooms"]
        }
        self.assertEqual(listed, {a: [], b: [self.users[0]]})
        self.call(
            "POST",
            self.room_path(suffix="/move"),
            {"user_id": self.users[0], "to": None},
        )
        content = self.state(self.parent, UNSTABLE)[UNSTABLE]
        self.assertTrue(
            all(self.users[0] not in e.get("users", []) for e in content.values())
        )
        listed = {
            r["room_id"]: r["users"]
            for r in self.call("GET", self.room_path())["rooms"]
        }
        self.assertEqual(listed, {a: [], b: []})
        self.assertEqual(self.membership_in(b, self.users[0]), "leave")

    def test_move_checks_its_body(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        for body, field in (
            ({"to": None}, "user_id"),
            ({"user_id": "bob", "to": None}, "user_id"),
            ({"user_id": self.users[0]}, "to"),
            ({"user_id": self.users[0], "to": "!nochild:test"}, "to"),
            ({"user_id": self.users[0], "to": 7}, "to"),
        ):
            err = self.call(
                "POST",
                self.room_path(suffix="/move"),
                body,
                expect=HTTPStatus.BAD_REQUEST,
            )
            self.assertIn(field, err["error"])

    # --- auth ----------------------------------------------------------------------

    def test_no_token_and_bad_token(self) -> None:
        channel = self.make_request("GET", BASE + self.room_path())
        self.assertEqual(
            (channel.code, channel.json_body["errcode"]), (401, "M_MISSING_TOKEN")
        )
        channel = self.make_request("GET", BASE + self.room_path(), access_token="nope")
        self.assertEqual(
            (channel.code, channel.json_body["errcode"]), (401, "M_UNKNOWN_TOKEN")
        )

    def test_guest_is_forbidden(self) -> None:
        self.hs.config.key.macaroon_secret_key = b"test"
        self.hs.config.registration.allow_guest_access = True
        channel = self.make_request(
            "POST", "/_matrix/client/r0/register?kind=guest", {}
        )
        self.assertEqual(channel.code, 200, channel.json_body)
        guest_tok = channel.json_body["access_token"]
        body = self.call(
            "GET", self.room_path(), tok=guest_tok, expect=HTTPStatus.FORBIDDEN
        )
        self.assertEqual(body["errcode"], "M_FORBIDDEN")

    def test_non_admin_and_undelegated_moderator_are_forbidden(self) -> None:
        for tok in (self.toks[self.users[0]], self.mod_tok, self.host_tok):
            body = self.call(
                "GET", self.room_path(), tok=tok, expect=HTTPStatus.FORBIDDEN
            )
            self.assertEqual(body["errcode"], "M_FORBIDDEN")
        body = self.call(
            "GET", "/flags", tok=self.host_tok, expect=HTTPStatus.FORBIDDEN
        )
        self.assertEqual(body["errcode"], "M_FORBIDDEN")

    @override_config(module_config(admin_api={"allow_room_moderators": True}))
    def test_delegated_moderator_acts_as_themselves(self) -> None:
        result = self.call(
            "POST", self.room_path(), {"rooms": [{"name": "A"}]}, tok=self.mod_tok
        )
        child = result["rooms"][0]["room_id"]
        self.assertEqual(self.membership_in(child, self.mod), "join")  # the creator
        event = self.get_success(
            self.module_api.get_room_state(self.parent, [(UNSTABLE, "")])
        )[(UNSTABLE, "")]
        self.assertEqual(event.sender, self.mod)
        body = self.call(
            "POST",
            self.room_path(),
            {"rooms": [{"name": "A"}], "acting_user": self.host, "replace": True},
            tok=self.mod_tok,
            expect=HTTPStatus.FORBIDDEN,
        )
        self.assertIn("acting_user", body["error"])
        # A plain member is still forbidden, and so is a moderator of another room.
        self.call(
            "GET",
            self.room_path(),
            tok=self.toks[self.users[0]],
            expect=HTTPStatus.FORBIDDEN,
        )
        other = self.helper.create_room_as(self.users[1], tok=self.toks[self.users[1]])
        self.call(
            "GET", self.room_path(other), tok=self.mod_tok, expect=HTTPStatus.FORBIDDEN
        )
        self.call("GET", "/flags", tok=self.mod_tok, expect=HTTPStatus.FORBIDDEN)

    @override_config(module_config(admin_api={"enabled": False}))
    def test_disabled_api_is_not_served(self) -> None:
        channel = self.make_request(
            "GET", BASE + self.room_path(), access_token=self.admin_tok
        )
        self.assertEqual(channel.code, 404)

    # --- bad input -------------------------------------------------------------------

    def test_unknown_parent_and_bad_room_id(self) -> None:
        body = self.call(
            "GET", self.room_path("!nosuch:test"), expect=HTTPStatus.NOT_FOUND
        )
        self.assertEqual(body["errcode"], "M_NOT_FOUND")
        body = self.start({"rooms": [{"name": "A"}]}, expect=HTTPStatus.OK)
        body = self.call(
            "POST",
            self.room_path("!nosuch:test"),
            {"rooms": [{"name": "A"}]},
            expect=HTTPStatus.NOT_FOUND,
        )
        self.assertEqual(body["errcode"], "M_NOT_FOUND")
        body = self.call("GET", "/rooms/not-a-room", expect=HTTPStatus.BAD_REQUEST)
        self.assertIn("parentRoomId", body["error"])
        body = self.call("GET", "/nothing-here", expect=HTTPStatus.NOT_FOUND)
        self.assertEqual(body["errcode"], "M_UNRECOGNIZED")

    def test_body_is_checked_field_by_field(self) -> None:
        cases: list[tuple[Any, str, str]] = [
            (b"not json", "M_NOT_JSON", "JSON"),
            (b"[1, 2]", "M_NOT_JSON", "object"),
            ({}, "M_MISSING_PARAM", "rooms"),
            (
                {"rooms": [{"name": "A"}], "auto_assign": {"rooms": 2}},
                "M_MISSING_PARAM",
                "rooms",
            ),
            ({"rooms": []}, "M_INVALID_PARAM", "rooms"),
            ({"rooms": "A"}, "M_INVALID_PARAM", "rooms"),
            (
                {"rooms": [{"name": f"R{i}"} for i in range(51)]},
                "M_INVALID_PARAM",
                "1 to 50",
            ),
            ({"rooms": [{}]}, "M_MISSING_PARAM", "rooms[0].name"),
            ({"rooms": [{"name": ""}]}, "M_INVALID_PARAM", "rooms[0].name"),
            (
                {"rooms": [{"name": "A", "colour": "red"}]},
                "M_INVALID_PARAM",
                "rooms[0].colour",
            ),
            (
                {"rooms": [{"name": "A", "users": ["bob"]}]},
                "M_INVALID_PARAM",
                "rooms[0].users[0]",
            ),
            (
                {
                    "rooms": [
                        {"name": "A", "users": ["@u0:test"]},
                        {"name": "B", "users": ["@u0:test"]},
                    ]
                },
                "M_INVALID_PARAM",
                "rooms[1].users",
            ),
            ({"auto_assign": {"rooms": 0}}, "M_INVALID_PARAM", "auto_assign.rooms"),
            (
                {"auto_assign": {"users": "joined"}},
                "M_MISSING_PARAM",
                "auto_assign.rooms",
            ),
            (
                {"auto_assign": {"rooms": 2, "users": "everyone"}},
                "M_INVALID_PARAM",
                "auto_assign.users",
            ),
            (
                {"rooms": [{"name": "A"}], "join_rule": "knock"},
                "M_INVALID_PARAM",
                "join_rule",
            ),
            ({"rooms": [{"name": "A"}], "move": "teleport"}, "M_INVALID_PARAM", "move"),
            (
                {"rooms": [{"name": "A"}], "duration_seconds": 0},
                "M_INVALID_PARAM",
                "duration_seconds",
            ),
            (
                {"rooms": [{"name": "A"}], "duration_seconds": "60"},
                "M_INVALID_PARAM",
                "duration_seconds",
            ),
            (
                {"rooms": [{"name": "A"}], "replace": "yes"},
                "M_INVALID_PARAM",
                "replace",
            ),
            ({"rooms": [{"name": "A"}], "txn_id": 5}, "M_INVALID_PARAM", "txn_id"),
            (
                {"rooms": [{"name": "A"}], "acting_user": "host"},
                "M_INVALID_PARAM",
                "acting_user",
            ),
            (
                {"rooms": [{"name": "A"}], "acting_user": "@host:elsewhere.example"},
                "M_INVALID_PARAM",
                "acting_user",
            ),
            ({"rooms": [{"name": "A"}], "duration": 60}, "M_INVALID_PARAM", "duration"),
            (
                {"rooms": [{"name": "A", "users": ["@stranger:test"]}]},
                "M_INVALID_PARAM",
                "@stranger:test",
            ),
        ]
        for body, errcode, named in cases:
            if isinstance(body, dict) and "acting_user" not in body:
                body = {**body, "acting_user": self.host}
            got = self.call(
                "POST", self.room_path(), body, expect=HTTPStatus.BAD_REQUEST
            )
            self.assertEqual(got["errcode"], errcode, (body, got))
            self.assertIn(named, got["error"], body)
        # Nothing was created by any of them.
        self.assertIsNone(self.state(self.parent, UNSTABLE))

    def test_acting_user_must_be_a_joined_moderator(self) -> None:
        for acting in (self.users[0], self.admin):
            body = self.call(
                "POST",
                self.room_path(),
                {"rooms": [{"name": "A"}], "acting_user": acting},
                expect=HTTPStatus.FORBIDDEN,
            )
            self.assertIn(acting, body["error"])

    def test_end_body_checked(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        for body, field in (
            ({"close_rooms": "yes"}, "close_rooms"),
            ({"message": 5}, "message"),
            ({"msg": "x"}, "msg"),
        ):
            err = self.call(
                "DELETE", self.room_path(), body, expect=HTTPStatus.BAD_REQUEST
            )
            self.assertIn(field, err["error"])
        self.assertTrue(self.call("GET", self.room_path())["active"])


class MetricsTestCase(ParentRoomTestCase):
    def test_operations_and_durations_reach_synapses_metrics(self) -> None:
        from prometheus_client import REGISTRY, generate_latest

        def sample(name: str, **labels: str) -> float:
            value = REGISTRY.get_sample_value(name, labels)
            return value or 0.0

        ok = sample("synapse_breakout_operations_total", kind="start", outcome="ok")
        conflict = sample(
            "synapse_breakout_operations_total", kind="start", outcome="conflict"
        )
        timed = sample("synapse_breakout_operation_seconds_count", kind="start")
        self.start({"rooms": [{"name": "A"}]})
        self.start({"rooms": [{"name": "B"}]}, expect=HTTPStatus.CONFLICT)
        self.assertEqual(
            sample("synapse_breakout_operations_total", kind="start", outcome="ok"),
            ok + 1,
        )
        self.assertEqual(
            sample(
                "synapse_breakout_operations_total", kind="start", outcome="conflict"
            ),
            conflict + 1,
        )
        self.assertEqual(
            sample("synapse_breakout_operation_seconds_count", kind="start"), timed + 2
        )
        exposition = generate_latest(REGISTRY).decode()
        for name in (
            "synapse_breakout_events_checked_total",
            "synapse_breakout_sender_verdicts_total",
            "synapse_breakout_recoveries_total",
        ):
            self.assertTrue(f"# TYPE {name} counter" in exposition, name)
