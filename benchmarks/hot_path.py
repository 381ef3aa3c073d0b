"""``hot_path``: message-send and join throughput with the module loaded over
without it.

One homeserver, one room per size (built once, in bulk), three configurations
switched between samples (:class:`~benchmarks.harness.ModuleSwitch`):

- without the module;
- with the module as it ships;
- with the module but without its dispatcher shortcut, which is what any
  module with a ``check_event_allowed`` callback costs (Synapse loads the
  room's whole state before every event to hand it to the callback).

What is timed is one ``m.room.message`` send by a member of the room through
Synapse's event creation handler: what every local send goes through (client
API, admin API, modules), without the HTTP layer, which would only add the
same constant to every configuration; and (``hot_path_joins``) one join of a
member who just left, through Synapse's room member handler (what ``/join``
and the admin join API go through; the leave before it is not timed). A join
is what the ``room_capacity`` rule looks at (hooks/room_capacity.py): in a
room that is not a capped break-out room it must cost nothing. The configuration changes at every
send (A B C, B C A, ...); a round is a few sends of each, and its figure per
configuration the mean time per send. Synapse's periodic jobs (for example
the rotation of push actions, which in a room of 20,000 local members is
large) run between rounds, not inside them: they cost the same in every
configuration, and inside a round they would only add noise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from synapse.api.errors import SynapseError
from synapse.types import UserID

from benchmarks.harness import Bench, Config, bulk_join, joined_members
from benchmarks.stats import Summary, alternate, paired_ratios
from synapse_breakout.config import UNSTABLE_EVENT_TYPE

logger = logging.getLogger(__name__)

ROOM_SIZES = (10, 2_000, 20_000)
CONFIGS = (Config.WITHOUT, Config.WITH, Config.NO_SHORTCUT)


def messages_per_round(size: int) -> int:
    """Sends of each configuration per round: a second or more of work."""
    if size <= 100:
        return 40
    if size <= 5_000:
        return 8
    return 3


def build_rooms(
    bench: Bench, creator: str, sizes: Sequence[int] = ROOM_SIZES
) -> dict[int, str]:
    """One public room per size, ``size`` members including ``creator``."""
    rooms: dict[int, str] = {}
    handler = bench.hs.get_room_creation_handler()
    for size in sizes:
        started = time.perf_counter()
        room_id, _, _ = bench.run(
            handler.create_room(
                bench.requester(creator),
                {"preset": "public_chat", "name": f"{size} members"},
                ratelimit=False,
            )
        )
        members = [f"@member{size}_{i}:{bench.server_name}" for i in range(size - 1)]
        bench.run(bulk_join(bench.hs, room_id, members))
        joined = bench.run(joined_members(bench.hs, room_id))
        if joined != size:
            raise RuntimeError(f"room of {size}: {joined} members joined")
        logger.info(
            "room of %d members built in %.1fs", size, time.perf_counter() - started
        )
        rooms[size] = room_id
    return rooms


def check_switch(bench: Bench, creator: str, room_id: str) -> None:
    """Enforcement is on with the module, off without it.

    A break-out event with a bad state key must be refused with the module
    (with or without the shortcut) and pass without it. Nothing is sent: the
    check runs when the event is created.
    """
    handler = bench.hs.get_event_creation_handler()
    event = {
        "type": UNSTABLE_EVENT_TYPE,
        "room_id": room_id,
        "sender": creator,
        "state_key": "not empty",
        "content": {UNSTABLE_EVENT_TYPE: {}},
    }
    for config in CONFIGS:
        bench.switch.set(config)
        try:
            bench.run(handler.create_event(bench.requester(creator), event))
            refused = False
        except SynapseError:
            refused = True
        if refused != (config is not Config.WITHOUT):
            raise RuntimeError(f"the module switch does not work: {config.value}")
    bench.switch.set(Config.WITH)


def _send_message(bench: Bench, sender: str, room_id: str, body: str) -> None:
    handler = bench.hs.get_event_creation_handler()
    bench.run(
        handler.create_and_send_nonmember_event(
            bench.requester(sender),
            {
                "type": "m.room.message",
                "room_id": room_id,
                "sender": sender,
                "content": {"msgtype": "m.text", "body": body},
            },
        )
    )


def _membership(bench: Bench, user: str, room_id: str, action: str) -> None:
    handler = bench.hs.get_room_member_handler()
    bench.run(
        handler.update_membership(
            bench.requester(user), UserID.from_string(user), room_id, action
        )
    )


def _timed_message(
    bench: Bench, creator: str, room_id: str, size: int
) -> Callable[[Config], float]:
    def measure(config: Config) -> float:
        bench.switch.set(config)
        started = bench.timer.now()
        _send_message(bench, creator, room_id, config.name)
        return bench.timer.now() - started

    return measure


def _timed_join(
    bench: Bench, creator: str, room_id: str, size: int
) -> Callable[[Config], float]:
    member = f"@member{size}_0:{bench.server_name}"

    def measure(config: Config) -> float:
        bench.switch.set(config)
        _membership(bench, member, room_id, "leave")
        started = bench.timer.now()
        _membership(bench, member, room_id, "join")
        return bench.timer.now() - started

    return measure


def run(
    bench: Bench, creator: str, rooms: Mapping[int, str], rounds: int
) -> dict[str, Any]:
    """Measure every room; returns the ``hot_path`` figures (messages) and
    ``hot_path_joins`` (joins), with their details."""
    check_switch(bench, creator, rooms[min(rooms)])
    results = _run(bench, creator, rooms, rounds, _timed_message, "hot_path")
    results.update(_run(bench, creator, rooms, rounds, _timed_join, "hot_path_joins"))
    return results


def _run(
    bench: Bench,
    creator: str,
    rooms: Mapping[int, str],
    rounds: int,
    timed: Callable[[Bench, str, str, int], Callable[[Config], float]],
    key: str,
) -> dict[str, Any]:
    with_module: dict[str, Any] = {}
    without_shortcut: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for size, room_id in sorted(rooms.items()):
        measure = timed(bench, creator, room_id, size)

        def between_rounds() -> None:
            # Timers that are due run now, untimed; none comes due during a
            # round (the clock is frozen: the sends need none).
            bench.clock.unfreeze()
            bench.pump()
            bench.clock.freeze()

        bench.clock.freeze()
        try:
            seconds = alternate(
                CONFIGS, rounds, messages_per_round(size), measure, between_rounds
            )
        finally:
            bench.clock.unfreeze()
        bench.switch.set(Config.WITH)
        # Throughput ratio = time per message without / time per message with.
        ratio = Summary.of(paired_ratios(seconds[Config.WITHOUT], seconds[Config.WITH]))
        bare = Summary.of(
            paired_ratios(seconds[Config.WITHOUT], seconds[Config.NO_SHORTCUT])
        )
        with_module[str(size)] = ratio.to_json()
        without_shortcut[str(size)] = bare.to_json()
        details[str(size)] = {
            "ms_per_event": {
                config.name.lower(): Summary.of(
                    [s * 1000 for s in seconds[config]]
                ).to_json(2)
                for config in CONFIGS
            },
            "per_round": messages_per_round(size),
            "rounds_ms": {
                config.name.lower(): [round(s * 1000, 2) for s in seconds[config]]
                for config in CONFIGS
            },
        }
        logger.info("%s %d: %s", key, size, ratio.show())
    return {
        key: with_module,
        f"{key}_without_shortcut": without_shortcut,
        f"{key}_details": details,
    }
