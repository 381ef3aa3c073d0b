"""The README's demo: a real Synapse process with the module, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from synapse_process import free_port

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def check_demo(python: str, tmp_path: Path) -> None:
    """Run the demo with ``python``: it answers, then Ctrl-C leaves nothing.

    Run from ``tmp_path``, so that the module comes from where ``python``
    has it installed, not from this checkout.
    """
    port = free_port()
    workdir = tmp_path / "demo"
    demo = subprocess.Popen(
        [
            python,
            str(ROOT / "scripts" / "demo.py"),
            "--port",
            str(port),
            "--workdir",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    synapse_pid = 0
    try:
        output = []
        deadline = time.monotonic() + 60
        assert demo.stdout is not None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        text = "".join(output)
        match = re.search(r"Synapse \(pid (\d+)\)", text)
        if match:  # known before any other check, so cleanup can always use it
            synapse_pid = int(match.group(1))
        assert "Press Ctrl-C to stop." in text, text

        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/_matrix/client/versions", timeout=10
        ) as resp:
            assert "versions" in json.load(resp)
        log = (workdir / "homeserver.log").read_text()
        assert "synapse_breakout loaded" in log
        assert "/_synapse/client/breakout/v1" in text  # the curl lines to try
        # The break-out the demo started through the admin API, as printed.
        printed = text[text.index("Started a break-out") :]
        response = json.loads(printed[printed.index("\n{") : printed.index("\nReady.")])
        assert len(response["rooms"]) == 2
        assert sorted(len(r["users"]) for r in response["rooms"]) == [2, 3]
        assert response["failed_users"] == []
        assert synapse_pid and _alive(synapse_pid)
        assert "/broadcast" in text  # curl lines for the API's other endpoints
        assert "/deadline" in text and "/help" in text
        # The console's URL and the host's password, which signs in.
        match = re.search(
            r"\n  (http\S+/console/)\n  sign in as host, password (\S+)", text
        )
        assert match, text
        with urllib.request.urlopen(match.group(1), timeout=10) as resp:
            assert b"Break-out rooms" in resp.read()
        # Each user's password next to their token: a person signs in with it.
        password = re.search(r"^  alice +(\S+)  \S+$", text, re.M)
        assert password is not None, text
        for user, secret in (("host", match.group(2)), ("alice", password.group(1))):
            login = urllib.request.Request(
                f"http://127.0.0.1:{port}/_matrix/client/v3/login",
                data=json.dumps(
                    {
                        "type": "m.login.password",
                        "identifier": {"type": "m.id.user", "user": user},
                        "password": secret,
                    }
                ).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(login, timeout=10) as resp:
                assert json.load(resp)["user_id"].startswith(f"@{user}:")

        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert demo.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while _alive(synapse_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(synapse_pid), "Synapse outlived the demo"
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGINT)  # let it stop Synapse itself
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
        if synapse_pid and _alive(synapse_pid):
            os.kill(synapse_pid, signal.SIGKILL)
            pytest.fail("Synapse was left running")


@pytest.mark.skipif(
    bool(os.environ.get("SYNAPSE_POSTGRES")),
    reason="the demo runs on SQLite only: the SQLite run (tox -e py) covers it",
)
def test_demo_answers_then_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    check_demo(sys.executable, tmp_path)
