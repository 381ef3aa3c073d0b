"""Messages in another room during a split, on a real Synapse process.

``python -m benchmarks.live_split [--users N] [--messages M] [--rounds R]
[--json FILE]``: the harness's ``split.unrelated_messages`` figure again, on a
real reactor instead of Synapse's test clock (docs/performance.md, "Giving
way"). Nothing here imports Synapse's test harness.

Each round starts a fresh Synapse (SQLite, the module loaded, rate limits
lifted) twice: once as shipped (``paced``) and once with the module's pacer
switched off (``unpaced``, :class:`NoPacing`, the behaviour before pacing.py),
taking turns which goes first. In each, a client in this process:

1. times a ``wait: false`` split of a parent into rooms of 50, inviting ``N``
   users, with nothing else going on (``split_alone_seconds``: what the pacer
   costs a split on an idle server; compare the two variants). That
   break-out stays running (its ejection check runs every 5 s from then on);
2. sends ``M`` messages one after the other to a room of its own, as a user
   of its own, and times them (``before``);
3. starts the same split of another parent and at once sends ``M`` messages
   again, the same way, until they are sent or the split has its answer
   (``during``); ``split_seconds`` is from the ``POST`` to the answer;
4. once the split has its answer, sends ``M`` messages again (``after``).

Messages alone go at a pace that drifts and jitters by 10 to 20% from one
batch of 300 to the next on this machine, with nothing else going on: so the
figure is ``during`` over the mean of ``before`` and ``after`` (messages per
second), per round; the median with min and max, as the other figures. Wall
time: Synapse and this client are two processes, on two CPUs here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks import ROOT
from benchmarks.stats import Summary

sys.path.insert(0, str(ROOT / "scripts"))
from synapse_process import MODULE, SynapseProcess, free_port

logger = logging.getLogger("benchmarks.live_split")

API = "/_synapse/client/breakout/v1"
ROOM_SIZE = 50
VARIANTS = ("paced", "unpaced")
#: Between a split's answer and the next messages: the last invites' tails.
SETTLE_SECONDS = 2.0


class NoPacing:
    """A second module that switches the break-out module's pacer off (every
    step goes at once), for the ``unpaced`` side only."""

    def __init__(self, config: dict[str, Any], api: Any):
        from synapse_breakout.rooms import pacing

        @contextlib.asynccontextmanager
        async def at_once(_self: Any, _breakout: str) -> AsyncIterator[None]:
            yield

        pacing.Pacer.step = at_once  # type: ignore[method-assign,assignment]

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config


class Split:
    """One ``wait: false`` split under way."""

    def __init__(self, synapse: SynapseProcess, token: str, op_id: str, began: float):
        self._synapse = synapse
        self._token = token
        self._path = f"{API}/operations/{urllib.parse.quote(op_id)}"
        self._began = began
        self.seconds = 0.0

    def answered(self) -> bool:
        return (
            self._synapse.request("GET", self._path, self._token)["response"]
            is not None
        )

    def wait(self, users: int) -> None:
        """Until the answer (``seconds``: from the ``POST``); every user placed."""
        while not self.answered():
            time.sleep(0.25)
        self.seconds = time.perf_counter() - self._began
        final = self._synapse.request("GET", self._path, self._token)
        if final["progress"]["users_placed"] != users:
            raise RuntimeError(f"the split placed {final['progress']}")


def _send_all(
    synapse: SynapseProcess, token: str, room: str, count: int, tag: str, done: Any
) -> list[float]:
    """Send up to ``count`` messages one after the other; each one's seconds.
    Stops early once ``done()`` (asked every 25 messages) is true."""
    quoted = urllib.parse.quote(room)
    seconds: list[float] = []
    for i in range(count):
        started = time.perf_counter()
        synapse.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{quoted}/send/m.room.message/{tag}-{i}",
            token,
            {"msgtype": "m.text", "body": f"message {i}"},
        )
        seconds.append(time.perf_counter() - started)
        if i % 25 == 24 and done():
            break
    return seconds


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def one_round(workdir: Path, variant: str, users: int, messages: int) -> dict[str, Any]:
    """One fresh Synapse, one variant: messages alone, then during a split."""
    modules = [
        {
            "module": MODULE,
            # Invitees need not exist (an invite does not ask): no sign-ups;
            # 10,000 users in rooms of 50 make 200 rooms.
            "config": {"users_must_be_members": False, "max_child_rooms": 200},
        }
    ]
    if variant == "unpaced":
        modules.append({"module": "benchmarks.live_split.NoPacing", "config": {}})
    synapse = SynapseProcess(
        workdir, port=free_port(), extra_config={"modules": modules}
    )
    synapse.env["PYTHONPATH"] = str(ROOT)
    synapse.start()
    try:
        _, host = synapse.register("host", admin=True)
        _, chatter = synapse.register("chatter")
        room = synapse.create_room(chatter, preset="private_chat")
        _send_all(synapse, chatter, room, 50, "warm", lambda: False)
        invitees = [f"@p{i}:{synapse.server_name}" for i in range(users)]

        def split(parent: str) -> Split:
            body = {
                "auto_assign": {"users": invitees, "room_size": ROOM_SIZE},
                "move": "invite",
                "wait": False,
            }
            op_id = synapse.request(
                "POST", f"{API}/rooms/{urllib.parse.quote(parent)}", host, body
            )["operation_id"]
            return Split(synapse, host, op_id, time.perf_counter())

        alone_split = split(synapse.create_room(host, preset="public_chat"))
        alone_split.wait(users)
        time.sleep(SETTLE_SECONDS)

        def rate(tag: str, done: Any) -> tuple[float, list[float]]:
            started = time.perf_counter()
            sent = _send_all(synapse, chatter, room, messages, tag, done)
            return len(sent) / (time.perf_counter() - started), sent

        before_rate, before = rate("before", lambda: False)
        during_split = split(synapse.create_room(host, preset="public_chat"))
        during_rate, during = rate("during", during_split.answered)
        during_split.wait(users)
        time.sleep(SETTLE_SECONDS)
        after_rate, after = rate("after", lambda: False)
    finally:
        synapse.stop()
    alone_rate = (before_rate + after_rate) / 2
    result = {
        "alone_per_second": round(alone_rate, 1),
        "before_per_second": round(before_rate, 1),
        "after_per_second": round(after_rate, 1),
        "during_per_second": round(during_rate, 1),
        "ratio": during_rate / alone_rate,
        "sent_during": len(during),
        "p95_ms_alone": round(1000 * _percentile(before + after, 0.95), 1),
        "p95_ms_during": round(1000 * _percentile(during, 0.95), 1),
        "split_alone_seconds": round(alone_split.seconds, 1),
        "split_seconds": round(during_split.seconds, 1),
    }
    logger.info("%s: %s", variant, result)
    return result


def run(users: int, messages: int, rounds: int) -> dict[str, Any]:
    """Every round of both variants; the figures."""
    seen: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    base = Path(tempfile.mkdtemp(prefix="breakout-live-split-"))
    try:
        for r in range(rounds):
            order = VARIANTS if r % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                seen[variant].append(
                    one_round(base / f"{variant}-{r}", variant, users, messages)
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    out: dict[str, Any] = {"users": users, "messages": messages, "rounds": rounds}
    for variant, results in seen.items():
        out[variant] = {
            key: Summary.of([r[key] for r in results]).to_json(3)
            for key in (
                "ratio",
                "alone_per_second",
                "before_per_second",
                "after_per_second",
                "during_per_second",
                "p95_ms_alone",
                "p95_ms_during",
                "split_alone_seconds",
                "split_seconds",
            )
        }
        out[variant]["sent_during"] = [r["sent_during"] for r in results]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.live_split", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--users", type=int, default=5000, metavar="N")
    parser.add_argument("--messages", type=int, default=600, metavar="M")
    parser.add_argument("--rounds", type=int, default=3, metavar="R")
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = run(args.users, args.messages, args.rounds)
    print(json.dumps(out, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
