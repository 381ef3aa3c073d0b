"""``start_vs_handler``, ``start_vs_client`` and ``rollback_seconds``.

Starting a break-out of N rooms (N in 5, 20, 50; two members of the parent
invited into each) three ways, interleaved round by round on one homeserver
with the module loaded:

- ``api``: one ``POST /_synapse/client/breakout/v1/rooms/{parentRoomId}``
  (SPEC section 4), ``move: invite``;
- ``handler``: Synapse's own room handler creates the same rooms one by one
  (``create_room`` with the same name, join rule, copied state and invites),
  then one break-out state event is sent through the event creation handler;
- ``client``: what a client does over the client-server API: one
  ``createRoom`` per room (its set-up in ``initial_state``), one ``/invite`` per
  user, then one ``PUT /state`` of the break-out event. The harness's requests
  cost no network round trip: over a real network the client pays one per
  request on top, which is not counted here.

Each sample starts from a parent with no active break-out (the previous one is
ended between samples, untimed). ``rollback_seconds``: a spam checker refuses
the API's break-out event, so the call fails after creating every room; the
time is from that refusal until no room the call made is left (shut down and
purged by Synapse's task scheduler). The benchmark drives the reactor until
then, advancing its clock in steps of 0.1s beyond the wall clock when nothing
is left to run: how far is reported as ``clock_seconds`` (waits of Synapse's
scheduler, which a real server spends idle).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from synapse.api.constants import EventTypes
from synapse.api.errors import Codes
from synapse.events import EventBase
from synapse.types import JsonDict

from benchmarks.harness import Bench, Config, bulk_join, joined_members
from benchmarks.stats import Summary, interleave, paired_ratios, timed
from synapse_breakout.config import UNSTABLE_EVENT_TYPE

logger = logging.getLogger(__name__)

ROOM_COUNTS = (5, 20, 50)
USERS_PER_ROOM = 2
API_BASE = "/_synapse/client/breakout/v1"
#: The parent's state that SPEC section 4 copies into every child.
COPIED_STATE = (
    EventTypes.RoomEncryption,
    EventTypes.RoomHistoryVisibility,
    EventTypes.GuestAccess,
)
#: The power level the module's default config asks of moderators.
MODERATOR_LEVEL = 50
PATHS = ("api", "handler", "client")


def _quote(room_id: str) -> str:
    return urllib.parse.quote(room_id, safe="")


@dataclass
class Parent:
    """The parent room: its host (a server admin) and its members."""

    room_id: str
    host: str
    token: str
    members: list[str]
    state: dict[tuple[str, str], EventBase] = field(default_factory=dict)

    def plan(self, rooms: int) -> list[tuple[str, list[str]]]:
        """(name, users) of each child of a break-out of ``rooms`` rooms."""
        return [
            (
                f"Table {i + 1}",
                self.members[i * USERS_PER_ROOM : (i + 1) * USERS_PER_ROOM],
            )
            for i in range(rooms)
        ]


def make_parent(bench: Bench, host: str, token: str) -> Parent:
    """A public room of ``host`` with enough registered members to invite."""
    registration = bench.hs.get_registration_handler()
    members = []
    for i in range(max(ROOM_COUNTS) * USERS_PER_ROOM):
        members.append(bench.run(registration.register_user(localpart=f"guest{i}")))
    room_id, _, _ = bench.run(
        bench.hs.get_room_creation_handler().create_room(
            bench.requester(host),
            {"preset": "public_chat", "name": "Plenary"},
            ratelimit=False,
        )
    )
    bench.run(bulk_join(bench.hs, room_id, members))
    state = bench.run(
        bench.hs.get_storage_controllers().state.get_current_state(room_id)
    )
    if bench.run(joined_members(bench.hs, room_id)) != len(members) + 1:
        raise RuntimeError("the parent room's members did not all join")
    return Parent(room_id, host, token, members, dict(state))


def child_config(parent: Parent, name: str, users: list[str] | None) -> JsonDict:
    """``createRoom`` body for one child, as SPEC section 4 describes the API's.

    Name, ``restricted`` join rule (members of the parent may join), the
    parent's encryption, history visibility and guest access, the parent's
    moderators at their level, the parent's room version, and (unless
    ``users`` is None) the invites.
    """
    initial_state: list[JsonDict] = [
        {"type": kind, "state_key": "", "content": dict(event.content)}
        for kind in COPIED_STATE
        if (event := parent.state.get((kind, ""))) is not None
    ]
    initial_state.append(
        {
            "type": EventTypes.JoinRules,
            "state_key": "",
            "content": {
                "join_rule": "restricted",
                "allow": [{"type": "m.room_membership", "room_id": parent.room_id}],
            },
        }
    )
    create = parent.state[(EventTypes.Create, "")]
    config: JsonDict = {
        "preset": "private_chat",
        "visibility": "private",
        "name": name,
        "initial_state": initial_state,
        "room_version": str(create.content.get("room_version", "1")),
    }
    if users is not None:
        config["invite"] = users
    power = parent.state.get((EventTypes.PowerLevels, ""))
    moderators = {
        user: level
        for user, level in (power.content.get("users", {}) if power else {}).items()
        if user != parent.host and isinstance(level, int) and level >= MODERATOR_LEVEL
    }
    if moderators:
        config["power_level_content_override"] = {"users": moderators}
    return config


def breakout_content(
    bench: Bench, children: Sequence[tuple[str, list[str]]]
) -> JsonDict:
    return {
        UNSTABLE_EVENT_TYPE: {
            room_id: {"via": [bench.server_name], "users": users}
            for room_id, users in children
        }
    }


def start_with_handler(bench: Bench, parent: Parent, rooms: int) -> None:
    """Synapse's room handler, one room at a time, then one state event."""
    creation = bench.hs.get_room_creation_handler()
    events = bench.hs.get_event_creation_handler()
    requester = bench.requester(parent.host)
    children = []
    for name, users in parent.plan(rooms):
        room_id, _, _ = bench.run(
            creation.create_room(
                requester, child_config(parent, name, users), ratelimit=False
            )
        )
        children.append((room_id, users))
    bench.run(
        events.create_and_send_nonmember_event(
            requester,
            {
                "type": UNSTABLE_EVENT_TYPE,
                "room_id": parent.room_id,
                "sender": parent.host,
                "state_key": "",
                "content": breakout_content(bench, children),
            },
            ratelimit=False,
        )
    )


def start_with_client(bench: Bench, parent: Parent, rooms: int) -> None:
    """The client-server API: create and set up, invite, send the state event.

    One ``createRoom`` per room (its set-up in ``initial_state``), one
    ``/invite`` per user, then one ``PUT /state`` of the break-out event.
    """
    children = []
    for name, users in parent.plan(rooms):
        channel = bench.request(
            "POST",
            "/_matrix/client/v3/createRoom",
            child_config(parent, name, None),
            parent.token,
        )
        _expect(channel.code, 200, channel.json_body, "createRoom")
        room_id = channel.json_body["room_id"]
        for user in users:
            channel = bench.request(
                "POST",
                f"/_matrix/client/v3/rooms/{_quote(room_id)}/invite",
                {"user_id": user},
                parent.token,
            )
            _expect(channel.code, 200, channel.json_body, "invite")
        children.append((room_id, users))
    channel = bench.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{_quote(parent.room_id)}/state/{UNSTABLE_EVENT_TYPE}/",
        breakout_content(bench, children),
        parent.token,
    )
    _expect(channel.code, 200, channel.json_body, "PUT state")


def start_body(parent: Parent, rooms: int) -> JsonDict:
    return {
        "rooms": [{"name": name, "users": users} for name, users in parent.plan(rooms)],
        "join_rule": "restricted",
        "move": "invite",
    }


def start_with_api(bench: Bench, parent: Parent, rooms: int) -> JsonDict:
    code, body = bench.start(
        f"{API_BASE}/rooms/{_quote(parent.room_id)}",
        start_body(parent, rooms),
        parent.token,
    )
    _expect(code, 200, body, "POST break-out")
    if len(body.get("rooms", [])) != rooms or body.get("failed_users"):
        raise RuntimeError(f"the API started an unexpected break-out: {body}")
    return body


def end_breakout(bench: Bench, parent: Parent) -> None:
    """End the parent's break-out (``DELETE``), whichever way it started."""
    channel = bench.request(
        "DELETE", f"{API_BASE}/rooms/{_quote(parent.room_id)}", {}, parent.token
    )
    _expect(channel.code, 200, channel.json_body, "DELETE break-out")


def _expect(code: int, wanted: int, body: Any, what: str) -> None:
    if code != wanted:
        raise RuntimeError(f"{what}: HTTP {code}: {body}")


def api_status(bench: Bench, parent: Parent) -> str | None:
    """None if the admin API answers; otherwise why it is not available."""
    channel = bench.request(
        "GET", f"{API_BASE}/rooms/{_quote(parent.room_id)}", None, parent.token
    )
    if channel.code == 200:
        return None
    body = channel.json_body if channel.result.get("body") else {}
    if channel.code == 404 and body.get("errcode") == Codes.UNRECOGNIZED:
        return "not available: admin API absent"
    return f"not available: admin API answered HTTP {channel.code} {body}"


def run_start(bench: Bench, parent: Parent, rounds: int) -> dict[str, Any]:
    """``start_vs_handler`` and ``start_vs_client``, keyed by room count."""
    bench.switch.set(Config.WITH)
    starters: dict[str, Callable[[int], object]] = {
        "api": lambda n: start_with_api(bench, parent, n),
        "handler": lambda n: start_with_handler(bench, parent, n),
        "client": lambda n: start_with_client(bench, parent, n),
    }
    vs_handler: dict[str, Any] = {}
    vs_client: dict[str, Any] = {}
    seconds_out: dict[str, Any] = {}
    for rooms in ROOM_COUNTS:

        def measure(path: str, _round: int, rooms: int = rooms) -> float:
            bench.pump()  # timers that are due run now, untimed
            seconds = timed(lambda: starters[path](rooms), bench.timer)
            end_breakout(bench, parent)
            return seconds

        seconds = interleave(PATHS, rounds, measure)
        vs_handler[str(rooms)] = Summary.of(
            paired_ratios(seconds["api"], seconds["handler"])
        ).to_json()
        vs_client[str(rooms)] = Summary.of(
            paired_ratios(seconds["api"], seconds["client"])
        ).to_json()
        seconds_out[str(rooms)] = {
            path: Summary.of(seconds[path]).to_json(3) for path in PATHS
        }
        logger.info("start %d rooms: %s", rooms, seconds_out[str(rooms)])
    return {
        "start_vs_handler": vs_handler,
        "start_vs_client": vs_client,
        "start_seconds": seconds_out,
    }


class _FailureInjector:
    """Refuses the break-out event in one room, as a spam checker would.

    It also records the rooms Synapse's room handler creates meanwhile (the
    rooms the failing call made) and when the refusal happened.
    """

    def __init__(self, bench: Bench, parent: Parent) -> None:
        self._bench = bench
        self._parent = parent
        self.refused_at: float | None = None
        self.created: list[str] = []
        self._spam = bench.hs.get_module_api_callbacks().spam_checker
        self._creation = bench.hs.get_room_creation_handler()

    async def check_event_for_spam(self, event: EventBase) -> Any:
        if event.room_id == self._parent.room_id and event.type == UNSTABLE_EVENT_TYPE:
            self.refused_at = self._bench.timer.now()
            return Codes.FORBIDDEN
        return self._spam.NOT_SPAM

    def __enter__(self) -> _FailureInjector:
        original = self._creation.create_room

        async def create_room(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            self.created.append(result[0])
            return result

        self._creation.create_room = create_room  # type: ignore[method-assign]
        self._spam._check_event_for_spam_callbacks.append(self.check_event_for_spam)
        return self

    def __exit__(self, *exc: object) -> None:
        self._spam._check_event_for_spam_callbacks.remove(self.check_event_for_spam)
        del self._creation.create_room


def _rooms_left(bench: Bench, rooms: Sequence[str]) -> int:
    rows = bench.run(
        bench.hs.get_datastores().main.db_pool.simple_select_many_batch(
            table="rooms",
            column="room_id",
            iterable=rooms,
            retcols=("room_id",),
            desc="bench_rooms_left",
        )
    )
    return len(rows)


def rollback_once(bench: Bench, parent: Parent, rooms: int) -> dict[str, float]:
    """One failing start of ``rooms`` rooms; the time until none is left.

    Returns:
        ``seconds`` (wall clock from the refusal until no room is left),
        ``clock_seconds`` (how far Synapse's fake clock had to advance
        meanwhile: the scheduler's waits, which cost no wall time here).
    """
    step = 0.1
    limit = 600.0
    with _FailureInjector(bench, parent) as injector:
        code, body = bench.start(
            f"{API_BASE}/rooms/{_quote(parent.room_id)}",
            start_body(parent, rooms),
            parent.token,
        )
        if code != 403 or injector.refused_at is None:
            raise RuntimeError(f"the failing start answered HTTP {code}: {body}")
        if len(injector.created) != rooms:
            raise RuntimeError(f"the failing start made {len(injector.created)} rooms")
        clock = 0.0
        while _rooms_left(bench, injector.created):
            if clock >= limit:
                raise RuntimeError(f"{rooms} rooms not rolled back after {limit}s")
            bench.pump(step)
            clock += step
        seconds = bench.timer.now() - injector.refused_at
    state = bench.run(
        bench.hs.get_storage_controllers().state.get_current_state_ids(parent.room_id)
    )
    event_id = state.get((UNSTABLE_EVENT_TYPE, ""))
    if event_id is not None:
        event = bench.run(bench.hs.get_datastores().main.get_event(event_id))
        if event.content.get(UNSTABLE_EVENT_TYPE):
            raise RuntimeError("the failed start left a break-out in the parent")
    return {"seconds": seconds, "clock_seconds": clock}


def run_rollback(bench: Bench, parent: Parent, rounds: int) -> dict[str, Any]:
    """``rollback_seconds``, keyed by room count."""
    bench.switch.set(Config.WITH)
    out: dict[str, Any] = {}
    for rooms in ROOM_COUNTS:
        results = [rollback_once(bench, parent, rooms) for _ in range(rounds)]
        out[str(rooms)] = {
            **Summary.of([r["seconds"] for r in results]).to_json(3),
            "clock_seconds": Summary.of([r["clock_seconds"] for r in results]).to_json(
                1
            ),
        }
        logger.info("rollback %d rooms: %s", rooms, out[str(rooms)])
    return out
