"""The README's demo: a real Synapse process with the module, stopped by Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from synapse_process import free_port, port_holder

# The demo runs on SQLite whatever the tests use: once, in tox -e py.
pytestmark = pytest.mark.no_database

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Demo:
    """``scripts/demo.py`` started with its output piped to this test."""

    def __init__(self, python: str, tmp_path: Path):
        self.port = free_port()
        self.workdir = tmp_path / "demo"
        # Run from ``tmp_path``, so that the module comes from where
        # ``python`` has it installed, not from this checkout.
        self.proc = subprocess.Popen(
            [
                python,
                str(ROOT / "scripts" / "demo.py"),
                "--port",
                str(self.port),
                "--workdir",
                str(self.workdir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        self.synapse_pid = 0
        self.text = ""

    def wait_until_ready(self) -> str:
        """Its output up to "Press Ctrl-C to stop."; Synapse's pid noted."""
        output = []
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        self.text = "".join(output)
        match = re.search(r"Synapse \(pid (\d+)\)", self.text)
        if match:  # known before any other check, so cleanup can always use it
            self.synapse_pid = int(match.group(1))
        assert "Press Ctrl-C to stop." in self.text, self.text
        assert self.synapse_pid and _alive(self.synapse_pid)
        return self.text

    def assert_nothing_left(self) -> None:
        """Synapse is gone and the port is free again."""
        deadline = time.monotonic() + 30
        while _alive(self.synapse_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(self.synapse_pid), "Synapse outlived the demo"
        assert port_holder(self.port) is None

    def clean_up(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # let it stop Synapse itself
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.synapse_pid and _alive(self.synapse_pid):
            os.kill(self.synapse_pid, signal.SIGKILL)
            pytest.fail("Synapse was left running")


def check_demo(python: str, tmp_path: Path) -> None:
    """Run the demo with ``python``: it answers, then Ctrl-C leaves nothing."""
    demo = Demo(python, tmp_path)
    port, workdir = demo.port, demo.workdir
    try:
        text = demo.wait_until_ready()
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

        demo.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert demo.proc.wait(timeout=60) == 0
        demo.assert_nothing_left()
    finally:
        demo.clean_up()


@pytest.mark.skipif(
    bool(os.environ.get("SYNAPSE_POSTGRES")),
    reason="the demo runs on SQLite only: the SQLite run (tox -e py) covers it",
)
def test_demo_answers_then_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    check_demo(sys.executable, tmp_path)


SQLITE_ONLY = pytest.mark.skipif(
    bool(os.environ.get("SYNAPSE_POSTGRES")),
    reason="the demo runs on SQLite only: the SQLite run (tox -e py) covers it",
)


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("how", "sig", "close_pipe", "exit_code"),
    [
        # `scripts/demo | tee demo.log` and Ctrl-C: tee is gone first.
        ("ctrl_c_with_the_pipe_gone", signal.SIGINT, True, 0),
        ("sigterm", signal.SIGTERM, False, 0),
        ("terminal_closed", signal.SIGHUP, True, 0),
        ("sigkill", signal.SIGKILL, False, -signal.SIGKILL),
    ],
)
def test_however_the_demo_stops_nothing_is_left_running(
    tmp_path: Path, how: str, sig: int, close_pipe: bool, exit_code: int
) -> None:
    demo = Demo(sys.executable, tmp_path)
    try:
        demo.wait_until_ready()
        if close_pipe:
            assert demo.proc.stdout is not None
            demo.proc.stdout.close()
        demo.proc.send_signal(sig)
        assert demo.proc.wait(timeout=60) == exit_code
        demo.assert_nothing_left()
    finally:
        demo.clean_up()


@SQLITE_ONLY
def test_a_held_port_is_one_line_naming_it_and_its_holder(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "demo.py"),
                "--port",
                str(port),
                "--workdir",
                str(tmp_path / "demo"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} " in lines[0]
    assert f"pid {os.getpid()} (" in lines[0]  # this test holds it
    assert not (tmp_path / "demo").exists()  # nothing was started or written
