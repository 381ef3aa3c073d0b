"""What a shadow-banned caller is told: success, and nothing happened.

Synapse's convention for shadow-banned users is to pretend their requests
succeeded (their messages get made-up event IDs), so they do not learn of the
ban and try elsewhere. The admin API does the same for every call that would
change something: the answer has the shape of a success, with made-up IDs,
and no room, event, invitation or journal row is made. docs/security.md.
"""

from __future__ import annotations

import base64
import secrets

from synapse_breakout.matrix.model import (
    BroadcastAnswer,
    DeadlineAnswer,
    DeadlineChange,
    EndAnswer,
    HelpAnswer,
    ReassignAnswer,
    StartAnswer,
    StartRequest,
)


def _made_up(sigil: str) -> str:
    """An ID shaped like a room version 12 room or event ID (43 characters)."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
    return sigil + raw.rstrip("=")


def operation_id(now: int) -> str:
    """A start's operation ID (``wait: false``), shaped like a real one
    (operations/start.py); ``GET /operations`` does not know it, as Synapse does not
    know the made-up IDs of a shadow-banned user's events."""
    return f"{now}-{secrets.token_hex(6)}"


def start(parent: str, req: StartRequest, server_name: str, now: int) -> StartAnswer:
    """A start's answer, as if its rooms were made."""
    if req.rooms is not None:
        specs = [(spec.name, list(spec.users)) for spec in req.rooms]
    else:
        assert req.auto_assign is not None
        listed = list(req.auto_assign.users or ())
        count = req.auto_assign.rooms or max(
            1, -(-len(listed) // (req.auto_assign.room_size or 1))
        )
        specs = [(f"Room {i + 1}", listed[i::count]) for i in range(count)]
    return {
        "room_id": parent,
        "event_id": _made_up("$"),
        "rooms": [
            {
                "room_id": _made_up("!"),
                "name": name,
                "users": users,
                "via": [server_name],
            }
            for name, users in specs
        ],
        "ends_at": now + req.duration_seconds * 1000 if req.duration_seconds else None,
        "failed_users": [],
    }


def end() -> EndAnswer:
    return {"event_id": _made_up("$"), "rooms": [], "failed_rooms": []}


def broadcast() -> BroadcastAnswer:
    return {"event_ids": {}, "failed_rooms": []}


def move(user_id: str, to: str | None) -> ReassignAnswer:
    return {
        "event_id": _made_up("$"),
        "user_id": user_id,
        "from": [],
        "to": to,
        "failed": [],
    }


def deadline(change: DeadlineChange, now: int) -> DeadlineAnswer:
    # As if the break-out had had no deadline: a plausible answer.
    return {"ends_at": change.apply(None, now)}


def help_request() -> HelpAnswer:
    return {"event_id": _made_up("$")}
