"""Parsing break-out content (SPEC section 2): pure functions, plain values."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synapse_breakout.matrix.content import (
    BreakoutContent,
    BreakoutContentError,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_breakout_content,
    room_id_server,
)

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

UNSTABLE = "org.matrix.msc3985.breakout"
STABLE = "m.breakout"
V12_ROOM = "!" + "A" * 20 + "b_-" + "9" * 20  # 43 characters after "!"


@pytest.mark.parametrize("event_type", [UNSTABLE, STABLE])
def test_full_event_is_parsed(event_type: str) -> None:
    content = {
        event_type: {
            "!a:example.org": {
                "via": ["example.org", "other.example.org"],
                "users": ["@u1:example.org", "@u2:other.example.org"],
                "org.example.future": {"x": 1},
            },
            V12_ROOM: {"via": ["example.org"]},
        }
    }
    parsed = parse_breakout_content(event_type, content)
    assert parsed.key == event_type
    assert parsed.room_ids == ("!a:example.org", V12_ROOM)
    first, second = parsed.children
    assert first.via == ("example.org", "other.example.org")
    assert first.users == ("@u1:example.org", "@u2:other.example.org")
    assert first.extra == {"org.example.future": {"x": 1}}
    assert second.users == ()
    # Forward compatible: what it does not know survives a round trip.
    assert parsed.to_json() == content


def test_unstable_event_may_use_the_stable_key() -> None:
    parsed = parse_breakout_content(
        UNSTABLE, {STABLE: {"!a:b.org": {"via": ["b.org"]}}}
    )
    assert parsed.key == STABLE and parsed.room_ids == ("!a:b.org",)


def test_stable_event_does_not_read_the_unstable_key() -> None:
    with pytest.raises(BreakoutContentError) as info:
        parse_breakout_content(STABLE, {UNSTABLE: {"!a:b.org": {"via": ["b.org"]}}})
    assert info.value.path == "content" and "'m.breakout'" in info.value.message


def test_unstable_event_with_both_keys_is_ambiguous() -> None:
    with pytest.raises(BreakoutContentError, match="use one"):
        parse_breakout_content(UNSTABLE, {UNSTABLE: {}, STABLE: {}})


@pytest.mark.parametrize("event_type", [UNSTABLE, STABLE])
@pytest.mark.parametrize("content", [{}, "KEY"])
def test_empty_content_ends_the_breakout(event_type: str, content: Any) -> None:
    raw = {event_type: {}} if content == "KEY" else {}
    parsed = parse_breakout_content(event_type, raw)
    assert parsed.ended and parsed == BreakoutContent(key=event_type)


@pytest.mark.parametrize(
    ("content", "path", "message"),
    [
        ([], "content", "must be an object"),
        ({UNSTABLE: []}, UNSTABLE, "must be an object of room IDs"),
        (
            {UNSTABLE: {"a:b.org": {"via": ["b.org"]}}},
            f'{UNSTABLE}["a:b.org"]',
            "not a valid room ID",
        ),
        (
            {UNSTABLE: {"!abc": {"via": ["b.org"]}}},
            f'{UNSTABLE}["!abc"]',
            "not a valid room ID",
        ),
        ({UNSTABLE: {"!a:b.org": []}}, f'{UNSTABLE}["!a:b.org"]', "must be an object"),
        ({UNSTABLE: {"!a:b.org": {}}}, f'{UNSTABLE}["!a:b.org"].via', "is required"),
        (
            {UNSTABLE: {"!a:b.org": {"via": []}}},
            f'{UNSTABLE}["!a:b.org"].via',
            "non-empty",
        ),
        (
            {UNSTABLE: {"!a:b.org": {"via": "b.org"}}},
            f'{UNSTABLE}["!a:b.org"].via',
            "non-empty list",
        ),
        (
            {UNSTABLE: {"!a:example.org": {"via": ["a.org", "b.org", "bad name"]}}},
            f'{UNSTABLE}["!a:example.org"].via[2]',
            "not a valid server name",
        ),
        (
            {UNSTABLE: {"!a:b.org": {"via": ["b.org"], "users": "@u:b.org"}}},
            f'{UNSTABLE}["!a:b.org"].users',
            "must be a list",
        ),
        (
            {
                UNSTABLE: {
                    "!a:b.org": {"via": ["b.org"], "users": ["@u:b.org", "u:b.org"]}
                }
            },
            f'{UNSTABLE}["!a:b.org"].users[1]',
            "not a valid user ID",
        ),
        (
            {UNSTABLE: {"!a:b.org": {"via": ["b.org"], "users": [7]}}},
            f'{UNSTABLE}["!a:b.org"].users[0]',
            "not a valid user ID",
        ),
        ({"something": 1}, "content", f"must hold '{UNSTABLE}'"),
    ],
)
def test_errors_name_their_path(content: Any, path: str, message: str) -> None:
    with pytest.raises(BreakoutContentError) as info:
        parse_breakout_content(UNSTABLE, content)
    assert info.value.path == path
    assert message in info.value.message
    assert str(info.value) == f"{path}: {info.value.message}"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("example.org", True),
        ("example.org:8448", True),
        ("1.2.3.4", True),
        ("1.2.3.4:443", True),
        ("[1234:5678::abcd]", True),
        ("[1234:5678::abcd]:5678", True),
        ("localhost", True),
        ("", False),
        ("exa mple.org", False),
        ("example.org:", False),
        ("example.org:0", False),
        ("example.org:65536", False),
        ("example.org:123456", False),
        ("[::1", False),
        ("ex_ample.org", False),
        ("a" * 256, False),
        (None, False),
    ],
)
def test_server_names_follow_the_spec_grammar(value: Any, valid: bool) -> None:
    assert is_valid_server_name(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("@alice:example.org", True),
        ("@Old.Style!user:example.org:8448", True),  # historical localparts
        ("@alice", False),
        ("alice:example.org", False),
        ("@:example.org", False),
        ("@al ice:example.org", False),
        ("@alice:bad server", False),
        ("@" + "a" * 250 + ":example.org", False),
    ],
)
def test_user_ids(value: str, valid: bool) -> None:
    assert is_valid_user_id(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("!opaque:example.org", True),  # room versions 1 to 11
        ("!opaque:example.org:8448", True),
        (V12_ROOM, True),  # room version 12: no server part
        ("!" + "A" * 42, False),
        ("!" + "A" * 44, False),
        ("!" + "A" * 42 + "=", False),
        ("!:example.org", False),
        ("#alias:example.org", False),
        ("!opaque:bad server", False),
        (42, False),
    ],
)
def test_room_ids_of_every_version(value: Any, valid: bool) -> None:
    assert is_valid_room_id(value) is valid


def test_room_id_server() -> None:
    assert room_id_server("!a:example.org:8448") == "example.org:8448"
    assert room_id_server(V12_ROOM) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ROOMISH = st.sampled_from(["!a:example.org", V12_ROOM, "!bad", "x"]) | st.text(
    max_size=12
)
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "via": st.lists(
            st.sampled_from(["example.org", "bad name", ""]) | JSON, max_size=3
        )
        | JSON,
        "users": st.lists(st.sampled_from(["@u:example.org", "u"]) | JSON, max_size=3)
        | JSON,
        "extra": JSON,
    },
)
CONTENT = JSON | st.dictionaries(
    st.sampled_from([UNSTABLE, STABLE, "other"]),
    st.dictionaries(ROOMISH, ENTRY | JSON, max_size=3) | JSON,
    max_size=2,
)


@settings(max_examples=400, deadline=None)
@given(event_type=st.sampled_from([UNSTABLE, STABLE]), content=CONTENT)
def test_any_json_gives_a_value_or_the_modules_error(
    event_type: str, content: Any
) -> None:
    try:
        parsed = parse_breakout_content(event_type, content)
    except BreakoutContentError as e:
        assert e.path and e.message
        return
    assert isinstance(parsed, BreakoutContent)
    for child in parsed.children:
        assert is_valid_room_id(child.room_id)
        assert child.via and all(is_valid_server_name(s) for s in child.via)
        assert all(is_valid_user_id(u) for u in child.users)
