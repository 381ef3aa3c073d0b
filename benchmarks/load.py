"""Many hosts at once: break-outs of many parents at the same moment while
members chat, on a real Synapse process with PostgreSQL (SPEC section 11;
docs/performance.md, "Many hosts at once"). Nothing here imports Synapse's
test harness.

``python -m benchmarks.load [--parents 30] [--members 20] [--rooms 4]
[--chatters 15] [--chat-seconds 30] [--database NAME] [--json FILE]``

One fresh Synapse on a fresh PostgreSQL database (``SYNAPSE_POSTGRES_HOST``,
``_PORT``, ``_USER``, ``_PASSWORD``; dropped at the end), the module as
shipped, rate limits lifted; the conference of scripts/load_scenario.py. The
same work twice in one run, every parent at once in each phase:

1. **alone**: the starts (4 rooms each, auto-assigned; half ``wait: true``,
   half ``wait: false`` polled every 0.5 s), then a move, a broadcast and a
   deadline change per break-out, then the ends (half ``close_rooms``);
2. **with messages**: the chatters post one message a second each for
   ``--chat-seconds`` (*before*), then the same three phases while they go
   on, then ``--chat-seconds`` more (*after*).

Between phases the process is left alone ``SETTLE_SECONDS`` (the start's
notices go out after its answer). The invariants are checked after each
phase. The figures are ratios within the run: each phase's seconds with
messages over alone (a phase lasts from its first request to the last
answer, a start's when every user is placed), and the messages' 95th
percentile during each phase over *before*; and how long the ``wait: true``
starts took to answer (200 or 202).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from load_scenario import (
    HOMESERVER,
    Chat,
    Conference,
    Phase,
    Recorder,
    Scenario,
    Shape,
    percentile,
)
from synapse_process import SynapseProcess, free_port, postgres_database

logger = logging.getLogger("benchmarks.load")

#: Seconds the process is left alone between phases.
SETTLE_SECONDS = 10.0
#: Per background process (by name) and per servlet: Synapse's CPU metrics.
_CPU = re.compile(
    r"^(synapse_background_process_ru_utime_seconds_total"
    r"|synapse_http_server_response_ru_utime_seconds_total"
    r"|process_cpu_seconds_total)(?:\{([^}]*)\})? (\S+)$",
    re.MULTILINE,
)
#: SPEC section 11's bounds.
SECONDS_BUDGET = 2.2
P95_BUDGET = 2.0
WAIT_BUDGET = 50.0


def _drop(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(
        dbname="postgres",
        user=os.environ.get("SYNAPSE_POSTGRES_USER"),
        password=os.environ.get("SYNAPSE_POSTGRES_PASSWORD"),
        host=os.environ.get("SYNAPSE_POSTGRES_HOST"),
        port=int(os.environ.get("SYNAPSE_POSTGRES_PORT", "5432")),
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


def cpu_by_consumer(synapse: SynapseProcess) -> dict[str, float]:
    """The process's CPU seconds so far (``process``), and the user CPU
    seconds of each background process (by name) and servlet (Synapse counts
    a request's when it answers)."""
    out: dict[str, float] = {}
    for metric, labels, value in _CPU.findall(synapse.metrics()):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if metric.startswith("process"):
            key = "process"
        elif "background" in metric:
            key = label["name"]
        else:
            key = f"{label.get('method')} {label.get('servlet')}"
        out[key] = out.get(key, 0.0) + float(value)
    return out


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The CPU seconds spent between two readings, the largest ten first."""
    spent = {k: v - before.get(k, 0.0) for k, v in after.items()}
    top = sorted(spent.items(), key=lambda kv: -kv[1])[:10]
    return {k: round(v, 1) for k, v in top if v >= 0.05}


def _round(
    scenario: Scenario,
    synapse: SynapseProcess,
    tag: str,
    problems: dict[str, list[str]],
    cpu: dict[str, Any],
) -> dict[str, Any]:
    """The three phases, each checked; their phases (and the starts), and
    where the process's CPU went in each."""
    out: dict[str, Any] = {}
    for name in ("starts", "changes", "ends"):
        reading = cpu_by_consumer(synapse)
        if name == "starts":
            out[name] = scenario.start_all(tag)
            problems[f"{tag} starts"] = scenario.check_started(out[name][1])
        elif name == "changes":
            out[name] = scenario.change_all(out["starts"][1])
            problems[f"{tag} changes"] = scenario.check_moved()
        else:
            out[name] = scenario.end_all()
            problems[f"{tag} ends"] = scenario.check_ended()
        time.sleep(SETTLE_SECONDS)
        cpu[f"{tag} {name}"] = _spent(reading, cpu_by_consumer(synapse))
    return out


def _ms(values: list[float], q: float) -> float:
    return round(1000 * percentile(values, q), 1)


def figures(
    rec: Recorder,
    alone: dict[str, Any],
    chat: dict[str, Any],
    before: Phase,
    after: Phase,
) -> dict[str, Any]:
    """The ratios and what they are made of."""
    base = rec.seconds("message", before.began, before.ended)
    out: dict[str, Any] = {
        "messages_before": {"sent": len(base), "p50_ms": _ms(base, 0.5)},
    }
    out["messages_before"]["p95_ms"] = p95_before = _ms(base, 0.95)
    later = rec.seconds("message", after.began, after.ended)
    out["messages_after"] = {"sent": len(later), "p95_ms": _ms(later, 0.95)}
    # Messages alone drift from one batch to the next (docs/performance.md,
    # "Why before and after"): the mean of before and after, beside before.
    bracket = (p95_before + out["messages_after"]["p95_ms"]) / 2
    for name in ("starts", "changes", "ends"):
        phase_alone, phase = alone[name], chat[name]
        if name == "starts":
            phase_alone, phase = phase_alone[0], phase[0]
        during = rec.seconds("message", phase.began, phase.ended)
        out[name] = {
            "seconds_alone": round(phase_alone.seconds, 1),
            "seconds_with_messages": round(phase.seconds, 1),
            "seconds_ratio": round(phase.seconds / phase_alone.seconds, 2),
            "messages_during": len(during),
            "p50_ms_during": _ms(during, 0.5),
            "p95_ms_during": _ms(during, 0.95),
            "p95_ratio": round(_ms(during, 0.95) / p95_before, 2),
            "p95_ratio_to_before_and_after": round(_ms(during, 0.95) / bracket, 2),
        }
    for kind in ("move", "broadcast", "deadline", "end"):
        took = rec.seconds(kind, chat["changes"].began, chat["ends"].ended)
        out[f"{kind}_seconds_with_messages"] = {
            "p50": round(percentile(took, 0.5), 2),
            "max": round(max(took, default=float("nan")), 2),
        }
    waited = [s for s in chat["starts"][1] + alone["starts"][1] if s.wait]
    out["wait_true"] = {
        "statuses": sorted({s.status for s in waited}),
        "answered_202": sum(s.status == 202 for s in waited),
        "max_seconds_to_answer": round(max(s.answered for s in waited), 1),
    }
    return out


def run(
    shape: Shape, chat_seconds: float, database: str, keep: bool = False
) -> dict[str, Any]:
    """One run; the figures and what went wrong. ``keep``: leave Synapse's
    folder (its log has every pause of the pacer, at debug level)."""
    workdir = Path(tempfile.mkdtemp(prefix="breakout-load-"))
    db = postgres_database(database, cp_max=10)
    synapse = SynapseProcess(
        workdir,
        port=free_port(),
        database=db,
        extra_config=HOMESERVER,
        metrics_port=free_port(),
    )
    problems: dict[str, list[str]] = {}
    cpu: dict[str, Any] = {}
    try:
        synapse.start()
        rec = Recorder(synapse)
        began = time.monotonic()
        conference = Conference(synapse, shape)
        logger.info("signed up in %.0f s", time.monotonic() - began)
        scenario = Scenario(rec, conference, db)
        alone = _round(scenario, synapse, "alone", problems, cpu)
        logger.info("alone: done")
        with Chat(rec, conference.hall, conference.chatters):
            reading = cpu_by_consumer(synapse)
            before = Phase(time.monotonic(), chat_seconds)
            time.sleep(chat_seconds)
            cpu["chat before"] = _spent(reading, cpu_by_consumer(synapse))
            chat = _round(scenario, synapse, "chat", problems, cpu)
            after = Phase(time.monotonic(), chat_seconds)
            time.sleep(chat_seconds)
        problems["orphans"] = scenario.check_no_orphans()
        problems["locks"] = scenario.check_no_locks()
        problems["5xx"] = rec.server_errors()
        out = figures(rec, alone, chat, before, after)
    finally:
        synapse.stop()
        if keep:
            logger.info("Synapse's folder: %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        _drop(database)
    out["problems"] = {k: v for k, v in problems.items() if v}
    out["cpu_seconds"] = cpu
    out["shape"] = vars(shape)
    return out


def table(out: dict[str, Any]) -> str:
    """The figures against SPEC section 11's bounds."""
    before = out["messages_before"]
    lines = [
        f"messages before: {before['sent']} sent, p50 {before['p50_ms']} ms, "
        f"p95 {before['p95_ms']} ms; after: p95 {out['messages_after']['p95_ms']} ms",
    ]
    for name in ("starts", "changes", "ends"):
        f = out[name]
        lines.append(
            f"{name:8} {f['seconds_alone']:7.1f} s alone, "
            f"{f['seconds_with_messages']:7.1f} s with messages: "
            f"{f['seconds_ratio']:.2f}x (<= {SECONDS_BUDGET}); messages p95 "
            f"{f['p95_ms_during']} ms: {f['p95_ratio']:.2f}x before (<= {P95_BUDGET}),"
            f" {f['p95_ratio_to_before_and_after']:.2f}x before and after"
        )
    wait = out["wait_true"]
    lines.append(
        f"wait: true answered {wait['statuses']} ({wait['answered_202']} x 202) "
        f"within {wait['max_seconds_to_answer']} s (<= {WAIT_BUDGET} + the checks)"
    )
    lines.append(f"invariants: {out['problems'] or 'all held'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--parents", type=int, default=30)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--chatters", type=int, default=15)
    parser.add_argument("--chat-seconds", type=float, default=30.0)
    parser.add_argument("--database", default=f"breakout_load_{os.getpid()}")
    parser.add_argument("--json", type=Path, metavar="FILE")
    parser.add_argument(
        "--keep", action="store_true", help="keep Synapse's folder and its log"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    shape = Shape(args.parents, args.members, args.rooms, args.chatters)
    out = run(shape, args.chat_seconds, args.database, args.keep)
    print(json.dumps(out, indent=2))
    print(table(out))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
