#!/usr/bin/env python3
"""The demo: a real Synapse with the module, on 127.0.0.1:8008 and SQLite.

It registers a server admin and a few users, makes a public parent room with
them in it, prints what to try next, and runs until Ctrl-C, when it stops
Synapse and leaves no process behind. Its files stay in ``.demo/`` (ignored by
git) until the next run, which starts afresh.

However it is stopped (Ctrl-C, also when its output went to a pipe that is
gone, as ``scripts/demo | tee demo.log`` leaves it; SIGTERM; the terminal
closed; even SIGKILL, on Linux), Synapse stops with it. A port already in use
is a one-line error that names it and what holds it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import threading
import urllib.parse
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synapse_process import SynapseProcess, port_holder

ROOT = Path(__file__).resolve().parent.parent
BASE_PATH = "/_synapse/client/breakout/v1"
USERS = ("alice", "bob", "carol", "dave", "erin", "frank")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8008)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".demo")
    args = parser.parse_args()

    holder = port_holder(args.port)
    if holder is not None:
        print(
            f"demo: port {args.port} of 127.0.0.1 is in use by {holder}: stop it, "
            "or give another port with --port",
            file=sys.stderr,
        )
        return 1
    # Every run starts from an empty server.
    shutil.rmtree(args.workdir, ignore_errors=True)
    synapse = SynapseProcess(args.workdir, port=args.port, die_with_parent=True)
    synapse.write_config()

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    say(f"Starting Synapse with synapse_breakout on {synapse.base_url} ...")
    try:
        synapse.start()
        show_next_steps(synapse, set_up(synapse))
        stop.wait()
    finally:
        say("\nStopping Synapse ...")
        synapse.stop()
        say("Stopped.")
    return 0


def say(text: str) -> None:
    """Print, unless the output is gone (a closed pipe, a closed terminal):
    then nothing more is printed, and stopping goes on regardless."""
    try:
        print(text, flush=True)
    except OSError:
        # Whatever is left in the buffer goes nowhere, instead of failing
        # again when Python flushes it at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def set_up(synapse: SynapseProcess) -> dict[str, object]:
    """Users and a public parent room; returns what the next steps need."""
    tokens = {}
    # Passwords too: sign in with any Matrix client to see what a participant sees.
    passwords = {name: secrets.token_hex(4) for name in ("admin", *USERS)}
    admin_id, tokens["admin"] = synapse.register(
        "host", admin=True, password=passwords["admin"]
    )
    users = {}
    for name in USERS:
        users[name], tokens[name] = synapse.register(name, password=passwords[name])
    # The creator outranks everyone (room version 12); alice is a moderator.
    room_id = synapse.create_room(
        tokens["admin"],
        preset="public_chat",
        room_version="12",  # the default of newer Synapse releases only
        name="Demo plenary",
        power_level_content_override={"users": {users["alice"]: 50}},
    )
    for name in USERS:
        synapse.join(tokens[name], room_id)
    # A break-out through the module's admin API: two rooms, members spread
    # evenly (alice, a moderator, stays in the main room), ending in 30 minutes.
    breakout = synapse.request(
        "POST",
        f"{BASE_PATH}/rooms/{urllib.parse.quote(room_id)}",
        tokens["admin"],
        {
            "auto_assign": {"rooms": 2, "users": "joined"},
            "duration_seconds": 1800,
            "txn_id": "demo",
        },
    )
    return {
        "admin_id": admin_id,
        "users": users,
        "tokens": tokens,
        "passwords": passwords,
        "room_id": room_id,
        "breakout": breakout,
    }


def show_next_steps(synapse: SynapseProcess, demo: dict[str, object]) -> None:
    tokens, passwords, breakout = demo["tokens"], demo["passwords"], demo["breakout"]
    assert isinstance(tokens, dict) and isinstance(passwords, dict)
    assert isinstance(breakout, dict)
    room = urllib.parse.quote(str(demo["room_id"]))
    # Someone assigned to the first break-out room, to ask for help from it.
    table = breakout["rooms"][0]
    helper = next(n for n, u in demo["users"].items() if u in table["users"])  # type: ignore[attr-defined]
    base = f"{synapse.base_url}{BASE_PATH}"
    say(json.dumps({k: demo[k] for k in ("admin_id", "users", "room_id")}, indent=2))
    say("\nStarted a break-out through the admin API (POST .../rooms/{room}):")
    say(json.dumps(demo["breakout"], indent=2))
    say(
        f"""
Ready. Synapse (pid {synapse.proc.pid if synapse.proc else "?"}) logs to {synapse.log_path}

Sign in with any Matrix client at {synapse.base_url} (user name, password),
or use the access token:
"""
        + "\n".join(
            f"  {'host' if name == 'admin' else name:6} {passwords[name]}  {token}"
            for name, token in tokens.items()
        )
        + f"""

Try (a user at power level 0 in a public room may not send a break-out):
  curl -s -X PUT -H 'Authorization: Bearer {tokens["bob"]}' \\
    '{synapse.base_url}/_matrix/client/v3/rooms/{room}/state/org.matrix.msc3985.breakout/' \\
    -d '{{"org.matrix.msc3985.breakout": {{}}}}'

The admin API (docs/admin_api.md): see the break-out, broadcast, end it:
  curl -s -H 'Authorization: Bearer {tokens["admin"]}' '{base}/rooms/{room}'
  curl -s -X POST -H 'Authorization: Bearer {tokens["admin"]}' \\
    '{base}/rooms/{room}/broadcast' -d '{{"body": "5 minutes left"}}'
  curl -s -X DELETE -H 'Authorization: Bearer {tokens["admin"]}' \\
    '{base}/rooms/{room}' -d '{{"message": "Back to the main room"}}'

The break-out ends in 30 minutes (warnings at 5 and 1 minutes left). Extend it:
  curl -s -X POST -H 'Authorization: Bearer {tokens["admin"]}' \
    '{base}/rooms/{room}/deadline' -d '{{"add_seconds": 600}}'

Ask for help as {helper}, once they have joined their room {table["name"]}:
  curl -s -X POST -H 'Authorization: Bearer {tokens[helper]}' \
    '{base}/rooms/{room}/help' -d '{{"room_id": "{table["room_id"]}"}}'

The host console (docs/console.md), in a browser:
  {synapse.base_url}/_synapse/client/breakout/console/
  sign in as host, password {passwords["admin"]}

Press Ctrl-C to stop."""
    )


if __name__ == "__main__":
    sys.exit(main())
