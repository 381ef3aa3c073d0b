"""The module's configuration (docs/configuration.md), parsed into a frozen attrs value.

Every mistake in ``homeserver.yaml`` (an unknown key, a wrong type, an out-of-range
number, an unknown enum value) raises ``ConfigError`` whose path and message name
the key and say what it accepts. Synapse stops at start-up with that message, at
``modules.<item N>.config.<key>``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
from synapse.module_api.errors import ConfigError

#: The stable and the unstable (MSC3985) event types; both are treated alike.
STABLE_EVENT_TYPE = "m.breakout"
UNSTABLE_EVENT_TYPE = "org.matrix.msc3985.breakout"
BREAKOUT_EVENT_TYPES = frozenset({STABLE_EVENT_TYPE, UNSTABLE_EVENT_TYPE})

# Power levels are canonical-JSON integers.
_MAX_SAFE_INT = 2**53 - 1


class Enforcement(enum.Enum):
    """Where the sender's power level is checked (``enforce_power_level_in``)."""

    PUBLIC = "public"  # rooms whose join_rule is "public"
    ALL = "all"
    OFF = "off"


class UnknownSenders(enum.Enum):
    """What happens to break-out events from unknown senders (``unknown_senders``)."""

    ANNOTATE = "annotate"
    REJECT = "reject"
    OFF = "off"


@attrs.frozen
class AdminApiConfig:
    """The ``admin_api`` section."""

    enabled: bool = True
    allow_room_moderators: bool = False


@attrs.frozen
class ConsoleConfig:
    """The ``console`` section: the host console web page (docs/console.md)."""

    enabled: bool = True
    #: A start adds the console to the parent as a room widget; the end removes it.
    widget: bool = True


@attrs.frozen
class BreakoutConfig:
    """The parsed module configuration; defaults in docs/configuration.md."""

    power_level: int = 50
    enforce_power_level_in: Enforcement = Enforcement.PUBLIC
    max_child_rooms: int = 50
    max_users_per_room: int = 1000
    users_must_be_members: bool = True
    allow_unknown_remote_rooms: bool = True
    unknown_senders: UnknownSenders = UnknownSenders.ANNOTATE
    admin_api: AdminApiConfig = AdminApiConfig()
    eject_on_parent_leave: bool = True
    recovery_interval_seconds: int = 60
    event_type: str = UNSTABLE_EVENT_TYPE
    #: Post the notices participants see on any client (docs/participants.md).
    notices: bool = True
    #: Seconds before a deadline at which every child gets a warning, largest first.
    warn_before_end_seconds: tuple[int, ...] = (300, 60)
    retention_days: int = 90
    moderator_starts_per_hour: int = 10
    console: ConsoleConfig = ConsoleConfig()
    #: Plans a parent room may have (docs/admin_api.md, "Plans").
    max_plans_per_room: int = 20


# Inclusive ranges of the integer options.
INT_RANGES: Mapping[str, tuple[int, int]] = {
    "power_level": (-_MAX_SAFE_INT, _MAX_SAFE_INT),
    "max_child_rooms": (1, 500),
    "max_users_per_room": (1, 100_000),
    "recovery_interval_seconds": (1, 86_400),
    "retention_days": (1, 36_500),
    "moderator_starts_per_hour": (0, 1_000_000),
    "max_plans_per_room": (0, 1000),
}
_BOOLS = (
    "users_must_be_members",
    "allow_unknown_remote_rooms",
    "eject_on_parent_leave",
    "notices",
)
#: The longest warning offset: a week, the longest ``duration_seconds``.
MAX_WARNING_SECONDS = 7 * 24 * 3600
_E = TypeVar("_E", bound=enum.Enum)


def _error(key: str, accepts: str, value: Any) -> ConfigError:
    """A ConfigError whose path and message both name ``key``."""
    return ConfigError(
        f"{key} must be {accepts}; got {value!r}", path=tuple(key.split("."))
    )


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _error(key, "true or false", value)
    return value


def _int(key: str, value: Any) -> int:
    low, high = INT_RANGES[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise _error(key, f"an integer from {low} to {high}", value)
    return value


def _choice(key: str, value: Any, enum_type: type[_E]) -> _E:
    # YAML reads an unquoted `off` as false: where `off` is a value, false is it.
    wanted = "off" if value is False else value
    for member in enum_type:
        if isinstance(wanted, str) and wanted == member.value:
            return member
    raise _error(key, "one of " + ", ".join(m.value for m in enum_type), value)


def _check_keys(section: str, raw: Mapping[str, Any], known: list[str]) -> None:
    for key in raw:
        if key not in known:
            where = f"{section}.{key}" if section else str(key)
            raise ConfigError(
                f"unknown key {where!r}; valid keys are {', '.join(known)}",
                path=tuple(where.split(".")),
            )


_S = TypeVar("_S", AdminApiConfig, ConsoleConfig)


def _bool_section(section: str, raw: Any, section_type: type[_S]) -> _S:
    """A section whose keys are all booleans (``admin_api``, ``console``)."""
    known = [f.name for f in attrs.fields(section_type)]
    if not isinstance(raw, Mapping):
        raise _error(section, "a mapping with keys " + ", ".join(known), raw)
    _check_keys(section, raw, known)
    return section_type(**{k: _bool(f"{section}.{k}", v) for k, v in raw.items()})


def _warnings(key: str, value: Any) -> tuple[int, ...]:
    """Distinct offsets in seconds, largest first; an empty list: no warnings."""
    accepts = f"a list of distinct integers from 1 to {MAX_WARNING_SECONDS}"
    if not isinstance(value, list) or len(set(map(repr, value))) != len(value):
        raise _error(key, accepts, value)
    for item in value:
        if (
            isinstance(item, bool)
            or not isinstance(item, int)
            or not 1 <= item <= MAX_WARNING_SECONDS
        ):
            raise _error(key, accepts, value)
    return tuple(sorted(value, reverse=True))


def parse_config(raw: Any) -> BreakoutConfig:
    """Turn the module's ``config:`` mapping into a :class:`BreakoutConfig`.

    Args:
        raw: the ``config`` value of the module's entry in ``homeserver.yaml``;
            ``None`` (no ``config:`` at all) means every default.

    Raises:
        ConfigError: naming the offending key and what it accepts.
    """
    if raw is None:
        return BreakoutConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the module's config must be a mapping; got {raw!r}")
    known = [f.name for f in attrs.fields(BreakoutConfig)]
    _check_keys("", raw, known)

    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in INT_RANGES:
            values[key] = _int(key, value)
        elif key in _BOOLS:
            values[key] = _bool(key, value)
        elif key == "enforce_power_level_in":
            values[key] = _choice(key, value, Enforcement)
        elif key == "unknown_senders":
            values[key] = _choice(key, value, UnknownSenders)
        elif key == "admin_api":
            values[key] = _bool_section(key, value, AdminApiConfig)
        elif key == "console":
            values[key] = _bool_section(key, value, ConsoleConfig)
        elif key == "event_type":
            if not isinstance(value, str) or value not in BREAKOUT_EVENT_TYPES:
                raise _error(
                    key, f"one of {UNSTABLE_EVENT_TYPE}, {STABLE_EVENT_TYPE}", value
                )
            values[key] = value
        elif key == "warn_before_end_seconds":
            values[key] = _warnings(key, value)
    return BreakoutConfig(**values)
