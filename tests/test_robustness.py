"""No 5xx from bad input, and a refused request leaves nothing behind (SPEC
section 4), in Synapse's harness: fixed cases, then hypothesis over the bodies.

By default 2,500 examples in all (most refused; a start or end that succeeds
costs more, so those endpoints get fewer); ``BREAKOUT_FUZZ_SCALE`` multiplies
them (e.g. 10 for a long run).
"""

from __future__ import annotations

import json
import os
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


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
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
    {"name": st.text(max_size=8) | JSON},
    optional={
        "topic": st.text(max_size=8) | JSON,
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
        "txn_id": st.text(max_size=4) | JSON,
    },
)
END = st.fixed_dictionaries(
    {},
    optional={
        "message": st.text(max_size=8) | JSON,
        "close_rooms": st.booleans() | JSON,
    },
)
BROADCAST = st.fixed_dictionaries({}, optional={"body": st.text(max_size=8) | JSON})
MOVE = st.fixed_dictionaries(
    {}, optional={"user_id": USERS | JSON, "to": st.none() | st.text(max_size=8) | JSON}
)


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
