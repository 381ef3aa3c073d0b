"""``GET /flags`` (server admins only): break-out events of unknown senders,
newest first, paginated (docs/admin_api.md, docs/security.md).

The verdicts are the spam-checker hook's (hooks/sender_trust.py), stored by
journal/verdicts.py. :func:`parse_flags_query` checks the query parameters.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import attrs
from synapse.module_api import SynapseRequest
from synapse.module_api.errors import Codes, SynapseError

from synapse_breakout.journal.synapse_tables import SynapseTables
from synapse_breakout.journal.verdicts import SenderVerdict, VerdictStore
from synapse_breakout.matrix.content import is_valid_room_id
from synapse_breakout.matrix.power import served_level

#: Page sizes.
DEFAULT_FLAGS_LIMIT = 20
MAX_FLAGS_LIMIT = 100


def flag_json(verdict: SenderVerdict) -> dict[str, Any]:
    """One entry of ``GET /flags``."""
    return {
        "event_id": verdict.event_id,
        "room_id": verdict.room_id,
        "sender": verdict.sender,
        "power_level": served_level(verdict.power_level),
        "required_power_level": verdict.required_power_level,
        "reason": verdict.reason,
        "received_ts": verdict.received_ts,
    }


@attrs.frozen
class FlagsQuery:
    room_id: str | None
    before: tuple[int, str] | None
    limit: int


def _bad_param(name: str, message: str) -> SynapseError:
    return SynapseError(
        HTTPStatus.BAD_REQUEST, f"{name}: {message}", Codes.INVALID_PARAM
    )


def make_token(verdict: SenderVerdict) -> str:
    """The opaque, URL-safe ``next`` token that resumes after ``verdict``."""
    raw = f"{verdict.received_ts}|{verdict.event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_token(token: str) -> tuple[int, str] | None:
    """``(received_ts, event_id)`` from a ``next`` token; None if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        ts, event_id = raw.decode("utf-8").split("|", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not ts.isdigit() or not event_id.startswith("$"):
        return None
    return int(ts), event_id


def _single(args: Mapping[bytes, Sequence[bytes]], name: str) -> str | None:
    values = args.get(name.encode("ascii"))
    if not values:
        return None
    if len(values) > 1:
        raise _bad_param(name, "give it at most once")
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_param(name, "must be UTF-8") from None


def parse_flags_query(args: Mapping[bytes, Sequence[bytes]]) -> FlagsQuery:
    """Check ``room_id``, ``from`` and ``limit`` of ``GET /flags``.

    Raises:
        SynapseError: 400 ``M_INVALID_PARAM`` naming the parameter.
    """
    room_id = _single(args, "room_id")
    if room_id is not None and not is_valid_room_id(room_id):
        raise _bad_param("room_id", f"{room_id!r} is not a valid room ID")
    token = _single(args, "from")
    before = None
    if token is not None:
        before = parse_token(token)
        if before is None:
            raise _bad_param("from", "not a token from this API's `next`")
    raw_limit = _single(args, "limit")
    limit = DEFAULT_FLAGS_LIMIT
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit():
            limit = 0
        else:
            limit = int(raw_limit)
        if not 1 <= limit <= MAX_FLAGS_LIMIT:
            raise _bad_param("limit", f"must be an integer from 1 to {MAX_FLAGS_LIMIT}")
    return FlagsQuery(room_id, before, limit)


class Flags:
    """Serves ``GET /flags``."""

    def __init__(self, verdicts: VerdictStore, tables: SynapseTables):
        self._verdicts = verdicts
        self._tables = tables

    async def list(self, request: SynapseRequest) -> tuple[int, Any]:
        """``GET /flags``: unknown senders' break-out events, newest first.

        The caller is a server admin (checked by admin_api.py, in this folder).
        """
        query = parse_flags_query(request.args)
        rows = await self._verdicts.flags(query.room_id, query.before, query.limit + 1)
        page = rows[: query.limit]
        more = len(rows) > query.limit
        # Events Synapse rejected (or has not stored yet) are never listed.
        accepted = await self._tables.stored_events(v.event_id for v in page)
        return HTTPStatus.OK, {
            "flags": [flag_json(v) for v in page if v.event_id in accepted],
            "next": make_token(page[-1]) if more else None,
        }
