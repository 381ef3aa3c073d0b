"""Power levels from a state map (pure logic, plain values)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from synapse_breakout.matrix.power import (
    CREATOR_POWER_LEVEL,
    join_rule,
    membership,
    required_level_to_send,
    user_power_level,
)

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database


@attrs.frozen
class Ev:
    sender: str
    content: dict[str, Any]


def state(version: str, power: dict[str, Any] | None = None, **create: Any) -> dict:
    s: dict[tuple[str, str], Ev] = {
        ("m.room.create", ""): Ev("@creator:x", {"room_version": version, **create})
    }
    if power is not None:
        s[("m.room.power_levels", "")] = Ev("@creator:x", power)
    return s


def test_users_then_users_default() -> None:
    s = state("10", {"users": {"@mod:x": 50}, "users_default": 5})
    assert user_power_level("@mod:x", s) == 50
    assert user_power_level("@other:x", s) == 5


def test_string_levels_of_old_rooms() -> None:
    s = state(
        "1", {"users": {"@mod:x": "75"}, "users_default": "bad"}, creator="@creator:x"
    )
    assert user_power_level("@mod:x", s) == 75
    assert user_power_level("@other:x", s) == 0


@pytest.mark.parametrize("version", ["1", "10", "11"])
def test_no_power_levels_event_gives_creator_100(version: str) -> None:
    s = state(version, None, creator="@creator:x")
    assert user_power_level("@creator:x", s) == 100
    assert user_power_level("@other:x", s) == 0


def test_v12_creators_outrank_everyone() -> None:
    s = state("12", {"users": {"@mod:x": 100}}, additional_creators=["@co:x"])
    assert user_power_level("@creator:x", s) == CREATOR_POWER_LEVEL
    assert user_power_level("@co:x", s) == CREATOR_POWER_LEVEL
    assert user_power_level("@mod:x", s) == 100


def test_v10_creator_has_only_its_listed_level() -> None:
    s = state("10", {"users": {"@creator:x": 20}})
    assert user_power_level("@creator:x", s) == 20


def test_required_level_to_send() -> None:
    s = state("10", {"events": {"m.breakout": 75}, "state_default": 40})
    assert required_level_to_send("m.breakout", s) == 75
    assert required_level_to_send("org.matrix.msc3985.breakout", s) == 40
    assert required_level_to_send("m.breakout", state("10")) == 0


def test_join_rule_and_membership() -> None:
    s = state("10")
    assert join_rule(s) is None and membership("@a:x", s) is None
    s[("m.room.join_rules", "")] = Ev("@creator:x", {"join_rule": "public"})
    s[("m.room.member", "@a:x")] = Ev("@a:x", {"membership": "join"})
    assert join_rule(s) == "public" and membership("@a:x", s) == "join"
