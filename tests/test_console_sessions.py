"""Console sessions cannot become admin keys (SPEC 10, docs/security.md).

An OpenID token is handed by clients to identity servers, integration managers
and call services too, so a session made from one is narrow: bound to the
widget's room, a moderator's rights there at most, made once from a fresh
token, and ended by any logout, a password change or lowered power.
"""

from __future__ import annotations

import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import BASE, module_config
from synapse.rest.client import logout
from test_console import CONSOLE, MODERATORS, ConsoleBase
from tests.unittest import override_config

from synapse_breakout.http.console.sessions import FRESH_MS


class SessionSecurityTestCase(ConsoleBase):
    servlets = [*ConsoleBase.servlets, logout.register_servlets]

    def private_room(self) -> str:
        """A private room of the host that the admin is not in."""
        room = self.helper.create_room_as(self.host, is_public=False, tok=self.host_tok)
        assert room is not None
        return room

    def console_room(self, room: str, tok: str, expect: int = HTTPStatus.OK) -> Any:
        return self.get(f"{CONSOLE}/api/rooms/{urllib.parse.quote(room)}", tok, expect)

    def test_an_openid_token_makes_one_session(self) -> None:
        credentials = self.openid_token(self.mod, self.mod_tok)
        self.exchange(credentials)
        body = self.exchange(credentials, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")
        self.assertIn("already", body["error"])

    def test_a_stale_openid_token_makes_no_session(self) -> None:
        credentials = self.openid_token(self.mod, self.mod_tok)
        self.reactor.advance(FRESH_MS / 1000 + 1)
        body = self.exchange(credentials, HTTPStatus.UNAUTHORIZED)
        self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")
        self.assertIn("too old", body["error"])

    def test_a_session_needs_its_room_with_the_user_in_it(self) -> None:
        credentials = self.openid_token(self.mod, self.mod_tok)
        channel = self.make_request("POST", f"{CONSOLE}/api/session", {**credentials})
        self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST)
        self.assertEqual(channel.json_body["errcode"], "M_MISSING_PARAM")
        self.assertIn("room_id", channel.json_body["error"])
        body = self.exchange(
            self.openid_token(self.mod, self.mod_tok), HTTPStatus.BAD_REQUEST, "nope"
        )
        self.assertIn("room_id", body["error"])
        # A room the user is not joined to gives no session.
        body = self.exchange(
            self.openid_token(self.mod, self.mod_tok),
            HTTPStatus.FORBIDDEN,
            self.private_room(),
        )
        self.assertEqual(body["errcode"], "M_FORBIDDEN")

    def test_an_admins_session_has_no_admin_rights(self) -> None:
        self.helper.join(self.parent, self.admin, tok=self.admin_tok)
        private = self.private_room()
        session = self.session(self.admin, self.admin_tok)
        # /flags: server admins only, and a session is not one.
        self.get(BASE + "/flags", self.admin_tok)
        body = self.get(BASE + "/flags", session, HTTPStatus.FORBIDDEN)
        self.assertEqual(body["errcode"], "M_FORBIDDEN")
        # No acting_user, no break-out in another room, nothing created.
        rooms = self.local_room_count()
        for path, payload in [
            (self.room_path(), {"rooms": [{"name": "A"}], "acting_user": self.host}),
            (self.room_path(private), {"rooms": [{"name": "A"}]}),
        ]:
            self.call("POST", path, payload, tok=session, expect=HTTPStatus.FORBIDDEN)
        self.assertEqual(self.local_room_count(), rooms)
        # No private room the admin is not in, through the console.
        self.console_room(private, self.admin_tok)  # their own token may
        body = self.console_room(private, session, HTTPStatus.FORBIDDEN)
        self.assertIn("this console session is for", body["error"])
        # The admin's own token lists the private room (they may host it);
        # the session lists nothing but its room.
        mine = self.get(f"{CONSOLE}/api/rooms", self.admin_tok)["rooms"]
        self.assertNotIn(private, [r["room_id"] for r in mine])
        self.helper.invite(private, self.host, self.admin, tok=self.host_tok)
        self.helper.join(private, self.admin, tok=self.admin_tok)
        mine = self.get(f"{CONSOLE}/api/rooms", self.admin_tok)["rooms"]
        self.assertIn(private, [r["room_id"] for r in mine])
        listed = self.get(f"{CONSOLE}/api/rooms", session)["rooms"]
        self.assertNotIn(private, [r["room_id"] for r in listed])

    def test_an_admin_hosts_through_a_session_only_where_a_moderator(self) -> None:
        """Not a moderator of the room: no host rights, admin or not; one,
        where delegated moderators are not let in: an admin's session may."""
        self.helper.join(self.parent, self.admin, tok=self.admin_tok)
        session = self.session(self.admin, self.admin_tok)
        self.assertFalse(self.console_room(self.parent, session)["host"])
        self.call("GET", self.room_path(), tok=session, expect=HTTPStatus.FORBIDDEN)
        self.helper.send_state(
            self.parent,
            "m.room.power_levels",
            {"users": {self.host: 100, self.mod: 50, self.admin: 50}},
            tok=self.host_tok,
        )
        self.assertTrue(self.console_room(self.parent, session)["host"])
        result = self.call(
            "POST", self.room_path(), {"rooms": [{"name": "A"}]}, tok=session
        )
        self.assertEqual(len(result["rooms"]), 1)
        # A plain moderator's session: not without allow_room_moderators.
        mod = self.session(self.mod, self.mod_tok)
        self.call("GET", self.room_path(), tok=mod, expect=HTTPStatus.FORBIDDEN)

    @override_config(MODERATORS)
    def test_a_session_acts_on_its_own_room_only(self) -> None:
        other = self.make_parent()
        session = self.session(self.mod, self.mod_tok)
        self.call("GET", self.room_path(), tok=session)
        self.call("GET", self.room_path(other), tok=self.mod_tok)
        body = self.call(
            "GET", self.room_path(other), tok=session, expect=HTTPStatus.FORBIDDEN
        )
        self.assertIn("this console session is for", body["error"])
        self.console_room(other, session, HTTPStatus.FORBIDDEN)
        # Nor operations on another parent.
        started = self.call(
            "POST",
            self.room_path(other),
            {"rooms": [{"name": "A"}], "wait": False},
            tok=self.mod_tok,
            expect=HTTPStatus.ACCEPTED,
        )
        path = "/operations/" + urllib.parse.quote(started["operation_id"])
        self.call("GET", path, tok=self.mod_tok)
        self.call("GET", path, tok=session, expect=HTTPStatus.NOT_FOUND)

    @override_config(MODERATORS)
    def test_logout_all_ends_sessions_and_tokens_issued_before(self) -> None:
        session = self.session(self.mod, self.mod_tok)
        earlier = self.openid_token(self.mod, self.mod_tok)
        self.call("GET", self.room_path(), tok=session)
        channel = self.make_request(
            "POST", "/_matrix/client/v3/logout/all", {}, access_token=self.mod_tok
        )
        self.assertEqual(channel.code, 200)
        body = self.call(
            "GET", self.room_path(), tok=session, expect=HTTPStatus.UNAUTHORIZED
        )
        self.assertEqual(body["errcode"], "M_UNKNOWN_TOKEN")
        # An OpenID token issued before the logout, still fresh: refused.
        self.reactor.advance(1)
        self.exchange(earlier, HTTPStatus.UNAUTHORIZED)
        # Signed in again: a new session works.
        self.mod_tok = self.login("mod", "pass")
        self.call("GET", self.room_path(), tok=self.session(self.mod, self.mod_tok))

    @override_config(MODERATORS)
    def test_a_password_change_ends_sessions(self) -> None:
        session = self.session(self.mod, self.mod_tok)
        self.call("GET", self.room_path(), tok=session)
        new_hash = self.get_success(self.hs.get_auth_handler().hash("another"))
        # Without logging out any device: the session ends all the same.
        self.get_success(
            self.hs.get_set_password_handler().set_password(
                self.mod, new_hash, logout_devices=False
            )
        )
        body = self.call(
            "GET", self.room_path(), tok=session, expect=HTTPStatus.UNAUTHORIZED
        )
        self.assertIn("password", body["error"])

    @override_config(MODERATORS)
    def test_lowered_power_ends_what_a_session_may_do(self) -> None:
        session = self.session(self.mod, self.mod_tok)
        self.call("GET", self.room_path(), tok=session)
        self.helper.send_state(
            self.parent,
            "m.room.power_levels",
            {"users": {self.host: 100}},
            tok=self.host_tok,
        )
        self.call("GET", self.room_path(), tok=session, expect=HTTPStatus.FORBIDDEN)
        self.assertFalse(self.console_room(self.parent, session)["host"])


class NoConsoleSessionsTestCase(ConsoleBase):
    @override_config(module_config(console={"enabled": False}))
    def test_without_the_console_no_logout_hook_is_registered(self) -> None:
        auth = self.hs.get_password_auth_provider()
        self.assertEqual(auth.on_logged_out_callbacks, [])
