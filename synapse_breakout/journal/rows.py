"""The rows of the journal, as the rest of the module sees them: an operation
and its state, a running break-out. Types only; operations.py reads and
writes them (docs/operations.md, "The journal").
"""

from __future__ import annotations

import enum
from typing import Any, TypedDict

import attrs

from synapse_breakout.matrix.model import PlacementMode


class OperationState(enum.StrEnum):
    """Where a journalled operation is: pending -> committed, or pending ->
    (rolling_back ->) rolled_back (docs/operations.md)."""

    PENDING = "pending"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


#: The states recovery looks at.
UNFINISHED = (OperationState.PENDING.value, OperationState.ROLLING_BACK.value)


class StartParams(TypedDict, total=False):
    """What recovery needs of a start request, kept in the journal row (as
    JSON: the keys are the request's, rows written before stay readable)."""

    #: A ``PlacementMode`` value.
    move: str
    #: A ``JoinRule`` value.
    join_rule: str
    duration_seconds: int | None
    #: How many rooms the start creates (for its progress).
    rooms_total: int
    #: How many members each room takes (None: no limit).
    room_capacity: int | None


@attrs.frozen
class Operation:
    """A journal row: one admin API operation and how far it got."""

    op_id: str
    kind: str
    parent_room_id: str
    requester: str
    txn_id: str | None
    state: OperationState = attrs.field(converter=OperationState)
    instance: str
    process_token: str
    created_ts: int
    updated_ts: int
    #: The stored JSON answer, replayed for a repeated txn_id.
    response: Any
    acting_user: str | None
    request: StartParams = attrs.field(factory=lambda: StartParams())
    #: Bumped by the owning process while it runs the operation (ownership.py).
    lease: int = 0


@attrs.frozen
class RunningBreakout:
    """A break-out started through the admin API and not ended yet."""

    parent_room_id: str
    op_id: str
    event_id: str
    acting_user: str
    #: The start's placement mode, for users reassigned later.
    mode: PlacementMode = attrs.field(converter=PlacementMode)
    started_ts: int
    ends_at: int | None

    def row(self) -> tuple[Any, ...]:
        """The values of the ``breakout_active`` columns (operations.py)."""
        return (
            self.parent_room_id,
            self.op_id,
            self.event_id,
            self.acting_user,
            self.mode.value,
            self.started_ts,
            self.ends_at,
        )


@attrs.frozen
class StartQuota:
    """How many starts a requester may journal in a sliding window."""

    allowed: int
    window_ms: int


@attrs.frozen
class OverQuota:
    """A start refused: its requester used up their :class:`StartQuota`."""

    #: When the oldest start in the window was made: the quota grows then.
    oldest_ts: int
