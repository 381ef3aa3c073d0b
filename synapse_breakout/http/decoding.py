"""Decoding requests: the path below a resource, the JSON body, and its
fields one by one (docs/admin_api.md). The one home of that for the admin API
and the console.

Every mistake is a 400 ``{"errcode", "error"}`` whose message starts with the
offending field's name; nothing else is accepted.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from synapse.module_api import SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.matrix.content import is_valid_user_id

MAX_TEXT_LENGTH = 255
_E = TypeVar("_E", bound=enum.Enum)


def bad(field: str, message: str, errcode: str = Codes.INVALID_PARAM) -> SynapseError:
    return SynapseError(HTTPStatus.BAD_REQUEST, f"{field}: {message}", errcode)


def read_json_body(request: SynapseRequest, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object of valid Unicode.

    400 ``M_NOT_JSON`` for a body that is not UTF-8 JSON or not an object;
    400 ``M_BAD_JSON`` naming the field for a string that is not valid
    Unicode (a lone surrogate such as ``"\ud800"``: JSON can spell one, UTF-8
    cannot, and every later step would fail on it).
    """
    raw = request.content.read() if request.content else b""
    if not raw.strip():
        if optional:
            return {}
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the body must be a JSON object", Codes.NOT_JSON
        )
    try:
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        # UnicodeDecodeError is a ValueError; RecursionError: nesting deeper
        # than the parser's stack.
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the body is not valid UTF-8 JSON", Codes.NOT_JSON
        ) from None
    if not isinstance(body, dict):
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the body must be a JSON object", Codes.NOT_JSON
        )
    where = invalid_unicode_at(body)
    if where is not None:
        raise bad(
            where or "body", "not valid Unicode (a lone surrogate)", Codes.BAD_JSON
        )
    return body


def invalid_unicode_at(value: Any) -> str | None:
    """The path (``rooms[0].name``) of the first string or key in ``value``
    that UTF-8 cannot encode; None when there is none."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if not _encodable(key):
                    return f"{path}.{key!a}" if path else ascii(key)
                pending.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_keys(
    body: Mapping[str, Any], known: tuple[str, ...], where: str = ""
) -> None:
    for key in body:
        if key not in known:
            raise bad(
                f"{where}{key}", "unknown field; known fields are " + ", ".join(known)
            )


def get_str(
    body: Mapping[str, Any],
    key: str,
    *,
    max_length: int = MAX_TEXT_LENGTH,
    where: str = "",
) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        raise bad(f"{where}{key}", f"must be a string of 1 to {max_length} characters")
    return value


def require_str(
    body: Mapping[str, Any],
    key: str,
    *,
    max_length: int = MAX_TEXT_LENGTH,
    where: str = "",
) -> str:
    value = get_str(body, key, max_length=max_length, where=where)
    if value is None:
        raise bad(f"{where}{key}", "is required", Codes.MISSING_PARAM)
    return value


def require_id(
    body: Mapping[str, Any], key: str, valid: Callable[[Any], bool], what: str
) -> str:
    """A required room or user ID: 400 ``M_MISSING_PARAM`` or ``M_INVALID_PARAM``."""
    value = body.get(key)
    if value is None:
        raise bad(key, "is required", Codes.MISSING_PARAM)
    if not valid(value):
        raise bad(key, f"{value!r} is not a valid {what}")
    return str(value)


def get_bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad(key, "must be true or false")
    return value


def get_choice(body: Mapping[str, Any], key: str, choices: type[_E]) -> _E:
    """One of the enum's values; its first when absent."""
    values = [str(choice.value) for choice in choices]
    value = body.get(key, values[0])
    if value not in values or not isinstance(value, str):
        raise bad(key, "must be one of " + ", ".join(values))
    return choices(value)


def get_int(
    body: Mapping[str, Any], key: str, low: int, high: int, where: str = ""
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= high
    ):
        raise bad(f"{where}{key}", f"must be an integer from {low} to {high}")
    return value


def get_user_list(value: Any, field: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise bad(field, "must be a list of user IDs")
    for i, user in enumerate(value):
        if not is_valid_user_id(user):
            raise bad(f"{field}[{i}]", f"{user!r} is not a valid user ID")
    if len(set(value)) != len(value):
        raise bad(field, "lists a user more than once")
    return tuple(value)


def query_param(
    request: SynapseRequest, name: str, max_length: int = 255
) -> str | None:
    """A query parameter given at most once, as text of at most
    ``max_length`` characters; None when absent. 400 ``M_INVALID_PARAM``
    naming it otherwise."""
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    if len(values) > 1:
        raise bad(name, "give it at most once")
    try:
        value: str = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise bad(name, "must be UTF-8") from None
    if len(value) > max_length:
        raise bad(name, f"must be at most {max_length} characters")
    return value


def path_segments(request: SynapseRequest) -> list[str]:
    """The path below a resource as text: 400 ``M_INVALID_PARAM`` if it is not
    UTF-8 (a surrogate's encoding included, which UTF-8 forbids).

    Twisted has percent-decoded each segment once already (``postpath``):
    they are not decoded again, so ``%2521`` stays ``%21``.
    """
    try:
        return [segment.decode("utf-8") for segment in request.postpath or []]
    except UnicodeDecodeError:
        raise SynapseError(
            HTTPStatus.BAD_REQUEST, "the path must be UTF-8", Codes.INVALID_PARAM
        ) from None
