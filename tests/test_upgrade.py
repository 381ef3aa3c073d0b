"""Upgrading in place: what the previous release wrote is still served.

The previous release is the code of commit ``PREVIOUS`` (0.1.0), taken from
this repository's history at test time (``git archive``) and put first on the
``PYTHONPATH`` of a real Synapse process. It writes, on the run's database
(SQLite in ``tox -e py``, PostgreSQL in ``-e postgres``): an active break-out
with a far deadline, one with a near deadline, a ``txn_id`` answer and a flag.
Then the same server starts with this code, and everything is served: GET,
the deadline (which passes under the new code: ended once), the first answer
for the repeated ``txn_id``, and the flag. Starting again is a no-op (the schema
steps are idempotent), and a database whose schema is newer than the code
stops Synapse (exit status 1) with a clear error, and is left as it is.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from synapse_process import SynapseProcess, free_port, postgres_database
from test_e2e import engines

from synapse_breakout.journal.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
#: The release operators run before this one (0.1.0).
PREVIOUS = "ecd0143"
BASE = "/_synapse/client/breakout/v1"
UNSTABLE = "org.matrix.msc3985.breakout"


def previous_release(dest: Path) -> Path:
    """``synapse_breakout/`` of ``PREVIOUS``, extracted under ``dest``."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", PREVIOUS, "synapse_breakout"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        if os.environ.get("BREAKOUT_REQUIRE_UPGRADE") == "1":
            raise
        pytest.skip(f"no git history with {PREVIOUS} here: {e}")
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def previous_release_runs_here() -> None:
    """Skip unless the installed Synapse is one ``PREVIOUS`` supported.

    0.1.0 required ``matrix-synapse>=1.163.0,<1.164`` (its ``setup.cfg``):
    on an older Synapse (``tox -e lowest``) no operator ran it, so there is
    nothing to upgrade from. Read from the release itself, not restated here.
    """
    from importlib.metadata import version

    from packaging.requirements import Requirement

    try:
        cfg = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{PREVIOUS}:setup.cfg"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return  # previous_release() skips or fails with the reason
    # The first one is install_requires'; the test extra's comes later.
    line = next(
        x.strip() for x in cfg.splitlines() if x.strip().startswith("matrix-synapse")
    )
    supported = Requirement(line).specifier
    installed = version("matrix-synapse")
    if installed not in supported:
        pytest.skip(
            f"{PREVIOUS} (0.1.0) supported matrix-synapse{supported}; "
            f"{installed} is installed, so nobody upgrades from it here"
        )


class Server:
    """One homeserver whose module code can be swapped between starts."""

    def __init__(self, workdir: Path, engine: str):
        self.engine = engine
        self.database = (
            postgres_database(f"breakout_upgrade_{os.getpid()}")
            if engine == "postgres"
            else None
        )
        self.synapse = SynapseProcess(
            workdir,
            port=free_port(),
            module_config={"recovery_interval_seconds": 2},
            database=self.database,
        )

    def start(self, code: Path | None) -> None:
        """Start with the module of ``code`` (None: the installed one)."""
        self.synapse.env = {"PYTHONPATH": str(code)} if code else {}
        self.synapse.start()

    def api(self, method: str, path: str, tok: str, body: Any = None) -> Any:
        return self.synapse.request(method, BASE + path, tok, body)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """A query on the homeserver's database, outside Synapse."""
        if self.database is None:
            conn: Any = sqlite3.connect(self.synapse.workdir / "homeserver.db")
            query = query.replace("%s", "?")
        else:
            import psycopg2

            conn = psycopg2.connect(
                dbname=self.database["args"]["database"],
                **{
                    k: v
                    for k, v in self.database["args"].items()
                    if k in ("user", "password", "host", "port")
                },
            )
        try:
            cur = conn.cursor()
            cur.execute(query, args)
            rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()


@pytest.fixture(params=engines())
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix="breakout-upgrade-"))
    s = None
    try:
        s = Server(workdir / "hs", request.param)
        yield s
    finally:
        if s is not None:
            s.synapse.stop()
        if not os.environ.get("KEEP_E2E"):
            shutil.rmtree(workdir, ignore_errors=True)


def test_what_the_previous_release_wrote_is_served(
    server: Server, tmp_path: Path
) -> None:
    previous_release_runs_here()
    old = previous_release(tmp_path / "previous")
    probe = subprocess.run(
        [sys.executable, "-c", "import synapse_breakout as m; print(m.__version__)"],
        env={**os.environ, "PYTHONPATH": str(old)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "0.1.0", "the previous release is the one run"

    # --- the previous release writes ------------------------------------------
    s = server
    s.start(old)
    hs = s.synapse
    _, admin = hs.register("admin", admin=True)
    host, host_tok = hs.register("host")
    members = [hs.register(f"m{i}") for i in range(3)]
    parents = []
    for _ in range(2):
        parent = hs.create_room(host_tok, preset="public_chat")
        for _, tok in members:
            hs.join(tok, parent)
        parents.append("/rooms/" + urllib.parse.quote(parent))
    far, near = parents
    start_far = {
        "acting_user": host,
        "auto_assign": {"rooms": 2, "users": "joined"},
        "duration_seconds": 3600,
        "txn_id": "far",
    }
    first = s.api("POST", far, admin, start_far)
    near_started = s.api(
        "POST",
        near,
        admin,
        {"acting_user": host, "rooms": [{"name": "A"}], "duration_seconds": 25},
    )
    # A flag: a member (no power) sends a break-out event where it is allowed
    # (a private room: enforce_power_level_in is "public").
    flagged_room = hs.create_room(
        host_tok,
        preset="private_chat",
        invite=[members[0][0]],
        power_level_content_override={"events": {UNSTABLE: 0}},
    )
    hs.join(members[0][1], flagged_room)
    flagged = hs.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{urllib.parse.quote(flagged_room)}/state/{UNSTABLE}/",
        members[0][1],
        {UNSTABLE: {"!elsewhere:other.example": {"via": ["other.example"]}}},
    )["event_id"]
    before = {p: s.api("GET", p, admin) for p in parents}
    flags_before = s.api("GET", "/flags", admin)["flags"]
    assert [f["event_id"] for f in flags_before] == [flagged]
    [(version_before,)] = s.sql("SELECT version FROM breakout_schema_version")
    hs.stop()

    # --- this code, on the same database ----------------------------------------
    s.start(None)
    far_now = s.api("GET", far, admin)
    assert far_now["active"] and far_now["event_id"] == before[far]["event_id"]
    assert far_now["ends_at"] == first["ends_at"]
    # The rooms as they were, each now marked as one the break-out made, with
    # no capacity (0.3.0) and nobody it would count (the host is a moderator).
    assert sorted(
        (
            {**r, "managed": True, "capacity": None, "counted_members": 0}
            for r in before[far]["rooms"]
        ),
        key=lambda r: r["room_id"],
    ) == sorted(far_now["rooms"], key=lambda r: r["room_id"])
    # The txn_id answer: the first response, nothing new.
    assert s.api("POST", far, admin, start_far) == first
    assert s.api("GET", "/flags", admin)["flags"] == flags_before
    [(version_after,)] = s.sql("SELECT version FROM breakout_schema_version")
    assert version_before <= version_after == SCHEMA_VERSION
    # The near deadline passes under this code: the break-out ends, once.
    child = near_started["rooms"][0]["room_id"]
    deadline = time.monotonic() + 60
    while s.api("GET", near, admin)["active"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not s.api("GET", near, admin)["active"]

    def time_is_up() -> list[str]:
        page = hs.request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(child)}/messages?dir=b",
            host_tok,
        )
        return [
            e["event_id"]
            for e in page["chunk"]
            if e["type"] == "m.room.message"
            and e["content"]["body"].startswith("Time is up")
        ]

    while not time_is_up() and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    assert len(time_is_up()) == 1
    hs.stop()

    # --- the schema steps again: nothing changes ---------------------------------
    s.start(None)
    assert s.api("GET", far, admin)["event_id"] == before[far]["event_id"]
    assert s.sql("SELECT version FROM breakout_schema_version") == [(SCHEMA_VERSION,)]
    hs.stop()

    # --- a newer schema than this code: Synapse stops, the tables are left ----
    newer = SCHEMA_VERSION + 1
    s.sql("UPDATE breakout_schema_version SET version = %s", newer)
    try:
        s.start(None)  # it may answer for a moment before the check ends it
    except RuntimeError as e:
        assert "Synapse exited with 1" in str(e)
    assert hs.proc is not None
    assert hs.proc.wait(timeout=60) == 1, "the process exits with an error"
    message = (
        f"synapse_breakout's tables are at schema version {newer}, newer than "
        f"this module's {SCHEMA_VERSION}: upgrade the module"
    )
    assert f"Refusing to run: {message}" in hs.log_path.read_text()
    stderr = hs.log_path.with_suffix(".stdout.log").read_text()
    assert f"synapse_breakout refuses to run: {message}" in stderr
    assert s.sql("SELECT version FROM breakout_schema_version") == [(newer,)]
