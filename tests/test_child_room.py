"""The child-room template (matrix/child_room.py): what a start's child rooms
copy from their parent, and the marker naming the operation that made them."""

from __future__ import annotations

from typing import Any

import pytest
from test_power import Ev, state

from synapse_breakout.matrix.child_room import (
    CREATION_MARKER,
    DEFAULT_CHILD_VERSION,
    ChildRoomTemplate,
    child_power_levels,
    child_room_version,
    creation_marker,
)
from synapse_breakout.matrix.model import ChildSpec, JoinRule

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database


def test_child_power_levels_copy_the_rules_as_integers() -> None:
    s = state(
        "1",
        {
            "users": {"@creator:x": 100, "@mod:x": "50", "@u:x": 0},
            "events": {"m.room.tombstone": 150, "org.matrix.msc3401.call.member": "0"},
            "events_default": "0",
            "kick": 60,
            "notifications": {"room": "20"},
            "historical": 100,
        },
    )
    s[("m.room.member", "@mod:x")] = Ev("@mod:x", {"membership": "join"})
    s[("m.room.member", "@u:x")] = Ev("@u:x", {"membership": "join"})
    levels = child_power_levels(s, "@mod:x", "10", lambda u: u == "@mod:x")
    assert levels == {
        "events": {"m.room.tombstone": 150, "org.matrix.msc3401.call.member": 0},
        "events_default": 0,
        "kick": 60,
        "notifications": {"room": 20},
        # The acting user may do everything the rules ask for.
        "users": {"@mod:x": 150},
    }
    # In version 12 the acting user is the creator: never listed.
    assert "users" not in child_power_levels(s, "@mod:x", "12", lambda u: False)


def test_child_rooms_keep_a_version_that_has_restricted_rooms() -> None:
    assert child_room_version("10") == "10"
    # Version 1 has no "restricted" join rule; an unknown version neither.
    assert child_room_version("1") == DEFAULT_CHILD_VERSION
    assert child_room_version("no-such-version") == DEFAULT_CHILD_VERSION


def test_one_request_per_child_from_one_template() -> None:
    s = state("10", {"users": {"@mod:x": 50}, "events_default": 0})
    s[("m.room.member", "@mod:x")] = Ev("@mod:x", {"membership": "join"})
    s[("m.room.encryption", "")] = Ev("@creator:x", {"algorithm": "m.megolm.v1"})
    template = ChildRoomTemplate.from_parent(
        "!parent:x", s, "@mod:x", JoinRule.RESTRICTED, lambda u: u == "@mod:x"
    )
    one = template.request("op1", 0, ChildSpec(name="Table 1", topic="Maths"))
    two = template.request("op1", 1, ChildSpec(name="Table 2"))
    assert one["name"] == "Table 1" and one["topic"] == "Maths"
    assert "topic" not in two
    assert one["room_version"] == "10"
    assert one["preset"] == "private_chat" and one["visibility"] == "private"
    rules = [e for e in one["initial_state"] if e["type"] == "m.room.join_rules"]
    assert rules == [
        {
            "type": "m.room.join_rules",
            "state_key": "",
            "content": {
                "join_rule": "restricted",
                "allow": [{"type": "m.room_membership", "room_id": "!parent:x"}],
            },
        }
    ]
    copied = [e["type"] for e in one["initial_state"]]
    assert "m.room.encryption" in copied
    # Siblings differ by their marker's index, within one operation.
    assert creation_marker(one["creation_content"]) == ("op1", 0)
    assert creation_marker(two["creation_content"]) == ("op1", 1)
    # The template itself is not changed by the requests made from it.
    assert "name" not in template.body


def test_a_public_child_is_made_with_the_public_preset() -> None:
    s = state("10", {"users": {"@mod:x": 50}})
    template = ChildRoomTemplate.from_parent(
        "!parent:x", s, "@mod:x", JoinRule.PUBLIC, lambda u: False
    )
    request: dict[str, Any] = template.request("op", 0, ChildSpec(name="A"))
    assert request["preset"] == "public_chat"
    (rule,) = [e for e in request["initial_state"] if e["type"] == "m.room.join_rules"]
    assert rule["content"] == {"join_rule": "public"}


def test_markers_of_rooms_no_operation_made() -> None:
    assert creation_marker({}) is None
    assert creation_marker({CREATION_MARKER: "not an object"}) is None
    assert creation_marker({CREATION_MARKER: {"operation": 5}}) is None
    assert creation_marker({CREATION_MARKER: {"operation": "op"}}) == ("op", None)
