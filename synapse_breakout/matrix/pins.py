"""Pinned events (``m.room.pinned_events``): the list a pin or an unpin leaves.

Element Web and Element X show a room's pinned messages as a banner at the top
of the room; the module pins its ``started`` and ``welcome`` notices there and
unpins them at the end (docs/participants.md). Pure: the list as it is, the
list after, and who may change it; rooms/pins.py reads and sends.
"""

from __future__ import annotations

from collections.abc import Collection

from synapse_breakout.matrix.power import StateMap, may_send_state

PINNED_EVENTS = "m.room.pinned_events"
#: What a pin or an unpin reads of a room.
PIN_STATE = (
    ("m.room.create", ""),
    ("m.room.power_levels", ""),
    (PINNED_EVENTS, ""),
)


def pinned(state: StateMap) -> list[str]:
    """The room's pinned event IDs, in their order (malformed entries dropped)."""
    event = state.get((PINNED_EVENTS, ""))
    pins = event.content.get("pinned") if event is not None else None
    if not isinstance(pins, list):
        return []
    return [pin for pin in pins if isinstance(pin, str)]


def with_pin(pins: list[str], event_id: str) -> list[str]:
    """``pins`` with ``event_id`` appended (newest last, as clients pin), if it
    is not pinned already."""
    return pins if event_id in pins else [*pins, event_id]


def without_pins(pins: list[str], event_ids: Collection[str]) -> list[str]:
    """``pins`` without ``event_ids``, every other pin kept in its place."""
    return [pin for pin in pins if pin not in event_ids]


def may_pin(user_id: str, state: StateMap) -> bool:
    """Whether ``user_id`` may change the room's pinned events."""
    return may_send_state(user_id, PINNED_EVENTS, state)
