"""No 5xx from bad input, and a refused request leaves nothing behind (SPEC
section 4), in Synapse's harness: fixed cases, then hypothesis over the bodies.

By default 2,500 examples in all (most refused; a start or end that succeeds
costs more, so those endpoints get fewer); ``BREAKOUT_FUZZ_SCALE`` multiplies
them (e.g. 10 for a long run).
"""

from __future__ import annotations

import json
import os
import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import BASE, ParentRoomTestCase, find_module, module_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unittest import override_config

SCALE = float(os.environ.get("BREAKOUT_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


#: Text with every code point, lone surrogates included ("\ud800": JSON can
#: spell them, UTF-8 cannot).
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
USERS = st.sampled_from(
    ["@u0:test", "@u1:test", "@u2:test", "@host:test", "@mod:test", "@x:far.example"]
)
ROOM = st.fixed_dictionaries(
    {"name": TEXT | JSON},
    optional={
        "topic": TEXT | JSON,
        "users": st.lists(USERS, max_size=3) | JSON,
        "extra": JSON,
    },
)
START = st.fixed_dictionaries(
    {},
    optional={
        "rooms": st.lists(ROOM, max_size=4) | JSON,
        "auto_assign": st.fixed_dictionaries(
            {},
            optional={
                "rooms": st.integers(-1, 5) | JSON,
                "users": st.just("joined") | st.lists(USERS, max_size=3) | JSON,
            },
        )
        | JSON,
        "join_rule": st.sampled_from(["restricted", "invite", "public"]) | JSON,
        "move": st.sampled_from(["suggest", "invite", "join"]) | JSON,
        "acting_user": USERS | JSON,
        "duration_seconds": st.integers(-5, 10**7) | JSON,
        "replace": st.booleans() | JSON,
        "txn_id": TEXT | JSON,
    },
)
END = st.fixed_dictionaries(
    {},
    optional={
        "message": TEXT | JSON,
        "close_rooms": st.booleans() | JSON,
    },
)
BROADCAST = st.fixed_dictionaries({}, optional={"body": TEXT | JSON})
MOVE = st.fixed_dictionaries(
    {}, optional={"user_id": USERS | JSON, "to": st.none() | TEXT | JSON}
)
SESSION = st.fixed_dictionaries(
    {},
    optional={
        "access_token": TEXT | JSON,
        "matrix_server_name": st.just("test") | TEXT | JSON,
        "room_id": st.just("!parent:test") | TEXT | JSON,
    },
)
CONSOLE = "/_synapse/client/breakout/console"
#: What no request may carry unnoticed: a lone surrogate, as JSON spells it.
SURROGATE = r"\ud800"


def _encoded(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


class FixedCasesTestCase(ParentRoomTestCase):
    def test_deeply_nested_json_is_a_400(self) -> None:
        for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"rooms": ' + b"[" * 50_000):
            channel = self.make_request(
                "POST", BASE + self.room_path(), raw, access_token=self.admin_tok
            )
            self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST, channel.text_body)
            self.assertEqual(channel.json_body["errcode"], "M_NOT_JSON")

    def test_lone_surrogates_are_a_400_naming_the_field_and_create_nothing(
        self,
    ) -> None:
        """Each string field where one caused a 500 (a room name or topic
        after a room was made, ``txn_id``, move's fields, the console's
        ``access_token``): 400 ``M_BAD_JSON`` naming it, nothing created."""
        start = BASE + self.room_path()
        raw = SURROGATE.encode()
        cases = [
            (
                start,
                b'{"rooms": [{"name": "A"}, {"name": "' + raw + b'"}]}',
                "rooms[1].name",
            ),
            (
                start,
                b'{"rooms": [{"name": "A", "topic": "' + raw + b'"}]}',
                "rooms[0].topic",
            ),
            (start, b'{"rooms": [{"name": "A"}], "txn_id": "' + raw + b'"}', "txn_id"),
            (start, b'{"' + raw + b'": 1}', "'\\ud800'"),
            (
                BASE + self.room_path(suffix="/move"),
                b'{"user_id": "@u0:test", "to": "!' + raw + b':test"}',
                "to",
            ),
            (
                BASE + self.room_path(suffix="/move"),
                b'{"user_id": "@' + raw + b':test", "to": null}',
                "user_id",
            ),
            (
                f"{CONSOLE}/api/session",
                b'{"access_token": "' + raw + b'", "room_id": "!a:test"}',
                "access_token",
            ),
        ]
        before = self.local_room_count()
        for path, body, field in cases:
            channel = self.make_request("POST", path, body, access_token=self.admin_tok)
            self.assertEqual(
                channel.code, HTTPStatus.BAD_REQUEST, (body, channel.text_body)
            )
            self.assertEqual(channel.json_body["errcode"], "M_BAD_JSON", body)
            self.assertTrue(
                channel.json_body["error"].startswith(field), channel.json_body
            )
        self.assertEqual(self.local_room_count(), before)
        # Not UTF-8 at all (Latin-1 bytes): not JSON.
        channel = self.make_request(
            "POST", start, b'{"rooms": [{"name": "\xe9"}]}', access_token=self.admin_tok
        )
        self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST, channel.text_body)
        self.assertEqual(channel.json_body["errcode"], "M_NOT_JSON")

    def test_console_paths_that_are_not_utf8_are_a_400(self) -> None:
        for path in ("/api/rooms/%FF", "/api/rooms/%ED%A0%80"):
            channel = self.make_request("GET", CONSOLE + path)
            self.assertEqual(channel.code, HTTPStatus.UNAUTHORIZED, path)
            channel = self.make_request(
                "GET", CONSOLE + path, access_token=self.admin_tok
            )
            self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST, channel.text_body)
            self.assertIn("UTF-8", channel.json_body["error"])

    def test_a_path_is_unquoted_once(self) -> None:
        """``%2521`` is ``%21`` in a room ID, not ``!``: not a room ID."""
        quoted = urllib.parse.quote(self.parent).replace("%21", "%2521")
        for path in (BASE + "/rooms/" + quoted, CONSOLE + "/api/rooms/" + quoted):
            channel = self.make_request("GET", path, access_token=self.admin_tok)
            self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST, path)
            self.assertIn("%21", channel.json_body["error"])

    def test_a_non_utf8_path_is_a_4xx_after_authentication(self) -> None:
        # Synapse itself refuses raw non-ASCII bytes; percent-encoded ones
        # reach the module, which reads nothing of a path before the token.
        for path in (BASE + "/%FF%FE", BASE + "/rooms/%FF%FE/move"):
            channel = self.make_request("POST", path, b"{}")
            self.assertEqual(channel.code, HTTPStatus.UNAUTHORIZED, path)
            channel = self.make_request(
                "POST", path, b"{}", access_token=self.admin_tok
            )
            self.assertEqual(channel.code, HTTPStatus.BAD_REQUEST, channel.text_body)
            self.assertEqual(channel.json_body["errcode"], "M_INVALID_PARAM")
            self.assertIn("UTF-8", channel.json_body["error"])

    def test_internal_errors_are_not_shown_to_callers(self) -> None:
        api = find_module(self.hs)._api

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("secret detail /var/lib/synapse")

        original = api.create_room
        api.create_room = broken  # type: ignore[method-assign]
        try:
            body = self.start(
                {"rooms": [{"name": "A"}]}, expect=HTTPStatus.INTERNAL_SERVER_ERROR
            )
        finally:
            api.create_room = original  # type: ignore[method-assign]
        self.assertEqual(body["errcode"], "M_UNKNOWN")
        self.assertNotIn("secret", body["error"])
        self.assertNotIn("/var/lib", body["error"])


@override_config(module_config(max_child_rooms=3, max_users_per_room=3))
class FuzzTestCase(ParentRoomTestCase):
    """Any body: never a 5xx; every error in the Matrix envelope; a refused
    request creates no room."""

    def send(self, method: str, suffix: str, body: Any) -> int:
        before = self.local_room_count()
        channel = self.make_request(
            method,
            BASE + self.room_path(suffix=suffix),
            _encoded(body),
            access_token=self.admin_tok,
        )
        self.assertLess(channel.code, 500, (body, channel.text_body))
        if channel.code != HTTPStatus.OK:
            envelope = channel.json_body
            self.assertIsInstance(envelope.get("errcode"), str, body)
            self.assertIsInstance(envelope.get("error"), str, body)
            self.assertEqual(self.local_room_count(), before, body)
        return channel.code

    def active(self) -> bool:
        channel = self.make_request(
            "GET", BASE + self.room_path(), access_token=self.admin_tok
        )
        return bool(channel.json_body["active"])

    def ensure_breakout(self) -> None:
        if not self.active():
            self.start({"rooms": [{"name": "A", "users": ["@u0:test"]}, {"name": "B"}]})

    @fuzz(1200)
    @given(body=START | JSON | st.binary(max_size=24))
    def test_start(self, body: Any) -> None:
        if self.send("POST", "", body) == HTTPStatus.OK:
            self.send("DELETE", "", {})

    @fuzz(200)
    @given(body=END | JSON | st.binary(max_size=24))
    def test_end(self, body: Any) -> None:
        self.ensure_breakout()
        self.send("DELETE", "", body)

    @fuzz(500)
    @given(body=BROADCAST | JSON | st.binary(max_size=24))
    def test_broadcast(self, body: Any) -> None:
        self.ensure_breakout()
        self.send("POST", "/broadcast", body)

    @fuzz(600)
    @given(body=MOVE | JSON | st.binary(max_size=24))
    def test_move(self, body: Any) -> None:
        self.ensure_breakout()
        self.send("POST", "/move", body)

    @fuzz(300)
    @given(body=SESSION | JSON | st.binary(max_size=24))
    def test_console_session(self, body: Any) -> None:
        channel = self.make_request("POST", f"{CONSOLE}/api/session", _encoded(body))
        self.assertLess(channel.code, 500, (body, channel.text_body))
        self.assertIsInstance(channel.json_body.get("errcode"), str, body)

    @fuzz(200)
    @given(segment=TEXT | st.binary(max_size=12).map(lambda b: b.hex()))
    def test_console_room_paths(self, segment: str) -> None:
        path = urllib.parse.quote(segment.encode("utf-8", "surrogatepass"), safe="")
        for base in (f"{CONSOLE}/api/rooms/", BASE + "/rooms/"):
            channel = self.make_request("GET", base + path, access_token=self.admin_tok)
            self.assertLess(channel.code, 500, (segment, channel.text_body))
