"""The module's Prometheus metrics, served on Synapse's metrics listener.

Created once, at import time: several homeservers in one process (as in the
tests) share them instead of registering the same names twice.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS_CHECKED = Counter(
    "synapse_breakout_events_checked",
    "Local break-out events checked by the event rules, by outcome and reason",
    ["outcome", "reason"],
)
JOINS_REFUSED = Counter(
    "synapse_breakout_joins_refused",
    "Local joins refused because the break-out room was full (room_capacity)",
)
SENDER_VERDICTS = Counter(
    "synapse_breakout_sender_verdicts",
    "Break-out events judged by the spam-checker hook, by origin and verdict",
    ["origin", "verdict"],
)
OPERATIONS = Counter(
    "synapse_breakout_operations",
    "Admin API operations, by kind and outcome",
    ["kind", "outcome"],
)
OPERATION_SECONDS = Histogram(
    "synapse_breakout_operation_seconds",
    "Duration of admin API operations, by kind",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
RECOVERIES = Counter(
    "synapse_breakout_recoveries",
    "Operations left unfinished by a crash and rolled back, by outcome",
    ["outcome"],
)
GAVE_WAY = Counter(
    "synapse_breakout_gave_way_seconds",
    "Seconds break-out work held back while other work in the process was busy (rooms/pacing.py)",
)
