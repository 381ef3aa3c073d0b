"""The host console's server side in Synapse's harness: the page, the OpenID
exchange for a console session, the session's rights, and the read endpoints.
The page itself is driven in a real browser by tests/browser/."""

from __future__ import annotations

import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import BASE, UNSTABLE, ParentRoomTestCase, find_module, module_config
from synapse.rest.client import openid
from synapse.types import create_requester
from tests.unittest import override_config

from synapse_breakout.http.console.sessions import SESSION_LIFETIME_MS

CONSOLE = "/_synapse/client/breakout/console"
MODERATORS = module_config(admin_api={"allow_room_moderators": True})


class ConsoleBase(ParentRoomTestCase):
    """Helpers for the console's tests (no tests of its own)."""

    servlets = [*ParentRoomTestCase.servlets, openid.register_servlets]

    def openid_token(self, user: str, tok: str) -> dict[str, Any]:
        channel = self.make_request(
            "POST",
            f"/_matrix/client/v3/user/{urllib.parse.quote(user)}/openid/request_token",
            {},
            access_token=tok,
        )
        self.assertEqual(channel.code, 200, channel.json_body)
        return channel.json_body

    def exchange(
        self, credentials: Any, expect: int = HTTPStatus.OK, room: str | None = None
    ) -> Any:
        """A console session for ``credentials`` in ``room`` (the parent)."""
        body = credentials
        if isinstance(credentials, dict) and "access_token" in credentials:
            body = {"room_id": room or self.parent, **credentials}
        channel = self.make_request("POST", f"{CONSOLE}/api/session", body)
        self.assertEqual(channel.code, expect, channel.json_body)
        return channel.json_body

    def session(self, user: str, tok: str, room: str | None = None) -> str:
        answer = self.exchange(self.openid_token(user, tok), room=room)
        self.assertEqual(answer["user_id"], user)
        self.assertEqual(answer["room_id"], room or self.parent)
        return str(answer["access_token"])

    def get(self, path: str, tok: str | None, expect: int = HTTPStatus.OK) -> Any:
        channel = self.make_request("GET", path, access_token=tok)
        self.assertEqual(channel.code, expect, channel.json_body)
        return channel.json_body


class ConsoleTestCase(ConsoleBase):
    # --- the page ------------------------------------------------------------------

    def test_serves_the_page_and_its_files_only(self) -> None:
        channel = self.make_request("GET", f"{CONSOLE}/")
        self.assertEqual(channel.code, 200)
        self.assertIn(b"<title>Break-out rooms</title>", channel.result["body"])
        headers = channel.headers
        self.assertEqual(
            headers.getRawHeaders(b"Content-Type"), [b"text/html; charset=utf-8"]
        )
        csp = headers.getRawHeaders(b"Content-Security-Policy")[0]
        self.assertIn(b"script-src 'self'", csp)
        scripts = ("console", "api", "dom", "host", "participant", "widget-api")
        for name, kind in [
            *(
                (f"{script}.js", b"text/javascript; charset=utf-8")
                for script in scripts
            ),
            ("console.css", b"text/css; charset=utf-8"),
        ]:
            channel = self.make_request("GET", f"{CONSOLE}/{name}")
            self.assertEqual(channel.code, 200, name)
            self.assertEqual(channel.headers.getRawHeaders(b"Content-Type"), [kind])
        # Without the slash, the page's relative links would break: redirected.
        channel = self.make_request("GET", CONSOLE)
        self.assertEqual(channel.code, 302)
        self.assertEqual(
            channel.headers.getRawHeaders(b"Location"), [f"{CONSOLE}/".encode()]
        )
        # Nothing but the shipped files: no path leaves the folder.
        for name in ("nope.js", "..%2F__init__.py", "widget-api.LICENSE"):
            channel = self.make_request("GET", f"{CONSOLE}/{name}")
            self.assertEqual(channel.code, 404, name)
            self.assertEqual(channel.json_body["errcode"], "M_NOT_FOUND")

    @override_config(module_config(console={"enabled": False}))
    def test_disabled_console_serves_nothing(self) -> None:
        for method, path in [
            ("GET", f"{CONSOLE}/"),
            ("GET", f"{CONSOLE}/console.js"),
            ("POST", f"{CONSOLE}/api/session"),
            ("GET", f"{CONSOLE}/api/rooms"),
        ]:
            channel = self.make_request(method, path, {} if method == "POST" else b"")
            self.assertEqual(channel.code, 404, path)

    # --- sessions from OpenID tokens ----------------------------------------------------

    @override_config(MODERATORS)
    def test_session_has_the_users_rights_in_the_admin_api(self) -> None:
        session = self.session(self.mod, self.mod_tok)
        # The moderator may run the parent's break-out with it...
        result = self.call(
            "POST",
            self.room_path(),
            {"auto_assign": {"rooms": 2}},
            tok=session,
        )
        self.assertEqual(len(result["rooms"]), 2)
        self.assertEqual(self.get(BASE + self.room_path(), session)["active"], True)
        # ...but the client-server API does not know it.
        channel = self.make_request(
            "GET", "/_matrix/client/v3/joined_rooms", access_token=session
        )
        self.assertEqual(channel.code, 401)

    @override_config(MODERATORS)
    def test_non_moderator_session_may_not_act(self) -> None:
        session = self.session(self.users[0], self.toks[self.users[0]])
        rooms = self.local_room_count()
        body = self.call(
            "POST",
            self.room_path(),
            {"auto_assign": {"rooms": 2}},
            tok=session,
            expect=HTTPStatus.FORBIDDEN,
        )
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        self.assertEqual(self.local_room_count(), rooms)
        self.assertIsNone(self.state(self.parent, UNSTABLE))
        for method, suffix, payload in [
            ("GET", "", None),
            ("DELETE", "", {}),
            ("POST", "/broadcast", {"body": "hi"}),
            ("POST", "/move", {"user_id": self.users[1], "to": None}),
        ]:
            self.call(
                method,
                self.room_path(suffix=suffix),
                payload,
                tok=session,
                expect=HTTPStatus.FORBIDDEN,
            )

    def test_forged_or_foreign_openid_tokens_get_no_session(self) -> None:
        real = self.openid_token(self.host, self.host_tok)
        for credentials in [
            {**real, "access_token": real["access_token"] + "x"},
            {**real, "access_token": "a" * 24},
            {**real, "matrix_server_name": "evil.example.org"},
        ]:
            body = self.exchange(credentials, HTTPStatus.UNAUTHORIZED)
            self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")
            self.assertTrue(body["error"])
        body = self.exchange({}, HTTPStatus.BAD_REQUEST)
        self.assertEqual(body["errcode"], "M_MISSING_PARAM")
        self.assertIn("access_token", body["error"])
        body = self.exchange({"access_token": 5}, HTTPStatus.BAD_REQUEST)
        self.assertEqual(body["errcode"], "M_INVALID_PARAM")
        channel = self.make_request("POST", f"{CONSOLE}/api/session", b"[")
        self.assertEqual(channel.code, 400)
        self.assertEqual(channel.json_body["errcode"], "M_NOT_JSON")

    def test_expired_openid_token_gets_no_session(self) -> None:
        real = self.openid_token(self.host, self.host_tok)
        self.reactor.advance(real["expires_in"] + 1)
        body = self.exchange(real, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")

    @override_config(MODERATORS)
    def test_session_expires_and_has_one_spelling(self) -> None:
        session = self.session(self.mod, self.mod_tok)
        self.get(BASE + self.room_path(), session)
        prefix, secret = session[:5], session[5:]
        for bad in [
            session + "=",
            prefix + secret.swapcase(),
            prefix + secret[:-1],
            "bcs2." + "A" * 43,
            "bcs1.x.y",
        ]:
            body = self.get(BASE + self.room_path(), bad, HTTPStatus.UNAUTHORIZED)
            self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")
        self.reactor.advance(SESSION_LIFETIME_MS / 1000 + 1)
        body = self.get(BASE + self.room_path(), session, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")

    @override_config(MODERATORS)
    def test_deactivated_users_session_is_refused(self) -> None:
        session = self.session(self.mod, self.mod_tok)
        deactivate = self.hs.get_deactivate_account_handler()
        self.get_success(
            deactivate.deactivate_account(self.mod, False, create_requester(self.mod))
        )
        body = self.get(BASE + self.room_path(), session, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")

    @override_config(MODERATORS)
    def test_locked_users_session_is_refused(self) -> None:
        session = self.session(self.mod, self.mod_tok)
        store = self.hs.get_datastores().main
        self.get_success(store.set_user_locked_status(self.mod, True))
        body = self.get(BASE + self.room_path(), session, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(body["errcode"], "M_USER_LOCKED")

    # --- what the page shows -----------------------------------------------------------

    @override_config(MODERATORS)
    def test_room_list_and_views_by_role(self) -> None:
        rooms = self.get(f"{CONSOLE}/api/rooms", self.mod_tok)["rooms"]
        self.assertEqual(
            rooms,
            [
                {
                    "room_id": self.parent,
                    "name": None,
                    "host": True,
                    "breakout_active": False,
                }
            ],
        )
        participant = self.users[0]
        tok = self.toks[participant]
        self.assertEqual(self.get(f"{CONSOLE}/api/rooms", tok)["rooms"], [])
        room_path = f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}"
        view = self.get(room_path, self.mod_tok)
        self.assertTrue(view["host"])
        self.assertEqual(
            {m["user_id"] for m in view["members"]}, {self.host, self.mod, *self.users}
        )
        self.assertNotIn("members", self.get(room_path, tok))

        result = self.call(
            "POST",
            self.room_path(),
            {"auto_assign": {"rooms": 2}, "duration_seconds": 600},
            tok=self.mod_tok,
        )
        mine = next(r for r in result["rooms"] if participant in r["users"])
        self.assertEqual(
            self.get(f"{CONSOLE}/api/rooms", tok)["rooms"][0]["breakout_active"], True
        )
        view = self.get(room_path, tok)
        self.assertFalse(view["host"])
        self.assertEqual(view["ends_at"], result["ends_at"])
        self.assertEqual(
            view["assignment"],
            {
                "room_id": mine["room_id"],
                "name": mine["name"],
                "via": ["test"],
                "membership": "invite",
            },
        )
        self.assertNotIn("breakout", view)
        host_view = self.get(room_path, self.mod_tok)
        child = next(
            r for r in host_view["breakout"]["rooms"] if r["room_id"] == mine["room_id"]
        )
        self.assertEqual(child["members"][participant], "invite")

    def test_room_view_needs_membership(self) -> None:
        outsider = self.register_user("outsider", "pass")
        tok = self.login("outsider", "pass")
        path = f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}"
        body = self.get(path, tok, HTTPStatus.FORBIDDEN)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        self.assertIn(outsider, self.get(f"{CONSOLE}/api/rooms", tok)["user_id"])
        body = self.get(f"{CONSOLE}/api/rooms/!nope:test", tok, HTTPStatus.FORBIDDEN)
        self.get(
            f"{CONSOLE}/api/rooms/!nope:test", self.admin_tok, HTTPStatus.NOT_FOUND
        )
        self.get(f"{CONSOLE}/api/rooms/nope", tok, HTTPStatus.BAD_REQUEST)
        self.get(f"{CONSOLE}/api/rooms", None, HTTPStatus.UNAUTHORIZED)

    # --- Synapse's tables, on this Synapse --------------------------------------------

    def test_openid_lookup_matches_the_federation_endpoint(self) -> None:
        asked = self.clock.time_msec()
        real = self.openid_token(self.host, self.host_tok)
        found = self.get_success(
            self.hs.get_datastores().main.get_user_id_for_open_id_token(
                real["access_token"], self.clock.time_msec()
            )
        )
        tables = find_module(self.hs).tables
        user, valid_until = self.get_success(tables.openid_token(real["access_token"]))
        self.assertEqual(user, found)
        issued = valid_until - real["expires_in"] * 1000
        self.assertTrue(asked <= issued <= self.clock.time_msec())
        self.assertIsNone(self.get_success(tables.openid_token("unknown")))
        self.reactor.advance(real["expires_in"] + 1)
        self.assertIsNone(self.get_success(tables.openid_token(real["access_token"])))

    def test_member_rooms_state_lists_joined_rooms_only(self) -> None:
        tables = find_module(self.hs).tables
        rooms = self.get_success(
            tables.member_rooms_state(self.mod, ["m.room.create"], 10)
        )
        self.assertEqual(list(rooms), [self.parent])
        (create,) = rooms[self.parent]
        self.assertEqual(create.type, "m.room.create")
        self.assertEqual(create.sender, self.host)
        self.helper.leave(self.parent, self.mod, tok=self.mod_tok)
        self.assertEqual(
            self.get_success(
                tables.member_rooms_state(self.mod, ["m.room.create"], 10)
            ),
            {},
        )


class LiveViewTestCase(ConsoleBase):
    """The view at any size: an unchanged room answers "unchanged" from a
    few queries, members come in pages and by search."""

    def view(self, tok: str, since: str | None = None) -> Any:
        path = f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}"
        if since is not None:
            path += f"?since={since}"
        return self.get(path, tok)

    def test_an_unchanged_room_answers_unchanged_until_it_changes(self) -> None:
        first = self.view(self.admin_tok)
        version = first["version"]
        self.assertEqual(
            self.view(self.admin_tok, version),
            {"room_id": self.parent, "version": version, "unchanged": True},
        )
        # Each kind of change gives a new version, and the full view.
        result = self.start(
            {
                "rooms": [{"name": "A", "users": self.users[:2]}],
                "duration_seconds": 600,
            }
        )
        changes = [
            lambda: None,  # the start itself
            lambda: self.call(
                "POST", self.room_path(suffix="/deadline"), {"add_seconds": 60}
            ),
            lambda: self.call(
                "POST",
                self.room_path(suffix="/move"),
                {"user_id": self.users[0], "to": None},
            ),
            lambda: self.helper.join(
                result["rooms"][0]["room_id"],
                self.users[1],
                tok=self.toks[self.users[1]],
            ),
            lambda: self.call(
                "POST",
                self.room_path(suffix="/help"),
                {"room_id": result["rooms"][0]["room_id"]},
                tok=self.toks[self.users[1]],
            ),
            lambda: self.helper.leave(
                self.parent, self.users[5], tok=self.toks[self.users[5]]
            ),
        ]
        for change in changes:
            change()
            answer = self.view(self.admin_tok, version)
            self.assertNotIn("unchanged", answer)
            self.assertNotEqual(answer["version"], version)
            version = answer["version"]
            self.assertTrue(self.view(self.admin_tok, version)["unchanged"])
        # Nobody learns even that much about a room they may not read.
        self.register_user("outsider", "pass")
        tok = self.login("outsider", "pass")
        path = f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}?since={version}"
        self.get(path, tok, HTTPStatus.FORBIDDEN)

    def test_members_come_in_pages_and_by_search(self) -> None:
        self.helper.send_state(
            self.parent,
            "m.room.member",
            {"membership": "join", "displayname": "Zelda"},
            tok=self.toks[self.users[3]],
            state_key=self.users[3],
        )
        path = f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}/members"
        page = self.get(path, self.admin_tok)
        everyone = sorted([self.host, self.mod, *self.users])
        self.assertEqual([m["user_id"] for m in page["members"]], everyone)
        self.assertEqual(page["members_total"], len(everyone))
        self.assertIsNone(page["members_next"])
        after = self.get(
            f"{path}?from={urllib.parse.quote(everyone[2])}", self.admin_tok
        )
        self.assertEqual([m["user_id"] for m in after["members"]], everyone[3:])
        found = self.get(f"{path}?search=zel", self.admin_tok)["members"]
        self.assertEqual(
            [(m["user_id"], m["display_name"]) for m in found],
            [(self.users[3], "Zelda")],
        )
        found = self.get(f"{path}?search=U0", self.admin_tok)["members"]
        self.assertEqual([m["user_id"] for m in found], [self.users[0]])
        # Hosts only.
        self.get(path, self.toks[self.users[0]], HTTPStatus.FORBIDDEN)

    def test_a_running_breakout_shows_who_is_in_the_main_room(self) -> None:
        self.start({"rooms": [{"name": "A", "users": self.users[:2]}]})
        view = self.view(self.admin_tok)
        self.assertEqual(
            [p["user_id"] for p in view["main_room"]],
            sorted([self.mod, *self.users[2:]]),
        )
        self.assertEqual(view["main_room_total"], 5)


class ChooseInTheConsoleTestCase(ConsoleBase):
    """A participant of a ``move: choose`` break-out: every room with how many
    are in it, and "Join" (``POST .../api/rooms/{roomId}/join``)."""

    def start_choose(self, capacity: int = 1, move: str = "choose") -> list[str]:
        body: dict[str, Any] = {
            "rooms": [{"name": "Room 1"}, {"name": "Room 2"}],
            "move": move,
            "room_capacity": capacity,
        }
        result = self.start(body)
        return [r["room_id"] for r in result["rooms"]]

    def view(self, tok: str) -> Any:
        return self.get(f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}", tok)

    def choose(self, tok: str, room_id: Any, expect: int = HTTPStatus.OK) -> Any:
        channel = self.make_request(
            "POST",
            f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}/join",
            {"room_id": room_id},
            access_token=tok,
        )
        self.assertEqual(channel.code, expect, channel.json_body)
        return channel.json_body

    def test_participant_sees_every_room_and_joins_one(self) -> None:
        first, second = self.start_choose()
        user, tok = self.users[0], self.toks[self.users[0]]
        view = self.view(tok)
        self.assertIsNone(view["assignment"])
        self.assertEqual(
            [
                (c["name"], c["members"], c["capacity"], c["full"])
                for c in view["choose"]
            ],
            [("Room 1", 0, 1, False), ("Room 2", 0, 1, False)],
        )
        self.assertEqual(self.choose(tok, first), {"room_id": first})
        self.assertEqual(self.membership_in(first, user), "join")
        view = self.view(tok)
        self.assertEqual(view["assignment"]["room_id"], first)
        self.assertEqual(
            [(c["members"], c["full"], c["mine"]) for c in view["choose"]],
            [(1, True, True), (0, False, False)],
        )
        # From a console session (the widget) too: another room, and the
        # first one is left, so one person holds one place.
        session = self.session(user, tok)
        self.assertEqual(self.choose(session, second), {"room_id": second})
        self.assertEqual(self.membership_in(first, user), "leave")
        self.assertEqual(self.membership_in(second, user), "join")

    def test_a_full_room_refuses_and_says_so(self) -> None:
        first, _ = self.start_choose()
        self.choose(self.toks[self.users[0]], first)
        other = self.toks[self.users[1]]
        self.assertTrue(self.view(other)["choose"][0]["full"])
        refused = self.choose(other, first, HTTPStatus.FORBIDDEN)
        self.assertEqual(
            refused,
            {
                "errcode": "ORG.MATRIX.MSC3985.ROOM_FULL",
                "error": "Room 1 is full (1 of 1)",
            },
        )
        self.assertIsNone(self.membership_in(first, self.users[1]))

    def test_only_own_rooms_of_a_choose_breakout(self) -> None:
        tok = self.toks[self.users[0]]
        elsewhere = self.helper.create_room_as(
            self.host, is_public=True, tok=self.host_tok
        )
        self.choose(tok, elsewhere, HTTPStatus.NOT_FOUND)  # no break-out yet
        rooms = self.start_choose(move="invite")
        self.assertIsNone(self.view(tok)["choose"])
        error = self.choose(tok, rooms[0], HTTPStatus.FORBIDDEN)
        self.assertEqual(error["error"], "in this break-out the host assigns the rooms")
        self.call("DELETE", self.room_path())
        self.start_choose()
        error = self.choose(tok, elsewhere, HTTPStatus.FORBIDDEN)
        self.assertIn("is not a room of this break-out", error["error"])
        self.assertIsNone(self.membership_in(elsewhere, self.users[0]))
        stranger = self.register_user("stranger", "pass")
        self.choose(self.login("stranger", "pass"), rooms[0], HTTPStatus.FORBIDDEN)
        self.assertIsNone(self.membership_in(rooms[0], stranger))

    def test_bad_requests_are_400(self) -> None:
        self.start_choose()
        tok = self.toks[self.users[0]]
        for body, errcode in [
            ({}, "M_MISSING_PARAM"),
            ({"room_id": "nope"}, "M_INVALID_PARAM"),
            ({"room_id": "!a:test", "extra": 1}, "M_INVALID_PARAM"),
        ]:
            channel = self.make_request(
                "POST",
                f"{CONSOLE}/api/rooms/{urllib.parse.quote(self.parent)}/join",
                body,
                access_token=tok,
            )
            self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST, channel.json_body)
            self.assertEqual(channel.json_body["errcode"], errcode)
        channel = self.make_request(
            "POST",
            f"{CONSOLE}/api/rooms/nope/join",
            {"room_id": "!a:test"},
            access_token=tok,
        )
        self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST)
