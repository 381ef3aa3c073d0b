"""``split``: splitting a conference (SPEC sections 8 and 11).

A lobby of N joined local members (built in bulk from real signed joins, as
``hot_path``'s rooms) is split into rooms of ``ROOM_SIZE`` in one call,
``move: invite`` and ``move: join``, two ways taking turns in every round:

- ``api``: one ``POST /_synapse/client/breakout/v1/rooms/{lobby}`` with
  ``auto_assign: {"room_size": 50, "users": "joined"}``;
- ``limit``: Synapse's own handlers doing the same one by one: the room
  creation handler makes the same rooms (the API's ``createRoom`` body), the
  event creation handler sends the same break-out event, the room member
  handler makes the same invites or joins (the limit for this machine).

``ratio`` is api over limit, per round. ``unrelated_messages``: the throughput
of ``MESSAGES_DURING`` messages sent one after the other in another room while
a split (``move: invite``, ``wait: false``) runs, over the same messages'
throughput without.
``scaling``: the API's seconds at each N, with a least-squares line over
rooms + users. ``split_bounds`` (``--split-bounds``, a run of its own): the
API's ``move: invite`` split at several placement concurrency bounds
(placing.py), and Synapse's room creation handler making the rooms one by one
against several at once.
"""

from __future__ import annotations

import logging
import statistics
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from synapse.module_api import make_deferred_yieldable, run_in_background
from synapse.types import JsonDict, UserID
from twisted.internet import defer

from benchmarks.harness import Bench, Config, bulk_join, joined_members
from benchmarks.start import API_BASE, Parent, child_config, end_breakout
from benchmarks.stats import Summary, interleave, paired_ratios, timed
from synapse_breakout.config import UNSTABLE_EVENT_TYPE
from synapse_breakout.matrix.auto_assign import spread
from synapse_breakout.matrix.content import fits_in_event

logger = logging.getLogger(__name__)

SIZES = (2_000, 5_000, 10_000)
ROOM_SIZE = 50
MODES = ("invite", "join")
PATHS = ("api", "limit")
BOUNDS = (1, 2, 4, 8, 16)
#: Messages in the unrelated room just before and just after each split (the
#: baseline: their mean; the rate drifts from batch to batch, so one batch
#: sent first would put that drift in the figure).
MESSAGES_AROUND = 200
#: Messages sent while the split runs (it gives way to them, pacing.py: sending
#: until it ends would take many times its own length).
MESSAGES_DURING = 400


def _path(room_id: str) -> str:
    return f"{API_BASE}/rooms/{urllib.parse.quote(room_id, safe='')}"


def build_lobby(bench: Bench, host: str, token: str, size: int) -> Parent:
    """A public room of ``host`` with ``size - 1`` other joined members."""
    started = time.perf_counter()
    room_id, _, _ = bench.run(
        bench.hs.get_room_creation_handler().create_room(
            bench.requester(host),
            {"preset": "public_chat", "name": f"Lobby {size}"},
            ratelimit=False,
        )
    )
    members = [f"@lobby{size}_{i:05d}:{bench.server_name}" for i in range(size - 1)]
    bench.run(bulk_join(bench.hs, room_id, members))
    if bench.run(joined_members(bench.hs, room_id)) != size:
        raise RuntimeError(f"lobby of {size}: not every member joined")
    state = bench.run(
        bench.hs.get_storage_controllers().state.get_current_state(room_id)
    )
    logger.info("lobby of %d built in %.1fs", size, time.perf_counter() - started)
    return Parent(room_id, host, token, sorted(members), dict(state))


def split_body(mode: str, wait: bool = True) -> JsonDict:
    return {
        "auto_assign": {"room_size": ROOM_SIZE, "users": "joined"},
        "move": mode,
        "join_rule": "restricted",
        "wait": wait,
    }


def split_with_api(bench: Bench, lobby: Parent, mode: str) -> None:
    code, body = bench.start(_path(lobby.room_id), split_body(mode), lobby.token)
    if code != 200 or body.get("failed_users"):
        raise RuntimeError(f"the API split answered {code}: {str(body)[:500]}")
    placed = sum(len(room["users"]) for room in body["rooms"])
    if placed != len(lobby.members):
        raise RuntimeError(f"the API split placed {placed} users")


def _content(bench: Bench, children: Sequence[tuple[str, list[str]]]) -> JsonDict:
    """The break-out event's content, users left out over the size limit (as
    the module does)."""
    entries = {
        room_id: {"via": [bench.server_name], "users": users}
        for room_id, users in children
    }
    if not fits_in_event({UNSTABLE_EVENT_TYPE: entries}):
        entries = {room_id: {"via": [bench.server_name]} for room_id, _ in children}
    return {UNSTABLE_EVENT_TYPE: entries}


def split_with_handlers(bench: Bench, lobby: Parent, mode: str) -> None:
    """Synapse's handlers, one by one: rooms, the event, the memberships (one
    coroutine, as a module or servlet would run them)."""
    bench.run(_split_with_handlers(bench, lobby, mode))


async def _split_with_handlers(bench: Bench, lobby: Parent, mode: str) -> None:
    creation = bench.hs.get_room_creation_handler()
    events = bench.hs.get_event_creation_handler()
    members = bench.hs.get_room_member_handler()
    host = bench.requester(lobby.host)
    plan = spread(lobby.members, -(-len(lobby.members) // ROOM_SIZE))
    children = []
    for i, users in enumerate(plan):
        config = child_config(lobby, f"Room {i + 1}", None)
        room_id, _, _ = await creation.create_room(host, config, ratelimit=False)
        children.append((room_id, users))
    await events.create_and_send_nonmember_event(
        host,
        {
            "type": UNSTABLE_EVENT_TYPE,
            "room_id": lobby.room_id,
            "sender": lobby.host,
            "state_key": "",
            "content": _content(bench, children),
        },
        ratelimit=False,
    )
    for room_id, users in children:
        for user in users:
            requester = host if mode == "invite" else bench.requester(user)
            await members.update_membership(
                requester, UserID.from_string(user), room_id, mode, ratelimit=False
            )


def run_split(
    bench: Bench, lobby: Parent, mode: str, rounds: int
) -> dict[str, list[float]]:
    """Seconds of each path, round by round."""
    splits: dict[str, Callable[[], None]] = {
        "api": lambda: split_with_api(bench, lobby, mode),
        "limit": lambda: split_with_handlers(bench, lobby, mode),
    }

    def measure(path: str, _round: int) -> float:
        bench.pump()
        seconds = timed(splits[path], bench.timer)
        end_breakout(bench, lobby)
        logger.info("split %s %s: %.1fs", mode, path, seconds)
        return seconds

    return interleave(PATHS, rounds, measure, warmup=0)


def _send(bench: Bench, sender: str, room_id: str, i: int) -> None:
    bench.run(
        bench.hs.get_event_creation_handler().create_and_send_nonmember_event(
            bench.requester(sender),
            {
                "type": "m.room.message",
                "room_id": room_id,
                "sender": sender,
                "content": {"msgtype": "m.text", "body": f"message {i}"},
            },
            ratelimit=False,
        )
    )


def _operation_done(bench: Bench, token: str, op_id: str) -> bool:
    channel = bench.request(
        "GET", f"{API_BASE}/operations/{urllib.parse.quote(op_id)}", None, token
    )
    return channel.json_body.get("response") is not None


def unrelated_messages(
    bench: Bench, lobby: Parent, room_id: str, rounds: int
) -> list[float]:
    """Messages/s in ``room_id`` during a split over the mean of messages/s
    just before and just after it, per round (the method of live_split.py)."""

    def alone() -> float:
        bench.pump()
        started = bench.timer.now()
        for i in range(MESSAGES_AROUND):
            _send(bench, lobby.host, room_id, i)
        return MESSAGES_AROUND / (bench.timer.now() - started)

    ratios = []
    for _ in range(rounds):
        before = alone()
        channel = bench.request(
            "POST", _path(lobby.room_id), split_body("invite", wait=False), lobby.token
        )
        if channel.code != 202:
            raise RuntimeError(f"the background split answered {channel.code}")
        op_id = channel.json_body["operation_id"]
        sent = 0
        started = bench.timer.now()
        while sent < MESSAGES_DURING:
            _send(bench, lobby.host, room_id, sent)
            sent += 1
            if sent % 10 == 0 and _operation_done(bench, lobby.token, op_id):
                break
        during = sent / (bench.timer.now() - started)
        if sent < MESSAGES_DURING:
            logger.warning("the split ended before %d messages", MESSAGES_DURING)
        # The rest of the split, alone; then the messages after it.
        while not _operation_done(bench, lobby.token, op_id):
            bench.pump(1.0)
        after = alone()
        logger.info(
            "messages before %.1f/s, during a split %.1f/s (%d sent), after %.1f/s",
            before,
            during,
            sent,
            after,
        )
        ratios.append(during / ((before + after) / 2))
        end_breakout(bench, lobby)
    return ratios


def run_messages(
    bench: Bench, host: str, token: str, unrelated_room: str, rounds: int, size: int
) -> dict[str, Any]:
    """``split_messages``: only the unrelated-messages figure, in a lobby of
    ``size`` (the whole ``split`` run at 10,000 takes an hour)."""
    bench.switch.set(Config.WITH)
    lobby = build_lobby(bench, host, token, size)
    bench.settle()
    return {
        "members": size,
        "unrelated_messages": Summary.of(
            unrelated_messages(bench, lobby, unrelated_room, rounds)
        ).to_json(),
    }


def fitted(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares ``y = slope * x + intercept``, and how well it fits."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    residual = sum(
        (y - slope * x - intercept) ** 2 for x, y in zip(xs, ys, strict=True)
    )
    total = sum((y - my) ** 2 for y in ys)
    return {
        "seconds_per_room_or_user": round(slope, 6),
        "intercept_seconds": round(intercept, 3),
        "r2": round(1 - residual / total, 4) if total else 1.0,
    }


def bound_sweep(bench: Bench, lobby: Parent) -> dict[str, Any]:
    """The API's ``move: invite`` split at each placement bound, and room
    creation one by one against ``max(BOUNDS)`` at once (Synapse's handler)."""
    placer = bench.switch.module.placer
    default = placer.concurrency
    seconds: dict[str, float] = {}
    try:
        for bound in BOUNDS:
            placer.concurrency = bound
            bench.pump()
            seconds[str(bound)] = round(
                timed(lambda: split_with_api(bench, lobby, "invite"), bench.timer), 3
            )
            end_breakout(bench, lobby)
            logger.info("placement bound %d: %.1fs", bound, seconds[str(bound)])
    finally:
        placer.concurrency = default
    creation = bench.hs.get_room_creation_handler()
    host = bench.requester(lobby.host)
    count = len(lobby.members) // ROOM_SIZE

    def one_by_one() -> None:
        for i in range(count):
            config = child_config(lobby, f"Room {i + 1}", None)
            bench.run(creation.create_room(host, config, ratelimit=False))

    async def at_once() -> None:
        queue = list(range(count))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                config = child_config(lobby, f"Room {i + 1}", None)
                await creation.create_room(host, config, ratelimit=False)

        await make_deferred_yieldable(
            defer.gatherResults(
                [run_in_background(worker) for _ in range(max(BOUNDS) // 2)],
                consumeErrors=True,
            )
        )

    sequential = timed(one_by_one, bench.timer)
    concurrent = timed(lambda: bench.run(at_once()), bench.timer)
    return {
        "placement_seconds": seconds,
        "rooms": count,
        "room_creation_seconds": {
            "one_by_one": round(sequential, 3),
            f"{max(BOUNDS) // 2}_at_once": round(concurrent, 3),
        },
    }


def run_bounds(bench: Bench, host: str, token: str, size: int) -> dict[str, Any]:
    """``split_bounds``: :func:`bound_sweep` in a lobby of ``size``."""
    bench.switch.set(Config.WITH)
    lobby = build_lobby(bench, host, token, size)
    bench.settle()
    return {"members": size, **bound_sweep(bench, lobby)}


def run(
    bench: Bench,
    host: str,
    token: str,
    unrelated_room: str,
    rounds: int,
    sizes: Sequence[int] = SIZES,
) -> dict[str, Any]:
    """The ``split`` figure (at the largest size) with its details."""
    bench.switch.set(Config.WITH)
    lobbies = {size: build_lobby(bench, host, token, size) for size in sizes}
    bench.settle()
    out: dict[str, Any] = {"members": max(sizes), "room_size": ROOM_SIZE}
    scaling: dict[str, Any] = {}
    for size in sizes:
        for mode in MODES:
            seconds = run_split(bench, lobbies[size], mode, rounds)
            api = Summary.of(seconds["api"])
            limit = Summary.of(seconds["limit"])
            figure = {
                "seconds": api.to_json(3),
                "limit_seconds": limit.to_json(3),
                "ratio": Summary.of(
                    paired_ratios(seconds["api"], seconds["limit"])
                ).to_json(),
                "rooms_per_second": round((size // ROOM_SIZE) / api.median, 2),
                "users_per_second": round((size - 1) / api.median, 1),
            }
            scaling.setdefault(mode, {})[str(size)] = figure
            if size == max(sizes):
                out[mode] = figure
            bench.settle(30)
    for mode in MODES:
        xs = [size // ROOM_SIZE + size - 1 for size in sizes]
        if len(xs) > 1:
            scaling[mode]["fit"] = fitted(
                xs, [scaling[mode][str(s)]["seconds"]["median"] for s in sizes]
            )
            scaling[mode]["fit_limit"] = fitted(
                xs, [scaling[mode][str(s)]["limit_seconds"]["median"] for s in sizes]
            )
    out["scaling"] = scaling
    out["unrelated_messages"] = Summary.of(
        unrelated_messages(bench, lobbies[max(sizes)], unrelated_room, rounds)
    ).to_json()
    return out
