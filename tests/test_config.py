"""The module's configuration (SPEC section 1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from synapse.config._base import ConfigError
from synapse.config.homeserver import HomeServerConfig
from synapse.config.modules import ModulesConfig

from synapse_breakout import BreakoutModule
from synapse_breakout.config import (
    INT_RANGES,
    AdminApiConfig,
    BreakoutConfig,
    ConsoleConfig,
    Enforcement,
    UnknownSenders,
    parse_config,
)

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
SPEC_DEFAULTS: dict[str, Any] = {
    "power_level": 50,
    "enforce_power_level_in": Enforcement.PUBLIC,
    "max_child_rooms": 50,
    "max_users_per_room": 1000,
    "users_must_be_members": True,
    "allow_unknown_remote_rooms": True,
    "unknown_senders": UnknownSenders.ANNOTATE,
    "admin_api": AdminApiConfig(enabled=True, allow_room_moderators=False),
    "eject_on_parent_leave": True,
    "recovery_interval_seconds": 60,
    "event_type": "org.matrix.msc3985.breakout",
    "notices": True,
    "warn_before_end_seconds": (300, 60),
    "retention_days": 90,
    "moderator_starts_per_hour": 10,
    "console": ConsoleConfig(enabled=True, widget=True),
    "max_plans_per_room": 20,
}


def error_of(raw: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value


@pytest.mark.parametrize("raw", [None, {}])
def test_defaults_are_the_specs(raw: Any) -> None:
    assert attrs.asdict(parse_config(raw), recurse=False) == SPEC_DEFAULTS


def test_every_option_is_read() -> None:
    raw = {
        "power_level": 75,
        "enforce_power_level_in": "all",
        "max_child_rooms": 3,
        "max_users_per_room": 7,
        "users_must_be_members": False,
        "allow_unknown_remote_rooms": False,
        "unknown_senders": "reject",
        "admin_api": {"enabled": False, "allow_room_moderators": True},
        "eject_on_parent_leave": False,
        "recovery_interval_seconds": 5,
        "event_type": "m.breakout",
        "notices": False,
        "warn_before_end_seconds": [30, 600],
        "console": {"enabled": False},
    }
    assert parse_config(raw) == BreakoutConfig(
        power_level=75,
        enforce_power_level_in=Enforcement.ALL,
        max_child_rooms=3,
        max_users_per_room=7,
        users_must_be_members=False,
        allow_unknown_remote_rooms=False,
        unknown_senders=UnknownSenders.REJECT,
        admin_api=AdminApiConfig(enabled=False, allow_room_moderators=True),
        eject_on_parent_leave=False,
        recovery_interval_seconds=5,
        event_type="m.breakout",
        notices=False,
        warn_before_end_seconds=(600, 30),
        console=ConsoleConfig(enabled=False),
    )


def test_no_warnings() -> None:
    assert parse_config({"warn_before_end_seconds": []}).warn_before_end_seconds == ()


def test_partial_admin_api_keeps_other_default() -> None:
    assert parse_config({"admin_api": {"allow_room_moderators": True}}).admin_api == (
        AdminApiConfig(enabled=True, allow_room_moderators=True)
    )


@pytest.mark.parametrize(
    ("raw", "path", "accepts"),
    [
        ({"power_level": "50"}, ("power_level",), "an integer"),
        ({"power_level": True}, ("power_level",), "an integer"),
        ({"power_level": 2**60}, ("power_level",), "an integer from"),
        ({"max_child_rooms": 0}, ("max_child_rooms",), "from 1 to 500"),
        ({"max_child_rooms": 501}, ("max_child_rooms",), "from 1 to 500"),
        ({"max_child_rooms": 2.5}, ("max_child_rooms",), "an integer"),
        ({"max_users_per_room": -1}, ("max_users_per_room",), "from 1 to 100000"),
        ({"recovery_interval_seconds": 0}, ("recovery_interval_seconds",), "from 1"),
        ({"users_must_be_members": "yes"}, ("users_must_be_members",), "true or false"),
        (
            {"allow_unknown_remote_rooms": 1},
            ("allow_unknown_remote_rooms",),
            "true or false",
        ),
        ({"eject_on_parent_leave": None}, ("eject_on_parent_leave",), "true or false"),
        (
            {"enforce_power_level_in": "private"},
            ("enforce_power_level_in",),
            "public, all, off",
        ),
        ({"unknown_senders": "warn"}, ("unknown_senders",), "annotate, reject, off"),
        (
            {"event_type": "m.room.message"},
            ("event_type",),
            "org.matrix.msc3985.breakout, m.breakout",
        ),
        ({"event_type": 3}, ("event_type",), "org.matrix.msc3985.breakout, m.breakout"),
        ({"notices": "on"}, ("notices",), "true or false"),
        ({"warn_before_end_seconds": 60}, ("warn_before_end_seconds",), "a list"),
        ({"warn_before_end_seconds": [0]}, ("warn_before_end_seconds",), "from 1"),
        (
            {"warn_before_end_seconds": [60, 60]},
            ("warn_before_end_seconds",),
            "distinct",
        ),
        ({"warn_before_end_seconds": [True]}, ("warn_before_end_seconds",), "integers"),
        ({"admin_api": True}, ("admin_api",), "a mapping"),
        ({"admin_api": {"enabled": "no"}}, ("admin_api", "enabled"), "true or false"),
        (
            {"admin_api": {"allow_room_moderators": 0}},
            ("admin_api", "allow_room_moderators"),
            "true or false",
        ),
        ({"console": "off"}, ("console",), "a mapping"),
        ({"console": {"enabled": 1}}, ("console", "enabled"), "true or false"),
    ],
)
def test_bad_value_names_key_and_what_it_accepts(
    raw: dict[str, Any], path: tuple[str, ...], accepts: str
) -> None:
    err = error_of(raw)
    assert tuple(err.path or ()) == path
    assert err.msg.startswith(".".join(path) + " must be ")
    assert accepts in err.msg


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"power_levle": 50}, ("power_levle",)),
        ({"admin_api": {"enable": True}}, ("admin_api", "enable")),
        ({"console": {"port": 1}}, ("console", "port")),
    ],
)
def test_unknown_key_lists_valid_keys(
    raw: dict[str, Any], path: tuple[str, ...]
) -> None:
    err = error_of(raw)
    assert tuple(err.path or ()) == path
    assert "unknown key" in err.msg and "valid keys are" in err.msg


def test_not_a_mapping() -> None:
    assert "must be a mapping" in error_of(["power_level"]).msg


def test_module_entry_is_checked_by_synapse_config_loading() -> None:
    """A bad entry under ``modules:`` stops Synapse's own config parsing."""
    entry = {
        "module": "synapse_breakout.BreakoutModule",
        "config": {"unknown_senders": "shout"},
    }
    with pytest.raises(ConfigError) as info:
        ModulesConfig(HomeServerConfig()).read_config({"modules": [entry]})
    err = info.value
    assert err.path == ("modules", "<item 0>", "config", "unknown_senders")
    assert "unknown_senders must be one of annotate, reject, off" in str(err.__cause__)


def test_good_module_entry_loads() -> None:
    entry = {
        "module": "synapse_breakout.BreakoutModule",
        "config": {"power_level": 100},
    }
    conf = ModulesConfig(HomeServerConfig())
    conf.read_config({"modules": [entry]})
    ((cls, parsed),) = conf.loaded_modules
    assert cls is BreakoutModule
    assert parsed.power_level == 100


def _documented_defaults() -> str:
    text = DOCS.read_text()
    match = re.search(r"## Every option at its default\n+```yaml\n(.*?)```", text, re.S)
    assert match, "docs/configuration.md lacks its defaults block"
    return match.group(1)


def test_documented_defaults_match_the_parser() -> None:
    documented = yaml.safe_load(_documented_defaults())["modules"][0]["config"]
    assert parse_config(documented) == BreakoutConfig()
    # and no option is missing from the block
    assert set(documented) == {f.name for f in attrs.fields(BreakoutConfig)}


def test_every_option_has_its_own_section_with_type_and_default() -> None:
    text = DOCS.read_text()
    sections = ("admin_api", "console")
    names = [f.name for f in attrs.fields(BreakoutConfig) if f.name not in sections]
    names += ["admin_api.enabled", "admin_api.allow_room_moderators"]
    names += ["console.enabled", "console.widget"]
    for name in names:
        section = re.search(rf"### `{re.escape(name)}`\n(.*?)(?=\n### |\Z)", text, re.S)
        assert section, f"docs/configuration.md has no section for {name}"
        body = section.group(1)
        assert "Type:" in body and "Default:" in body, name
    for key, (low, high) in INT_RANGES.items():
        assert f"{low} to {high}" in text or key == "power_level", key
