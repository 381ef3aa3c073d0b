"""docs/openapi.yaml against the admin API the module really serves (SPEC section 4).

- The document is well formed: OpenAPI 3.1, the module's base path as its only
  server, bearer auth, every ``$ref`` resolves, every schema is a valid JSON
  Schema, and every error response is the Matrix error envelope with the
  errcodes it may carry listed as an ``enum``.
- Every documented operation, status and errcode is produced by a real request:
  ``RECIPES`` holds one request per ``(method, path, status, errcode)``, and the
  test fails for a documented answer without a recipe, for a recipe whose
  answer is not documented, and for a recipe that gets anything else. Every
  body is checked against the documented schema.
- Every route the code serves is documented: a grid of paths and methods is
  probed; "not served" is 404 ``M_UNRECOGNIZED`` or 405.
"""

from __future__ import annotations

import itertools
import re
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import yaml
from harness import (
    ACTIVE,
    BASE,
    UNSTABLE,
    ParentRoomTestCase,
    find_module,
    journal_crashed_start,
)
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from synapse.server import HomeServer
from synapse.util.clock import Clock
from tests.server import FakeChannel
from twisted.internet.testing import MemoryReactor

OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
#: A trailing slash after the room ID reaches the same handlers (see
#: docs/admin_api.md); it is not a route of its own.
ALIASES = {"/rooms/{parentRoomId}/": "/rooms/{parentRoomId}"}

# (method, path template, status, errcode or None for a success)
Key = tuple[str, str, int, str | None]
Recipe = Callable[["OpenApiTestCase"], FakeChannel]


# --- reading the document ----------------------------------------------------------


def load_document() -> dict[str, Any]:
    with OPENAPI.open(encoding="utf-8") as f:
        document = yaml.safe_load(f)
    assert isinstance(document, dict)
    return document


def resolve(document: dict[str, Any], node: Any) -> Any:
    """``node`` with a local ``$ref`` followed (repeatedly)."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise AssertionError(f"only local references are used: {ref}")
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def errcodes_of(document: dict[str, Any], schema: Any) -> set[str]:
    """The ``errcode`` values an error schema lists (its ``enum``/``const``)."""
    schema = resolve(document, schema)
    found: set[str] = set()
    errcode = schema.get("properties", {}).get("errcode", {})
    found.update(errcode.get("enum", []))
    if "const" in errcode:
        found.add(errcode["const"])
    for part in schema.get("allOf", []):
        found |= errcodes_of(document, part)
    return found


def is_error_envelope(document: dict[str, Any], schema: Any) -> bool:
    return any(
        part.get("$ref") == "#/components/schemas/Error"
        for part in resolve(document, schema).get("allOf", [])
    )


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method.upper() in METHODS:
                yield method.upper(), path, operation


def response_schema(document: dict[str, Any], response: Any) -> Any:
    response = resolve(document, response)
    return response["content"]["application/json"]["schema"]


def documented_answers(document: dict[str, Any]) -> dict[Key, Any]:
    """Every ``(method, path, status, errcode)`` the document promises, with
    the schema its body must match."""
    answers: dict[Key, Any] = {}
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            schema = response_schema(document, response)
            code = int(status)
            if code < 400:
                answers[(method, path, code, None)] = schema
            else:
                for errcode in errcodes_of(document, schema):
                    answers[(method, path, code, errcode)] = schema
    return answers


def examples_of(
    document: dict[str, Any], operation: dict[str, Any]
) -> Iterator[tuple[Any, Any]]:
    """Every example of an operation's request and responses, with its schema."""
    media = []
    if "requestBody" in operation:
        media.append(operation["requestBody"]["content"]["application/json"])
    for response in operation["responses"].values():
        media.append(resolve(document, response)["content"]["application/json"])
    for content in media:
        if "example" in content:
            yield content["example"], content["schema"]
        for example in content.get("examples", {}).values():
            yield example["value"], content["schema"]


def template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/{}]+\})", template)
    return re.compile(
        "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    )


# --- the recipes: one real request per documented answer ---------------------------

RECIPES: dict[Key, Recipe] = {}


def recipe(method: str, path: str, status: int, errcode: str | None = None) -> Any:
    def register(f: Recipe) -> Recipe:
        key = (method, path, status, errcode)
        assert key not in RECIPES, key
        RECIPES[key] = f
        return f

    return register


ROOM = "/rooms/{parentRoomId}"
BROADCAST = "/rooms/{parentRoomId}/broadcast"
MOVE = "/rooms/{parentRoomId}/move"
DEADLINE = "/rooms/{parentRoomId}/deadline"
HELP = "/rooms/{parentRoomId}/help"
FLAGS = "/flags"
OPERATION = "/operations/{operationId}"
PLANS = "/rooms/{parentRoomId}/plans"
PLAN = "/rooms/{parentRoomId}/plans/{planId}"
#: A plan's body, as a start's.
PLAN_BODY = {"name": "Week 1", "rooms": [{"name": "A"}]}
#: A body each operation accepts, for the requests refused before it is read.
GOOD_BODY: dict[tuple[str, str], Any] = {
    ("GET", ROOM): None,
    ("POST", ROOM): {"rooms": [{"name": "A"}]},
    ("DELETE", ROOM): None,
    ("POST", BROADCAST): {"body": "hello"},
    ("POST", MOVE): {"user_id": "@u0:test", "to": None},
    ("POST", DEADLINE): {"add_seconds": 60},
    ("POST", HELP): {"room_id": "!t1:test"},
    ("GET", FLAGS): None,
    ("GET", OPERATION): None,
    ("GET", PLANS): None,
    ("GET", PLAN): None,
    ("PUT", PLAN): PLAN_BODY,
    ("DELETE", PLAN): None,
}


def _auth_recipes() -> None:
    """401 for every operation: no token, an unknown one, a locked account."""
    for method, path in GOOD_BODY:

        def missing(t: OpenApiTestCase, m: str = method, p: str = path) -> Any:
            return t.request(m, t.fill(p), GOOD_BODY[(m, p)], tok=None)

        def unknown(t: OpenApiTestCase, m: str = method, p: str = path) -> Any:
            return t.request(m, t.fill(p), GOOD_BODY[(m, p)], tok="not-a-token")

        def locked(t: OpenApiTestCase, m: str = method, p: str = path) -> Any:
            return t.request(m, t.fill(p), GOOD_BODY[(m, p)], tok=t.locked_tok)

        recipe(method, path, 401, "M_MISSING_TOKEN")(missing)
        recipe(method, path, 401, "M_UNKNOWN_TOKEN")(unknown)
        recipe(method, path, 401, "M_USER_LOCKED")(locked)


_auth_recipes()


def _forbidden_recipes() -> None:
    """403 for every operation: a plain member (not a server admin)."""
    for method, path in GOOD_BODY:
        if path == OPERATION:
            continue  # another user's operation is 404, as an unknown one

        def member(t: OpenApiTestCase, m: str = method, p: str = path) -> Any:
            return t.request(m, t.fill(p), GOOD_BODY[(m, p)], tok=t.member_tok)

        recipe(method, path, 403, "M_FORBIDDEN")(member)


_forbidden_recipes()


# GET /rooms/{parentRoomId}


@recipe("GET", ROOM, 200)
def get_ok(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", t.fill(ROOM, t.active_parent()))


@recipe("GET", ROOM, 400, "M_INVALID_PARAM")
def get_bad_room_id(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", t.fill(ROOM, "lobby"))


@recipe("GET", ROOM, 404, "M_NOT_FOUND")
def get_unknown_parent(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", t.fill(ROOM, "!nosuch:test"))


# POST /rooms/{parentRoomId}


@recipe("POST", ROOM, 200)
def start_ok(t: OpenApiTestCase) -> FakeChannel:
    return t.request(
        "POST",
        t.fill(ROOM, t.make_parent()),
        {
            "acting_user": t.host,
            "rooms": [
                {"name": "Table 1", "topic": "Plans", "users": t.users[:2]},
                {"name": "Table 2", "users": t.users[2:4]},
            ],
            "duration_seconds": 600,
            "txn_id": "start-ok",
        },
    )


@recipe("POST", ROOM, 400, "M_NOT_JSON")
def start_not_json(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(ROOM), b"not json")


@recipe("POST", ROOM, 400, "M_MISSING_PARAM")
def start_missing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(ROOM), {"acting_user": t.host})


@recipe("POST", ROOM, 400, "M_INVALID_PARAM")
def start_invalid(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(ROOM), {"acting_user": t.host, "rooms": []})


@recipe("POST", ROOM, 400, "M_TOO_LARGE")
def start_too_large(t: OpenApiTestCase) -> FakeChannel:
    """More users than a suggest event can list (members or not: checked off)."""
    starter = find_module(t.hs).operations.checks
    config = starter._config
    starter._config = attrs.evolve(config, users_must_be_members=False)
    many = [f"@{'x' * 200}{i:03d}:test" for i in range(300)]
    try:
        return t.request(
            "POST",
            t.fill(ROOM),
            {
                "acting_user": t.host,
                "move": "suggest",
                "rooms": [{"name": "A", "users": many}],
            },
        )
    finally:
        starter._config = config


@recipe("POST", ROOM, 429, "M_LIMIT_EXCEEDED")
def start_over_the_moderator_limit(t: OpenApiTestCase) -> FakeChannel:
    """A delegated moderator with no starts left this hour."""
    module = find_module(t.hs)
    resource = t.hs._module_web_resources[BASE]
    starter = module.operations.checks
    saved = (resource._config, starter._config)
    resource._config = attrs.evolve(
        saved[0], admin_api=attrs.evolve(saved[0].admin_api, allow_room_moderators=True)
    )
    starter._config = attrs.evolve(saved[1], moderator_starts_per_hour=0)
    try:
        return t.request(
            "POST", t.fill(ROOM), {"rooms": [{"name": "A"}]}, tok=t.mod_tok
        )
    finally:
        resource._config, starter._config = saved


@recipe("POST", ROOM, 404, "M_NOT_FOUND")
def start_unknown_parent(t: OpenApiTestCase) -> FakeChannel:
    return t.request(
        "POST",
        t.fill(ROOM, "!nosuch:test"),
        {"acting_user": t.host, "rooms": [{"name": "A"}]},
    )


@recipe("POST", ROOM, 409, ACTIVE)
def start_conflict(t: OpenApiTestCase) -> FakeChannel:
    return t.request(
        "POST",
        t.fill(ROOM, t.active_parent()),
        {"acting_user": t.host, "rooms": [{"name": "B"}]},
    )


@recipe("POST", ROOM, 500, "M_UNKNOWN")
def start_replay_of_crashed(t: OpenApiTestCase) -> FakeChannel:
    """A retry of a call whose homeserver stopped half-way: rolled back, 500."""
    parent = t.make_parent()
    journal_crashed_start(t, parent, t.admin, t.host)
    module = find_module(t.hs)
    t.get_success(module.loops.recover())
    return t.request(
        "POST",
        t.fill(ROOM, parent),
        {"acting_user": t.host, "rooms": [{"name": "A"}], "txn_id": "crashed"},
    )


@recipe("POST", ROOM, 202)
def start_accepted(t: OpenApiTestCase) -> FakeChannel:
    return t.request(
        "POST",
        t.fill(ROOM, t.make_parent()),
        {"acting_user": t.host, "auto_assign": {"room_size": 2}, "wait": False},
    )


# GET /operations/{operationId}


@recipe("GET", OPERATION, 200)
def operation_ok(t: OpenApiTestCase) -> FakeChannel:
    accepted = start_accepted(t)
    t.assertEqual(accepted.code, 202, accepted.json_body)
    t.pump(1)
    op_id = accepted.json_body["operation_id"]
    return t.request("GET", OPERATION.replace("{operationId}", op_id))


@recipe("GET", OPERATION, 404, "M_NOT_FOUND")
def operation_unknown(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", t.fill(OPERATION))


# DELETE /rooms/{parentRoomId}


@recipe("DELETE", ROOM, 200)
def end_ok(t: OpenApiTestCase) -> FakeChannel:
    return t.request(
        "DELETE",
        t.fill(ROOM, t.active_parent()),
        {"message": "Back to the main room", "close_rooms": True},
    )


@recipe("DELETE", ROOM, 400, "M_NOT_JSON")
def end_not_json(t: OpenApiTestCase) -> FakeChannel:
    return t.request("DELETE", t.fill(ROOM), b"not json")


@recipe("DELETE", ROOM, 400, "M_INVALID_PARAM")
def end_invalid(t: OpenApiTestCase) -> FakeChannel:
    return t.request("DELETE", t.fill(ROOM), {"close_rooms": "yes"})


@recipe("DELETE", ROOM, 404, "M_NOT_FOUND")
def end_nothing_to_end(t: OpenApiTestCase) -> FakeChannel:
    return t.request("DELETE", t.fill(ROOM))


@recipe("DELETE", ROOM, 409, ACTIVE)
def end_while_locked(t: OpenApiTestCase) -> FakeChannel:
    return t.request("DELETE", t.fill(ROOM, t.locked_parent()))


# POST /rooms/{parentRoomId}/broadcast


@recipe("POST", BROADCAST, 200)
def broadcast_ok(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(BROADCAST, t.active_parent()), {"body": "Hi"})


@recipe("POST", BROADCAST, 400, "M_NOT_JSON")
def broadcast_not_json(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(BROADCAST), b"")


@recipe("POST", BROADCAST, 400, "M_MISSING_PARAM")
def broadcast_missing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(BROADCAST), {})


@recipe("POST", BROADCAST, 400, "M_INVALID_PARAM")
def broadcast_invalid(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(BROADCAST), {"body": "x" * 32001})


@recipe("POST", BROADCAST, 404, "M_NOT_FOUND")
def broadcast_nothing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(BROADCAST), {"body": "Hi"})


# POST /rooms/{parentRoomId}/move


@recipe("POST", MOVE, 200)
def move_ok(t: OpenApiTestCase) -> FakeChannel:
    parent = t.active_parent()
    target = t.children[parent][1]
    return t.request(
        "POST", t.fill(MOVE, parent), {"user_id": t.users[0], "to": target}
    )


@recipe("POST", MOVE, 400, "M_NOT_JSON")
def move_not_json(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(MOVE), b"[1]")


@recipe("POST", MOVE, 400, "M_MISSING_PARAM")
def move_missing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(MOVE), {"user_id": t.users[0]})


@recipe("POST", MOVE, 400, "M_INVALID_PARAM")
def move_invalid(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(MOVE), {"user_id": "bob", "to": None})


@recipe("POST", MOVE, 404, "M_NOT_FOUND")
def move_nothing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(MOVE), {"user_id": t.users[0], "to": None})


@recipe("POST", MOVE, 409, ACTIVE)
def move_while_locked(t: OpenApiTestCase) -> FakeChannel:
    return t.request(
        "POST", t.fill(MOVE, t.locked_parent()), {"user_id": t.users[0], "to": None}
    )


# POST /rooms/{parentRoomId}/deadline


@recipe("POST", DEADLINE, 200)
def deadline_ok(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(DEADLINE, t.active_parent()), {"add_seconds": 300})


@recipe("POST", DEADLINE, 400, "M_NOT_JSON")
def deadline_not_json(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(DEADLINE), b"null")


@recipe("POST", DEADLINE, 400, "M_MISSING_PARAM")
def deadline_missing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(DEADLINE), {})


@recipe("POST", DEADLINE, 400, "M_INVALID_PARAM")
def deadline_in_the_past(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(DEADLINE, t.active_parent()), {"ends_at": 1})


@recipe("POST", DEADLINE, 404, "M_NOT_FOUND")
def deadline_nothing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(DEADLINE), {"ends_at": None})


# POST /rooms/{parentRoomId}/help


@recipe("POST", HELP, 200)
def help_ok(t: OpenApiTestCase) -> FakeChannel:
    parent = t.active_parent()
    child, user = t.children[parent][0], t.users[0]
    t.helper.join(child, user, tok=t.toks[user])
    return t.request("POST", t.fill(HELP, parent), {"room_id": child}, tok=t.toks[user])


@recipe("POST", HELP, 400, "M_NOT_JSON")
def help_not_json(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(HELP), b"{")


@recipe("POST", HELP, 400, "M_MISSING_PARAM")
def help_missing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(HELP), {"message": "Help"})


@recipe("POST", HELP, 400, "M_INVALID_PARAM")
def help_invalid(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(HELP), {"room_id": "table"})


@recipe("POST", HELP, 429, "M_LIMIT_EXCEEDED")
def help_again(t: OpenApiTestCase) -> FakeChannel:
    help_ok(t)
    parent = list(t.children)[-1]
    child, user = t.children[parent][0], t.users[0]
    return t.request("POST", t.fill(HELP, parent), {"room_id": child}, tok=t.toks[user])


# GET /flags


# Plans


@recipe("GET", PLANS, 200)
def plans_ok(t: OpenApiTestCase) -> FakeChannel:
    t.request("PUT", t.fill(PLAN), PLAN_BODY)
    return t.request("GET", t.fill(PLANS))


@recipe("GET", PLANS, 400, "M_INVALID_PARAM")
def plans_bad_room(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", t.fill(PLANS, "lobby"))


@recipe("GET", PLAN, 200)
def plan_ok(t: OpenApiTestCase) -> FakeChannel:
    t.request("PUT", t.fill(PLAN), PLAN_BODY)
    return t.request("GET", t.fill(PLAN))


@recipe("GET", PLAN, 400, "M_INVALID_PARAM")
def plan_bad_id(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", t.fill(PLANS) + "/a%2Fb")


@recipe("GET", PLAN, 404, "M_NOT_FOUND")
def plan_none(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", t.fill(PLANS) + "/never-stored")


@recipe("PUT", PLAN, 200)
def put_plan_ok(t: OpenApiTestCase) -> FakeChannel:
    return t.request("PUT", t.fill(PLAN), PLAN_BODY)


@recipe("PUT", PLAN, 400, "M_NOT_JSON")
def put_plan_not_json(t: OpenApiTestCase) -> FakeChannel:
    return t.request("PUT", t.fill(PLAN), b"[")


@recipe("PUT", PLAN, 400, "M_BAD_JSON")
def put_plan_bad_unicode(t: OpenApiTestCase) -> FakeChannel:
    return t.request("PUT", t.fill(PLAN), b'{"name": ' + LONE + b"}")


@recipe("PUT", PLAN, 400, "M_MISSING_PARAM")
def put_plan_missing(t: OpenApiTestCase) -> FakeChannel:
    return t.request("PUT", t.fill(PLAN), {"rooms": [{"name": "A"}]})


@recipe("PUT", PLAN, 400, "M_INVALID_PARAM")
def put_plan_invalid(t: OpenApiTestCase) -> FakeChannel:
    return t.request("PUT", t.fill(PLAN), {**PLAN_BODY, "move": "teleport"})


@recipe("PUT", PLAN, 400, "M_TOO_LARGE")
def put_plan_too_large(t: OpenApiTestCase) -> FakeChannel:
    many = [f"@{'x' * 200}{i:03d}:test" for i in range(300)]
    body = {"name": "Big", "move": "suggest", "rooms": [{"name": "A", "users": many}]}
    return t.request("PUT", t.fill(PLAN), body)


@recipe("PUT", PLAN, 400, "M_LIMIT_EXCEEDED")
def put_plan_over_the_limit(t: OpenApiTestCase) -> FakeChannel:
    parent = t.make_parent()
    for i in range(20):
        t.request("PUT", t.fill(PLANS, parent) + f"/p{i + 2}", PLAN_BODY)
    return t.request("PUT", t.fill(PLAN, parent), PLAN_BODY)


@recipe("PUT", PLAN, 404, "M_NOT_FOUND")
def put_plan_unknown_parent(t: OpenApiTestCase) -> FakeChannel:
    return t.request("PUT", t.fill(PLAN, "!nosuch:test"), PLAN_BODY)


@recipe("DELETE", PLAN, 200)
def delete_plan_ok(t: OpenApiTestCase) -> FakeChannel:
    t.request("PUT", t.fill(PLAN), PLAN_BODY)
    return t.request("DELETE", t.fill(PLAN))


@recipe("DELETE", PLAN, 400, "M_INVALID_PARAM")
def delete_last(t: OpenApiTestCase) -> FakeChannel:
    return t.request("DELETE", t.fill(PLANS) + "/last")


@recipe("DELETE", PLAN, 404, "M_NOT_FOUND")
def delete_plan_none(t: OpenApiTestCase) -> FakeChannel:
    return t.request("DELETE", t.fill(PLANS) + "/never-stored")


# A lone surrogate, as JSON spells it: every body's strings must be valid Unicode.
LONE = rb'"\ud800"'


@recipe("POST", ROOM, 400, "M_BAD_JSON")
def start_bad_unicode(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(ROOM), b'{"rooms": [{"name": ' + LONE + b"}]}")


@recipe("DELETE", ROOM, 400, "M_BAD_JSON")
def end_bad_unicode(t: OpenApiTestCase) -> FakeChannel:
    return t.request("DELETE", t.fill(ROOM), b'{"message": ' + LONE + b"}")


@recipe("POST", BROADCAST, 400, "M_BAD_JSON")
def broadcast_bad_unicode(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(BROADCAST), b'{"body": ' + LONE + b"}")


@recipe("POST", MOVE, 400, "M_BAD_JSON")
def move_bad_unicode(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(MOVE), b'{"user_id": ' + LONE + b', "to": null}')


@recipe("POST", DEADLINE, 400, "M_BAD_JSON")
def deadline_bad_unicode(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(DEADLINE), b"{" + LONE + b": 5}")


@recipe("POST", HELP, 400, "M_BAD_JSON")
def help_bad_unicode(t: OpenApiTestCase) -> FakeChannel:
    return t.request("POST", t.fill(HELP), b'{"room_id": ' + LONE + b"}")


@recipe("GET", FLAGS, 200)
def flags_ok(t: OpenApiTestCase) -> FakeChannel:
    t.flag_something()
    return t.request("GET", f"{FLAGS}?limit=1")


@recipe("GET", FLAGS, 400, "M_INVALID_PARAM")
def flags_invalid(t: OpenApiTestCase) -> FakeChannel:
    return t.request("GET", f"{FLAGS}?limit=0")


# --- the tests -----------------------------------------------------------------------


class OpenApiTestCase(ParentRoomTestCase):
    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.document = load_document()
        self.member_tok = self.toks[self.users[5]]
        self.register_user("locked", "pass")
        self.locked_tok = self.login("locked", "pass")
        channel = self.make_request(
            "PUT",
            "/_synapse/admin/v2/users/@locked:test",
            {"locked": True},
            access_token=self.admin_tok,
        )
        self.assertEqual(channel.code, 200, channel.json_body)
        #: The child rooms of each parent started by ``active_parent``.
        self.children: dict[str, list[str]] = {}

    # --- helpers for the recipes ---

    def fill(self, template: str, parent: str | None = None) -> str:
        return (
            template.replace(
                "{parentRoomId}", urllib.parse.quote(parent or self.parent, safe="")
            )
            .replace("{operationId}", "no-such-operation")
            .replace("{planId}", "p1")
        )

    def request(
        self, method: str, path: str, body: Any = None, tok: str | None = ""
    ) -> FakeChannel:
        """``tok``: "" for the admin's, None for no token at all."""
        return self.api_request(
            method, path, body, self.admin_tok if tok == "" else tok
        )

    def active_parent(self) -> str:
        """A new parent room with a break-out of two rooms started through the API."""
        parent = self.make_parent()
        result = self.call(
            "POST",
            self.room_path(parent),
            {
                "acting_user": self.host,
                "rooms": [
                    {"name": "A", "users": [self.users[0]]},
                    {"name": "B", "users": [self.users[1]]},
                ],
            },
        )
        self.children[parent] = [r["room_id"] for r in result["rooms"]]
        return parent

    def locked_parent(self) -> str:
        """An active parent whose lock another operation holds."""
        parent = self.active_parent()
        locks = find_module(self.hs).locks
        self.assertTrue(self.get_success(locks.lock(parent, "another-operation")))
        return parent

    def flag_something(self) -> None:
        """A break-out from an unknown sender, where Synapse lets them send it."""
        owner, sender = self.users[2], self.users[3]
        room = self.helper.create_room_as(
            owner,
            is_public=False,
            tok=self.toks[owner],
            extra_content={"power_level_content_override": {"events": {UNSTABLE: 0}}},
        )
        assert room is not None
        self.helper.invite(room, owner, sender, tok=self.toks[owner])
        self.helper.join(room, sender, tok=self.toks[sender])
        child = self.helper.create_room_as(sender, tok=self.toks[sender])
        self.helper.send_state(
            room,
            UNSTABLE,
            {UNSTABLE: {child: {"via": ["test"]}}},
            tok=self.toks[sender],
        )

    # --- the document ---

    def test_document_is_well_formed(self) -> None:
        doc = self.document
        self.assertRegex(doc["openapi"], r"^3\.1\.\d+$")
        self.assertEqual(
            doc["servers"],
            [{"url": BASE, "description": doc["servers"][0]["description"]}],
        )
        self.assertEqual(
            doc["components"]["securitySchemes"]["accessToken"]["scheme"], "bearer"
        )
        self.assertEqual(doc["security"], [{"accessToken": []}])
        for ref in set(refs(doc)):
            self.assertIsNotNone(resolve(doc, {"$ref": ref}), ref)
        for schema in doc["components"]["schemas"].values():
            with_components = {**schema, "components": doc["components"]}
            Draft202012Validator.check_schema(with_components)
        seen_ids = set()
        for method, path, operation in operations(doc):
            where = f"{method} {path}"
            self.assertNotIn(operation["operationId"], seen_ids, where)
            seen_ids.add(operation["operationId"])
            self.assertIn("200", operation["responses"], where)
            for status, response in operation["responses"].items():
                schema = response_schema(doc, response)
                if int(status) >= 400:
                    self.assertTrue(is_error_envelope(doc, schema), (where, status))
                    self.assertTrue(errcodes_of(doc, schema), (where, status))

        for method, path, operation in operations(doc):
            for example, schema in examples_of(doc, operation):
                with_components = {**schema, "components": doc["components"]}
                try:
                    Draft202012Validator(with_components).validate(example)
                except ValidationError as e:
                    self.fail(f"{method} {path}: an example does not match: {e}")

    def test_request_fields_are_the_ones_the_code_knows(self) -> None:
        """An unknown field's error lists the fields the code accepts."""
        doc = self.document
        schemas = doc["components"]["schemas"]
        cases = [
            ("POST", ROOM, {"zzz": 1}, "StartRequest"),
            ("POST", ROOM, {"rooms": [{"name": "A", "zzz": 1}]}, "ChildRoomRequest"),
            ("POST", ROOM, {"auto_assign": {"rooms": 1, "zzz": 1}}, "AutoAssign"),
            ("DELETE", ROOM, {"zzz": 1}, "EndRequest"),
            ("POST", BROADCAST, {"zzz": 1}, "BroadcastRequest"),
            ("POST", MOVE, {"zzz": 1}, "MoveRequest"),
        ]
        for method, path, body, name in cases:
            channel = self.request(method, self.fill(path), body)
            self.assertEqual(channel.code, 400, channel.json_body)
            error = channel.json_body["error"]
            self.assertIn("zzz: unknown field; known fields are ", error)
            known = error.split("known fields are ", 1)[1].split(", ")
            self.assertEqual(sorted(known), sorted(schemas[name]["properties"]), name)
        # ...and the request schemas the operations use are those.
        for method, path, name in (
            ("post", ROOM, "StartRequest"),
            ("delete", ROOM, "EndRequest"),
            ("post", BROADCAST, "BroadcastRequest"),
            ("post", MOVE, "MoveRequest"),
        ):
            body = doc["paths"][path][method]["requestBody"]
            self.assertEqual(
                body["content"]["application/json"]["schema"],
                {"$ref": f"#/components/schemas/{name}"},
            )

    # --- every documented answer is produced, and only those -----------------------

    def test_every_documented_answer_is_produced(self) -> None:
        doc = self.document
        documented = documented_answers(doc)
        problems: list[str] = []
        for key in sorted(set(documented) | set(RECIPES), key=str):
            if key not in RECIPES:
                problems.append(f"{key}: documented, but no request here produces it")
                continue
            status, errcode = key[2], key[3]
            channel = RECIPES[key](self)
            body = channel.json_body
            got = (channel.code, body.get("errcode") if channel.code >= 400 else None)
            if got != (status, errcode):
                problems.append(
                    f"{key}: the request got {got[0]} {got[1]}: {body.get('error')}"
                )
            elif key not in documented:
                problems.append(f"{key}: the code answers this; the document does not")
            else:
                schema = {**documented[key], "components": doc["components"]}
                try:
                    Draft202012Validator(schema).validate(body)
                except ValidationError as e:
                    problems.append(f"{key}: the body does not match its schema: {e}")
        self.assertEqual(problems, [], "\n".join(problems))

    # --- every served route is documented ------------------------------------------

    def test_every_served_route_is_documented(self) -> None:
        documented = {(m, p) for m, p, _ in operations(self.document)}
        aliases = {
            (m, alias)
            for alias, target in ALIASES.items()
            for m, p in documented
            if p == target
        }
        patterns = [(m, p, template_regex(p)) for m, p in documented | aliases]
        parent = urllib.parse.quote(self.parent, safe="")
        words = ["rooms", parent, "flags", "broadcast", "move", "deadline", "help"]
        words += ["operations", "other"]
        paths = [""]
        for n in (1, 2, 3):
            paths += ["/" + "/".join(p) for p in itertools.product(words, repeat=n)]
        paths += ["/", "/flags/", f"/rooms/{parent}/", f"/rooms/{parent}/move/"]
        paths += [f"/rooms/{parent}/plans", f"/rooms/{parent}/plans/p1", "/plans"]
        paths += [f"/rooms/{parent}/plans/p1/other", f"/rooms/{parent}/help/p1"]
        served: set[tuple[str, str]] = set()
        problems = []
        for path, method in itertools.product(paths, METHODS):
            channel = self.request(method, path)
            errcode = channel.json_body.get("errcode")
            if channel.code == 405 or (
                channel.code == 404 and errcode == "M_UNRECOGNIZED"
            ):
                self.assertEqual(errcode, "M_UNRECOGNIZED", (method, path))
                continue
            match = [p for m, p, rx in patterns if m == method and rx.fullmatch(path)]
            if not match:
                problems.append(
                    f"{method} {path} is served ({channel.code} {errcode}) "
                    "but not documented"
                )
                continue
            served.add((method, ALIASES.get(match[0], match[0])))
        for method, path in sorted(documented - served):
            problems.append(f"{method} {path} is documented but not served")
        self.assertEqual(problems, [], "\n".join(problems))
