"""Fault injection: a start that fails at any step leaves nothing behind (SPEC 4).

A second module, loaded beside synapse_breakout, denies the k-th room creation
(spam checker ``user_may_create_room``), breaks the k-th room half-way through
its set-up (an event rule rejecting its name event, after its create event is
stored) or rejects the break-out event itself (event rules), for every k.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from harness import MODULE, UNSTABLE, ParentRoomTestCase, find_module
from parameterized import parameterized
from synapse.module_api import NOT_SPAM, EventBase, ModuleApi
from synapse.storage.database import LoggingTransaction
from tests.unittest import override_config

ROOMS = 4


class FaultInjector:
    """Fails one step of a break-out, chosen by its config."""

    def __init__(self, config: dict[str, Any], api: ModuleApi):
        self.config = config
        api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room
        )
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed
        )

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config

    async def user_may_create_room(self, user_id: str, config: dict[str, Any]) -> Any:
        if (
            "deny_room" in self.config
            and config.get("name") == self.config["deny_room"]
        ):
            return ("M_FORBIDDEN", {})
        return NOT_SPAM

    async def check_event_allowed(
        self, event: EventBase, state: Any
    ) -> tuple[bool, None]:
        if event.type == "m.room.name" and event.content.get("name") == self.config.get(
            "break_room"
        ):
            return False, None
        if event.type == UNSTABLE and self.config.get("reject_breakout"):
            return False, None
        return True, None


def faults(**config: Any) -> dict[str, Any]:
    return {
        "modules": [
            {"module": MODULE, "config": {}},
            {"module": f"{__name__}.FaultInjector", "config": config},
        ]
    }


class FaultTestBase(ParentRoomTestCase):
    def breakout_rooms_left(self) -> int:
        """Rooms on this server whose create event marks them as a break-out's."""

        def txn(t: LoggingTransaction) -> int:
            t.execute(
                "SELECT COUNT(*) FROM rooms r JOIN state_events s ON s.room_id = r.room_id"
                " JOIN event_json j ON j.event_id = s.event_id"
                " WHERE s.type = 'm.room.create' AND j.json LIKE ?",
                ("%org.matrix.msc3985.breakout_parent%",),
            )
            row = t.fetchone()
            assert row is not None
            return int(row[0])

        return self.get_success(self.module_api.run_db_interaction("test_left", txn))

    def attempt(self, expect: int, errcode: str) -> dict[str, Any]:
        before_rooms = self.local_room_count()
        body = self.start(
            {
                "rooms": [
                    {"name": f"Room {i + 1}", "users": [self.users[i]]}
                    for i in range(ROOMS)
                ]
            },
            expect=expect,
        )
        self.assertEqual(body["errcode"], errcode, body)
        # Deletion runs in Synapse's background task scheduler, and recovery
        # confirms it; give both their time.
        for _ in range(3):
            self.reactor.advance(61)
            self.pump(1)
        self.assertEqual(self.local_room_count(), before_rooms)
        self.assertEqual(self.breakout_rooms_left(), 0)
        self.assertIsNone(self.state(self.parent, UNSTABLE))
        module = find_module(self.hs)
        self.assertEqual(self.get_success(module.operation_store.unfinished()), [])
        return body

    def assert_parent_free(self) -> None:
        result = self.start({"rooms": [{"name": "After"}]})
        self.assertEqual(
            list(self.state(self.parent, UNSTABLE)[UNSTABLE]),
            [result["rooms"][0]["room_id"]],
        )


class RoomFaultsTestCase(FaultTestBase):
    """Each room of the start fails in turn, each way: the injector is loaded
    with nothing to fail, and each test says what fails."""

    def default_config(self) -> dict[str, Any]:
        config = super().default_config()
        config["modules"] = faults()["modules"]
        return config

    @contextlib.contextmanager
    def faults(self, **config: Any) -> Iterator[None]:
        """Let the injector fail what ``config`` says while the block runs."""
        checker = self.hs.get_module_api_callbacks().spam_checker
        (callback,) = checker._user_may_create_room_callbacks
        injector = callback.__self__
        assert isinstance(injector, FaultInjector)
        injector.config = config
        try:
            yield
        finally:
            injector.config = {}

    @parameterized.expand([(k,) for k in range(1, ROOMS + 1)])
    def test_creation_of_room_k_denied(self, k: int) -> None:
        with self.faults(deny_room=f"Room {k}"):
            body = self.attempt(HTTPStatus.FORBIDDEN, "M_FORBIDDEN")
        self.assertIn("not permitted to create rooms", body["error"])
        self.assert_parent_free()

    @parameterized.expand([(k,) for k in range(1, ROOMS + 1)])
    def test_room_k_breaks_half_way(self, k: int) -> None:
        with self.faults(break_room=f"Room {k}"):
            self.attempt(HTTPStatus.FORBIDDEN, "M_FORBIDDEN")
        self.assert_parent_free()


class RejectedEventTestCase(FaultTestBase):
    @override_config(faults(reject_breakout=True))
    def test_rejected_breakout_event_rolls_everything_back(self) -> None:
        body = self.attempt(HTTPStatus.FORBIDDEN, "M_FORBIDDEN")
        self.assertIn("not allowed", body["error"])


class ForeignLocksTestCase(FaultTestBase):
    @override_config(faults(reject_breakout=True))
    def test_an_ordinary_roll_back_keeps_other_workers_room_locks(self) -> None:
        """Only a crashed operation's rooms lose other processes' locks."""
        store = find_module(self.hs).operation_store
        record_room = store.record_room
        locked: list[str] = []

        def lock_txn(txn: LoggingTransaction, room_id: str) -> None:
            txn.execute(
                "INSERT INTO worker_read_write_locks (lock_name, lock_key,"
                " write_lock, instance_name, token, last_renewed_ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                ("test_other", room_id, False, "worker1", "t", self.clock.time_msec()),
            )

        async def record_and_lock(
            op_id: str, room_id: str, index: int | None = None, capacity: Any = None
        ) -> None:
            await record_room(op_id, room_id, index, capacity)
            await self.module_api.run_db_interaction("test_lock", lock_txn, room_id)
            locked.append(room_id)

        store.record_room = record_and_lock  # type: ignore[method-assign]
        self.start({"rooms": [{"name": "A"}]}, expect=HTTPStatus.FORBIDDEN)

        def count_txn(txn: LoggingTransaction) -> int:
            txn.execute(
                "SELECT COUNT(*) FROM worker_read_write_locks WHERE lock_name = ?",
                ("test_other",),
            )
            row = txn.fetchone()
            assert row is not None
            return int(row[0])

        self.assertEqual(len(locked), 1)
        self.assertEqual(
            self.get_success(self.module_api.run_db_interaction("t", count_txn)), 1
        )
