"""Plans (SPEC 12): prepared before a session, reused after, in Synapse's
harness (SQLite and PostgreSQL)."""

from __future__ import annotations

import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import UNSTABLE, ParentRoomTestCase, find_module, module_config
from tests.unittest import override_config

MODERATORS = {"admin_api": {"allow_room_moderators": True}}


class PlansTestCase(ParentRoomTestCase):
    def plan_path(self, plan_id: str | None = None, parent: str | None = None) -> str:
        suffix = "/plans" + (f"/{urllib.parse.quote(plan_id)}" if plan_id else "")
        return self.room_path(parent, suffix)

    def put(
        self, plan_id: str, body: Any, expect: int = HTTPStatus.OK, **kw: Any
    ) -> Any:
        return self.call("PUT", self.plan_path(plan_id), body, expect=expect, **kw)

    def tables_plan(self) -> dict[str, Any]:
        return {
            "name": "Tables",
            "rooms": [
                {"name": "Table 1", "users": self.users[:2]},
                {"name": "Table 2", "users": self.users[2:4]},
            ],
            "move": "suggest",
            "duration_seconds": 600,
        }

    def test_a_plan_round_trip(self) -> None:
        stored = self.put("week-1", self.tables_plan())
        self.assertEqual(stored["plan_id"], "week-1")
        self.assertEqual(stored["name"], "Tables")
        self.assertEqual(stored["rooms"], self.tables_plan()["rooms"])
        self.assertEqual(stored["move"], "suggest")
        self.reactor.advance(1)
        self.put("week-2", {"name": "Pairs", "auto_assign": {"room_size": 2}})
        listed = self.call("GET", self.plan_path())["plans"]
        self.assertEqual([p["plan_id"] for p in listed], ["week-2", "week-1"])
        self.assertEqual(self.call("GET", self.plan_path("week-1")), stored)
        # Stored again under its ID: replaced, not added.
        again = self.put("week-1", {**self.tables_plan(), "name": "Tables (v2)"})
        self.assertEqual(again["name"], "Tables (v2)")
        self.assertEqual(len(self.call("GET", self.plan_path())["plans"]), 2)
        self.assertEqual(self.call("DELETE", self.plan_path("week-1")), {})
        for method in ("GET", "DELETE"):
            error = self.call(
                method, self.plan_path("week-1"), expect=HTTPStatus.NOT_FOUND
            )
            self.assertEqual(error["errcode"], "M_NOT_FOUND")

    def test_plans_are_checked_as_a_start_is(self) -> None:
        rooms = self.local_room_count()
        for body, field in [
            ({}, "name"),
            ({"name": "x", "rooms": []}, "rooms"),
            ({"name": "x", "rooms": [{"name": "A"}], "move": "teleport"}, "move"),
            (
                {"name": "x", "rooms": [{"name": "A"}], "acting_user": self.host},
                "acting_user",
            ),
            (
                {"name": "x", "rooms": [{"name": "A", "users": ["bob"]}]},
                "rooms[0].users[0]",
            ),
        ]:
            error = self.put("p", body, HTTPStatus.BAD_REQUEST)
            self.assertTrue(error["error"].startswith(field), error)
        for plan_id in ("", "a/b", "x" * 65, "é"):
            self.call(
                "PUT",
                self.room_path(suffix="/plans/" + urllib.parse.quote(plan_id, safe="")),
                {"name": "x", "rooms": [{"name": "A"}]},
                expect=HTTPStatus.BAD_REQUEST,
            )
        # Users need not be members yet.
        outsider = self.register_user("outsider", "pass")
        self.put("future", {"name": "x", "rooms": [{"name": "A", "users": [outsider]}]})
        self.assertEqual(self.local_room_count(), rooms)
        self.assertIsNone(self.state(self.parent, UNSTABLE))

    @override_config(module_config(max_plans_per_room=2))
    def test_plans_a_parent_may_have(self) -> None:
        self.put("a", self.tables_plan())
        self.put("b", self.tables_plan())
        error = self.put("c", self.tables_plan(), HTTPStatus.BAD_REQUEST)
        self.assertEqual(error["errcode"], "M_LIMIT_EXCEEDED")
        self.put("b", {**self.tables_plan(), "name": "B again"})  # replacing is fine
        other = self.make_parent()
        self.call("PUT", self.plan_path("c", other), self.tables_plan())

    def test_start_from_a_plan_with_an_override(self) -> None:
        self.put("week-1", self.tables_plan())
        result = self.start({"plan": "week-1", "move": "invite"})
        self.assertEqual(
            [(r["name"], r["users"]) for r in result["rooms"]],
            [("Table 1", self.users[:2]), ("Table 2", self.users[2:4])],
        )
        self.assertIsNotNone(result["ends_at"])  # the plan's duration
        for room in result["rooms"]:
            for user in room["users"]:
                self.assertEqual(self.membership_in(room["room_id"], user), "invite")
        self.call("DELETE", self.room_path())
        # The body's rooms replace the plan's.
        result = self.start({"plan": "week-1", "auto_assign": {"rooms": 3}})
        self.assertEqual(len(result["rooms"]), 3)
        error = self.start({"plan": "nope"}, expect=HTTPStatus.NOT_FOUND)
        self.assertTrue(error["error"].startswith("plan"), error)

    def test_a_planned_user_who_left_is_reported_not_refused(self) -> None:
        self.put("week-1", self.tables_plan())
        gone = self.users[1]
        self.assertEqual(self.call("GET", self.plan_path("week-1"))["not_in_room"], [])
        self.helper.leave(self.parent, gone, tok=self.toks[gone])
        # The host sees it before starting, on the plan itself.
        self.assertEqual(
            self.call("GET", self.plan_path("week-1"))["not_in_room"], [gone]
        )
        result = self.start({"plan": "week-1", "move": "invite"})
        self.assertEqual(result["rooms"][0]["users"], [self.users[0]])
        self.assertEqual(
            result["failed_users"],
            [
                {
                    "user_id": gone,
                    "errcode": "M_FORBIDDEN",
                    "error": "planned, but no longer joined to or invited into "
                    "the parent room",
                }
            ],
        )
        event = self.state(self.parent, UNSTABLE)[UNSTABLE]
        self.assertNotIn(gone, [u for room in event.values() for u in room["users"]])
        listed = self.call("GET", self.room_path())["rooms"]
        self.assertNotIn(gone, [u for room in listed for u in room["users"]])

    def test_last_is_the_last_breakout_as_it_ended_after_moves(self) -> None:
        self.assertEqual(self.call("GET", self.plan_path())["plans"], [])
        self.call("GET", self.plan_path("last"), expect=HTTPStatus.NOT_FOUND)
        started = self.start(
            {
                "rooms": [
                    {"name": "Red", "users": self.users[:3]},
                    {"name": "Blue", "users": self.users[3:]},
                ]
            }
        )
        red, blue = (r["room_id"] for r in started["rooms"])
        # While it runs, it is not "last" yet.
        self.call("GET", self.plan_path("last"), expect=HTTPStatus.NOT_FOUND)
        self.call(
            "POST",
            self.room_path(suffix="/move"),
            {"user_id": self.users[0], "to": blue},
        )
        self.call(
            "POST",
            self.room_path(suffix="/move"),
            {"user_id": self.users[1], "to": None},
        )
        self.call("DELETE", self.room_path())
        last = self.call("GET", self.plan_path("last"))
        self.assertEqual(
            [(room["name"], sorted(room["users"])) for room in last["rooms"]],
            [
                ("Red", [self.users[2]]),
                ("Blue", sorted([*self.users[3:], self.users[0]])),
            ],
        )
        # Everyone placed is still in the parent; the list carries the same
        # plan without the membership check (that is per plan, on GET one).
        self.assertEqual(last.pop("not_in_room"), [])
        self.assertEqual(self.call("GET", self.plan_path())["plans"][0], last)
        # Read-only; and a start from it makes the same groups again.
        self.put("last", self.tables_plan(), HTTPStatus.BAD_REQUEST)
        self.call("DELETE", self.plan_path("last"), expect=HTTPStatus.BAD_REQUEST)
        again = self.start({"plan": "last"})
        self.assertEqual(
            [(r["name"], r["users"]) for r in again["rooms"]],
            [(room["name"], room["users"]) for room in last["rooms"]],
        )
        self.assertNotIn(red, [r["room_id"] for r in again["rooms"]])

    def test_a_moderator_who_may_not_start_may_not_store_plans(self) -> None:
        for method, path, body in [
            ("PUT", self.plan_path("p"), self.tables_plan()),
            ("GET", self.plan_path(), None),
            ("GET", self.plan_path("p"), None),
            ("DELETE", self.plan_path("p"), None),
        ]:
            self.call(method, path, body, tok=self.mod_tok, expect=HTTPStatus.FORBIDDEN)
            self.call(
                method,
                path,
                body,
                tok=self.toks[self.users[0]],
                expect=HTTPStatus.FORBIDDEN,
            )

    @override_config(module_config(**MODERATORS))
    def test_a_moderator_stores_and_starts_plans(self) -> None:
        self.put("m", self.tables_plan(), tok=self.mod_tok)
        result = self.call("POST", self.room_path(), {"plan": "m"}, tok=self.mod_tok)
        self.assertEqual(result["rooms"][0]["name"], "Table 1")

    def test_plans_of_a_purged_parent_are_deleted(self) -> None:
        other = self.make_parent()
        self.put("kept", self.tables_plan())
        self.call("PUT", self.plan_path("gone", other), self.tables_plan())
        self.get_success(self.module_api.delete_room(other))
        for _ in range(20):
            self.reactor.advance(1)
        retention = find_module(self.hs).retention
        self.assertEqual(self.get_success(retention.forget_purged_plans()), 1)
        self.assertEqual(len(self.call("GET", self.plan_path())["plans"]), 1)
