"""The notices a start pinned (``breakout_pins``): what its end unpins.

rooms/pins.py pins and unpins; this file keeps, per operation, which event it
pinned in which room, so an end removes those pins and leaves every other pin
of the room as it was (docs/participants.md).
"""

from __future__ import annotations

from synapse.module_api import LoggingTransaction, ModuleApi


def _record_pin_txn(
    txn: LoggingTransaction, op_id: str, room_id: str, event_id: str
) -> None:
    txn.execute(
        "INSERT INTO breakout_pins (op_id, room_id, event_id) VALUES (?, ?, ?)"
        " ON CONFLICT (op_id, room_id, event_id) DO NOTHING",
        (op_id, room_id, event_id),
    )


def _pins_of_txn(txn: LoggingTransaction, op_id: str) -> dict[str, list[str]]:
    txn.execute("SELECT room_id, event_id FROM breakout_pins WHERE op_id = ?", (op_id,))
    pins: dict[str, list[str]] = {}
    for room_id, event_id in txn:
        pins.setdefault(room_id, []).append(event_id)
    return pins


class PinStore:
    """Which notices each operation pinned, and where."""

    def __init__(self, api: ModuleApi):
        self._api = api

    async def record(self, op_id: str, room_id: str, event_id: str) -> None:
        """``op_id``'s start pinned ``event_id`` in ``room_id``."""
        await self._api.run_db_interaction(
            "breakout_record_pin", _record_pin_txn, op_id, room_id, event_id
        )

    async def of(self, op_id: str) -> dict[str, list[str]]:
        """The events ``op_id``'s start pinned, by room."""
        return await self._api.run_db_interaction(
            "breakout_pins_of", _pins_of_txn, op_id
        )
