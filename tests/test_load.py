"""Many hosts at once, small (SPEC section 11), on a real Synapse process.

Every parent's break-out starts at once (half ``wait: true``, half ``wait:
false`` polled), while members chat; then every break-out gets a move, a
broadcast and a deadline change at once; then every one ends at once. After
each phase the invariants hold: every start answered and placed everyone
once, each moved user is where the move put them, no invitation is pending
after the ends; and at the end no room is an orphan, no lock is left and no
request got a 5xx. The scenario is scripts/load_scenario.py; its figures
(at 30 parents of 20) are benchmarks/load.py's (docs/performance.md).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from load_scenario import HOMESERVER, Chat, Conference, Recorder, Scenario, Shape
from synapse_process import SynapseProcess, free_port, postgres_database
from test_e2e import engines

SHAPE = Shape(parents=4, members=5, rooms=2, chatters=3)


@pytest.mark.parametrize("engine", engines())
def test_many_hosts_at_once_keep_every_invariant(engine: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="breakout-load-"))
    database: dict[str, Any] = (
        postgres_database(f"breakout_load_{os.getpid()}")
        if engine == "postgres"
        else {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}}
    )
    synapse = SynapseProcess(
        workdir, port=free_port(), database=database, extra_config=HOMESERVER
    )
    try:
        synapse.start()
        rec = Recorder(synapse)
        conference = Conference(synapse, SHAPE)
        scenario = Scenario(rec, conference, database)
        with Chat(rec, conference.hall, conference.chatters):
            _, started = scenario.start_all("load")
            # wait: true answers 200, or 202 if not done within 50 s.
            assert {s.status for s in started if s.wait} <= {200, 202}
            assert {s.status for s in started if not s.wait} == {202}
            assert scenario.check_started(started) == []
            scenario.change_all(started)
            assert scenario.check_moved() == []
            scenario.end_all()
            assert scenario.check_ended() == []
        changes = [c for c in rec.calls if c.kind in ("move", "broadcast", "deadline")]
        assert len(changes) == 3 * SHAPE.parents
        assert {c.status for c in changes} == {200}
        assert {c.status for c in rec.calls if c.kind == "end"} == {200}
        assert rec.seconds("message", 0, math.inf), "nobody chatted"
        assert scenario.check_no_orphans() == []
        assert scenario.check_no_locks() == []
        assert rec.server_errors() == []
    finally:
        synapse.stop()
        if not os.environ.get("KEEP_E2E"):
            shutil.rmtree(workdir, ignore_errors=True)
