"""Timers, ejection and crash recovery (SPEC sections 4 and 6), in Synapse's harness."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import attrs
from harness import (
    UNSTABLE,
    ParentRoomTestCase,
    find_module,
    journal_crashed_start,
    module_config,
)
from synapse.api.room_versions import KNOWN_ROOM_VERSIONS
from synapse.events import EventBase
from synapse.server import HomeServer
from synapse.storage.database import LoggingTransaction
from synapse.util.clock import Clock
from tests.unittest import override_config
from twisted.internet.testing import MemoryReactor

from synapse_breakout.journal.ownership import LEASE_MS
from synapse_breakout.journal.rows import Operation, OperationState
from synapse_breakout.journal.verdicts import SenderVerdict, VerdictStore
from synapse_breakout.matrix.child_room import CREATION_MARKER
from synapse_breakout.operations.end import TIME_IS_UP


class TimerTestCase(ParentRoomTestCase):
    def test_deadline_ends_the_breakout_once_with_time_is_up(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A"}, {"name": "B"}], "duration_seconds": 30}
        )
        self.reactor.advance(20)
        self.assertTrue(self.call("GET", self.room_path())["active"])
        self.reactor.advance(12)
        self.pump(1)
        self.assertFalse(self.call("GET", self.room_path())["active"])
        self.assertEqual(self.state(self.parent, UNSTABLE), {UNSTABLE: {}})
        for room in result["rooms"]:
            (ended,) = self.notice_bodies(room["room_id"], "ended")
            self.assertTrue(ended.startswith(TIME_IS_UP + "\n"))
        self.reactor.advance(120)
        for room in result["rooms"]:
            self.assertEqual(len(self.notices(room["room_id"], "ended")), 1)

    def test_ended_by_hand_before_the_deadline(self) -> None:
        result = self.start({"rooms": [{"name": "A"}], "duration_seconds": 30})
        self.call("DELETE", self.room_path(), {"message": "Done early"})
        self.reactor.advance(60)
        (ended,) = self.notice_bodies(result["rooms"][0]["room_id"], "ended")
        self.assertTrue(ended.startswith("Done early\n"))

    def test_replaced_breakout_keeps_no_old_deadline(self) -> None:
        self.start({"rooms": [{"name": "A"}], "duration_seconds": 30})
        second = self.start({"rooms": [{"name": "B"}], "replace": True})
        self.reactor.advance(60)
        self.assertTrue(self.call("GET", self.room_path())["active"])
        self.assertEqual(self.notices(second["rooms"][0]["room_id"], "ended"), [])


class EjectionTestCase(ParentRoomTestCase):
    def test_leaving_or_banned_from_the_parent_leaves_the_children(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A", "users": self.users[:3]}], "move": "join"}
        )
        child = result["rooms"][0]["room_id"]
        self.helper.leave(self.parent, self.users[0], tok=self.toks[self.users[0]])
        self.helper.ban(self.parent, self.host, self.users[1], tok=self.host_tok)
        self.reactor.advance(6)
        self.pump(1)
        self.assertEqual(self.membership_in(child, self.users[0]), "leave")
        self.assertEqual(self.membership_in(child, self.users[1]), "leave")
        self.assertEqual(self.membership_in(child, self.users[2]), "join")

    def test_invites_are_withdrawn_too(self) -> None:
        result = self.start({"rooms": [{"name": "A", "users": self.users[:1]}]})
        child = result["rooms"][0]["room_id"]
        self.assertEqual(self.membership_in(child, self.users[0]), "invite")
        self.helper.leave(self.parent, self.users[0], tok=self.toks[self.users[0]])
        self.reactor.advance(6)
        self.assertEqual(self.membership_in(child, self.users[0]), "leave")

    @override_config(module_config(eject_on_parent_leave=False))
    def test_off_when_configured(self) -> None:
        result = self.start(
            {"rooms": [{"name": "A", "users": self.users[:1]}], "move": "join"}
        )
        child = result["rooms"][0]["room_id"]
        self.helper.leave(self.parent, self.users[0], tok=self.toks[self.users[0]])
        self.reactor.advance(30)
        self.assertEqual(self.membership_in(child, self.users[0]), "join")


class CrashedOperations(ParentRoomTestCase):
    """Ground for recovery tests, without tests of its own (a subclass would
    run them again): a crash is simulated by journal rows left by another
    process."""

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.module = find_module(hs)
        self.journal = self.module.ownership

    def crashed_operation(
        self, rooms: int, journalled: int
    ) -> tuple[Operation, list[str]]:
        """An operation of a previous process that made ``rooms`` rooms and
        journalled the first ``journalled`` of them before it died."""
        op = journal_crashed_start(
            self,
            self.parent,
            self.admin,
            self.host,
            {"move": "invite", "join_rule": "restricted", "duration_seconds": 600},
        )
        made = []
        for i in range(rooms):
            room_id, _ = self.get_success(
                self.module_api.create_room(
                    self.host,
                    {
                        "name": f"R{i}",
                        "creation_content": {
                            CREATION_MARKER: {
                                "room_id": self.parent,
                                "operation": op.op_id,
                            }
                        },
                    },
                )
            )
            if i < journalled:
                self.get_success(
                    self.module.operation_store.record_room(op.op_id, room_id)
                )
            made.append(room_id)
        return op, made

    def recover_until_done(self) -> None:
        for _ in range(5):
            self.get_success(self.module.loops.recover())
            self.pump(1)


class RecoveryTestCase(CrashedOperations):
    def test_unfinished_operation_is_rolled_back_with_unjournalled_rooms(self) -> None:
        _, made = self.crashed_operation(rooms=3, journalled=2)
        # Another room of the same user, made meanwhile, is not touched.
        mine = self.helper.create_room_as(self.host, tok=self.host_tok)
        self.recover_until_done()
        for room_id in made:
            self.assertFalse(self.room_exists(room_id), room_id)
        assert mine is not None
        self.assertTrue(self.room_exists(mine))
        self.assertIsNone(self.state(self.parent, UNSTABLE))
        ops = self.get_success(self.module.operation_store.unfinished())
        self.assertEqual(ops, [])
        # The parent is free again, and the caller's retry gets the error.
        body = self.start({"rooms": [{"name": "A"}], "txn_id": "crashed"}, expect=500)
        self.assertIn("rolled back", body["error"])
        self.start({"rooms": [{"name": "A"}]})

    def test_recovery_runs_by_itself_within_the_interval(self) -> None:
        _, made = self.crashed_operation(rooms=2, journalled=1)
        self.reactor.advance(61)
        self.pump(1)
        self.reactor.advance(61)
        for room_id in made:
            self.assertFalse(self.room_exists(room_id), room_id)

    def test_sent_breakout_is_rolled_forward(self) -> None:
        op, made = self.crashed_operation(rooms=2, journalled=2)
        self.helper.send_state(
            self.parent,
            UNSTABLE,
            {UNSTABLE: {r: {"via": ["test"], "users": [self.users[0]]} for r in made}},
            tok=self.host_tok,
        )
        self.recover_until_done()
        for room_id in made:
            self.assertTrue(self.room_exists(room_id))
        active = self.get_success(self.module.operation_store.get_running(self.parent))
        assert active is not None
        self.assertEqual(active.op_id, op.op_id)
        replay = self.start({"rooms": [{"name": "A"}], "txn_id": "crashed"})
        self.assertEqual({r["room_id"] for r in replay["rooms"]}, set(made))
        self.assertEqual(replay["failed_users"], [])
        # Its users are moved now, and its deadline stands.
        for room_id in made:
            self.assertEqual(self.membership_in(room_id, self.users[0]), "invite")
        got = self.call("GET", self.room_path())
        self.assertEqual(got["ends_at"], got["started_at"] + 600_000)

    def test_live_operation_of_this_process_is_left_alone(self) -> None:
        op, made = self.crashed_operation(rooms=1, journalled=1)
        # The journal row is this process's own: still running, not crashed.
        self.journal.process_token = "a-previous-process"
        self.recover_until_done()
        self.assertTrue(self.room_exists(made[0]))
        (still,) = self.get_success(self.module.operation_store.unfinished())
        self.assertEqual((still.op_id, still.state), (op.op_id, OperationState.PENDING))


class LocksAndTimersTestCase(ParentRoomTestCase):
    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.module = find_module(hs)

    def test_lock_left_by_a_dead_process_is_released_by_recovery(self) -> None:
        dead = f"end:{self.module.ownership.instance}:a-dead-process:0000"
        self.assertTrue(self.get_success(self.module.locks.lock(self.parent, dead)))
        self.start({"rooms": [{"name": "A"}]}, expect=409)
        self.get_success(self.module.loops.recover())
        self.start({"rooms": [{"name": "A"}]})

    def test_live_lock_of_this_process_is_kept(self) -> None:
        live = self.module.ownership.lock_id("move")
        self.assertTrue(self.get_success(self.module.locks.lock(self.parent, live)))
        self.get_success(self.module.loops.recover())
        self.start({"rooms": [{"name": "A"}]}, expect=409)

    def test_deadline_waits_for_a_held_lock_then_ends(self) -> None:
        result = self.start({"rooms": [{"name": "A"}], "duration_seconds": 10})
        live = self.module.ownership.lock_id("move")
        self.assertTrue(self.get_success(self.module.locks.lock(self.parent, live)))
        self.reactor.advance(15)
        self.assertTrue(self.call("GET", self.room_path())["active"])
        self.get_success(self.module.locks.unlock(self.parent, live))
        # Two seconds, in steps: the end's writes are steps of the pacer,
        # whose pauses tick every 5 ms on this clock (rooms/pacing.py).
        self.pump(0.02)
        self.assertFalse(self.call("GET", self.room_path())["active"])
        (ended,) = self.notice_bodies(result["rooms"][0]["room_id"], "ended")
        self.assertTrue(ended.startswith(TIME_IS_UP + "\n"))

    def test_move_keeps_the_deadline_visible(self) -> None:
        result = self.start(
            {
                "rooms": [{"name": "A", "users": [self.users[0]]}, {"name": "B"}],
                "duration_seconds": 600,
            }
        )
        b = next(r["room_id"] for r in result["rooms"] if r["name"] == "B")
        self.call(
            "POST", self.room_path(suffix="/move"), {"user_id": self.users[0], "to": b}
        )
        self.assertEqual(
            self.call("GET", self.room_path())["ends_at"], result["ends_at"]
        )


class LeaseTestCase(CrashedOperations):
    def test_another_workers_operation_is_dead_once_its_lease_stood_still(
        self,
    ) -> None:
        op, _ = self.crashed_operation(rooms=1, journalled=1)
        other = attrs.evolve(op, instance="worker1", process_token="t")
        now = self.clock.time_msec()
        abandoned = self.module.ownership.operation_is_dead
        # First seen: alive; and while its counter stands still for less
        # than a lease, by this process's own clock.
        self.assertFalse(abandoned(other, now))
        self.assertFalse(abandoned(other, now + LEASE_MS - 1))
        # Renewed: alive again, whatever the time...
        renewed = attrs.evolve(other, lease=other.lease + 1)
        self.assertFalse(abandoned(renewed, now + LEASE_MS + 1))
        # ...until it stands still for a lease.
        self.assertTrue(abandoned(renewed, now + 2 * LEASE_MS + 1))

    def test_this_process_renews_what_it_holds(self) -> None:
        self.crashed_operation(rooms=1, journalled=1)
        store = self.module.operation_store
        journal = self.module.ownership
        journal.process_token = "a-previous-process"  # the row is this process's
        with journal.hold():
            for _ in range(3):
                self.reactor.advance(5)
        (row,) = self.get_success(store.unfinished())
        self.assertGreaterEqual(row.lease, 2)
        self.reactor.advance(11)  # nothing held: no renewal
        (again,) = self.get_success(store.unfinished())
        self.assertEqual(again.lease, row.lease)


class CommitAfterRollbackTestCase(CrashedOperations):
    def test_a_start_taken_for_dead_never_commits(self) -> None:
        """The parent send of a start on worker W outlives W's lease; the
        main process rolls it back; W's send then lands: W must not commit."""
        api = self.module.events._api
        original = api.create_and_send_event_into_room
        store = self.module.operation_store
        journal = self.journal

        def pose_as_a_silent_worker(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE breakout_operations SET instance = 'worker1'"
                " WHERE state = 'pending'"
            )

        async def slow_send(event: dict[str, Any]) -> EventBase:
            # The break-out event, its turn come (pacing.py): it is sent once
            # recovery has rolled the start back.
            if event["type"] == UNSTABLE and event["content"].get(UNSTABLE):
                api.create_and_send_event_into_room = original  # type: ignore[method-assign]
                await self.module_api.run_db_interaction(
                    "test_pose", pose_as_a_silent_worker
                )
                (op,) = await store.unfinished()
                # Seen a lease ago by the main process, unchanged since.
                journal.operation_is_dead(op, self.clock.time_msec() - LEASE_MS)
                await self.module.loops.recover()
            return await original(event)

        api.create_and_send_event_into_room = slow_send  # type: ignore[method-assign]
        before = self.local_room_count()
        body = self.start(
            {"rooms": [{"name": "A"}, {"name": "B"}]},
            expect=HTTPStatus.INTERNAL_SERVER_ERROR,
        )
        self.assertIn("rolled back", body["error"])
        self.recover_until_done()
        # The event that listed the purged rooms was withdrawn...
        self.assertEqual(self.state(self.parent, UNSTABLE), {UNSTABLE: {}})
        self.assertFalse(self.call("GET", self.room_path())["active"])
        # ...and no room of it is left.
        self.assertEqual(self.local_room_count(), before)
        self.assertIsNone(self.get_success(store.get_running(self.parent)))


class ProvenRoomsTestCase(CrashedOperations):
    def test_an_empty_room_of_the_acting_user_is_not_purged(self) -> None:
        _, made = self.crashed_operation(rooms=1, journalled=1)
        # Another room of the same user, registered and not yet filled (a bot
        # creating a room at that moment): no proof it is the operation's.
        shell = "!shell:test"
        self.get_success(
            self.hs.get_datastores().main.store_room(
                room_id=shell,
                room_creator_user_id=self.host,
                is_public=False,
                room_version=KNOWN_ROOM_VERSIONS["10"],
            )
        )
        self.recover_until_done()
        self.assertFalse(self.room_exists(made[0]))
        self.assertTrue(self.room_exists(shell))

    def test_an_edit_after_the_crash_still_rolls_forward(self) -> None:
        op, made = self.crashed_operation(rooms=2, journalled=2)
        content = {UNSTABLE: {r: {"via": ["test"]} for r in made}}
        self.helper.send_state(self.parent, UNSTABLE, content, tok=self.host_tok)
        # A moderator edits the break-out before recovery runs.
        extra = self.helper.create_room_as(self.mod, tok=self.mod_tok)
        assert extra is not None
        content[UNSTABLE][extra] = {"via": ["test"]}
        self.helper.send_state(self.parent, UNSTABLE, content, tok=self.mod_tok)
        self.recover_until_done()
        for room_id in [*made, extra]:
            self.assertTrue(self.room_exists(room_id), room_id)
        running = self.get_success(self.module.operation_store.get_running(self.parent))
        assert running is not None
        self.assertEqual(running.op_id, op.op_id)
        rooms = {
            r["room_id"]: r["managed"]
            for r in self.call("GET", self.room_path())["rooms"]
        }
        self.assertEqual(rooms, {made[0]: True, made[1]: True, extra: False})


class RetentionTestCase(ParentRoomTestCase):
    @override_config(module_config(retention_days=1))
    def test_old_finished_operations_and_flags_are_deleted(self) -> None:
        module = find_module(self.hs)
        store = module.operation_store
        other = self.make_parent()
        self.call(
            "POST",
            self.room_path(other),
            {"acting_user": self.host, "rooms": [{"name": "A"}], "txn_id": "old"},
        )
        self.call("DELETE", self.room_path(other))
        running = self.start({"rooms": [{"name": "B"}], "txn_id": "running"})
        verdicts = VerdictStore(self.module_api)
        now = self.clock.time_msec()
        self.get_success(
            verdicts.record(
                SenderVerdict("$old", self.parent, self.mod, False, 0, 50, None, now)
            )
        )
        # The daily clean-up runs by itself; nothing is left for another run.
        self.reactor.advance(2 * 24 * 3600)
        self.assertEqual(self.get_success(module.retention.prune()), (0, 0))
        self.assertIsNone(self.get_success(store.find_txn(self.admin, "old")))
        self.assertIsNone(self.get_success(verdicts.get("$old")))
        # A running break-out's start stays: it says which rooms it owns.
        kept = self.get_success(store.find_txn(self.admin, "running"))
        assert kept is not None
        own = self.get_success(store.rooms_of(kept.op_id))
        self.assertEqual(own, [running["rooms"][0]["room_id"]])
