"""Reads of Synapse's own tables (journal/synapse_tables.py), run against the
installed Synapse: its schema is one of its internals, so each query is
checked here on the lowest and newest supported release, SQLite and
PostgreSQL, against what Synapse itself says."""

from __future__ import annotations

from typing import Any

from harness import BreakoutTestCase, find_module, transactions_during
from synapse.server import HomeServer
from synapse.storage.database import LoggingTransaction
from synapse.util.clock import Clock
from twisted.internet.testing import MemoryReactor

from synapse_breakout import synapse_adapter


class TablesTestCase(BreakoutTestCase):
    """The module's ``SynapseTables``, and a user with a room."""

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.tables = find_module(hs).tables


class ExistingRoomsTestCase(TablesTestCase):
    def test_purged_rooms_are_gone_and_one_query_answers(self) -> None:
        user = self.register_user("u", "pass")
        tok = self.login("u", "pass")
        kept = self.helper.create_room_as(user, tok=tok)
        purged = self.helper.create_room_as(user, tok=tok)
        assert kept is not None and purged is not None
        self.get_success(self.module_api.delete_room(purged))
        self.pump(1)
        for _ in range(20):
            if not self.get_success(self.tables.existing_rooms([purged])):
                break
            self.reactor.advance(1)
        found: list[set[str]] = []
        descs = transactions_during(
            self.hs,
            lambda: found.append(
                self.get_success(self.tables.existing_rooms([kept, purged, "!x:y"]))
            ),
        )
        self.assertEqual(found, [{kept}])
        self.assertEqual(descs, ["breakout_existing_rooms"])
        self.assertEqual(self.get_success(self.tables.existing_rooms([])), set())


class CreatedByTestCase(TablesTestCase):
    def test_rooms_of_one_creator_since_a_time(self) -> None:
        ann = self.register_user("ann", "pass")
        ann_tok = self.login("ann", "pass")
        bob = self.register_user("bob", "pass")
        bob_tok = self.login("bob", "pass")
        early = self.helper.create_room_as(ann, tok=ann_tok)
        self.reactor.advance(10)
        since = self.clock.time_msec()
        late = self.helper.create_room_as(ann, tok=ann_tok)
        self.helper.create_room_as(bob, tok=bob_tok)
        self.assertEqual(
            self.get_success(self.tables.rooms_created_by(ann, since)), {late}
        )
        self.assertEqual(
            self.get_success(self.tables.rooms_created_by(ann, 0)), {early, late}
        )


class StoredEventsTestCase(TablesTestCase):
    def test_accepted_and_unknown_events(self) -> None:
        user = self.register_user("u", "pass")
        tok = self.login("u", "pass")
        room = self.helper.create_room_as(user, tok=tok)
        assert room is not None
        sent = self.helper.send(room, "hi", tok=tok)["event_id"]
        self.assertEqual(
            self.get_success(self.tables.stored_events([sent, "$unknown"])), {sent}
        )
        self.assertEqual(
            self.get_success(self.tables.stored_events([sent], rejected=True)), set()
        )


class RoomLocksTestCase(TablesTestCase):
    def test_only_other_processes_locks_are_dropped(self) -> None:
        def lock_txn(txn: LoggingTransaction, instance: str) -> None:
            txn.execute(
                "INSERT INTO worker_read_write_locks (lock_name, lock_key,"
                " write_lock, instance_name, token, last_renewed_ts)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                ("test", "!room:test", False, instance, instance, 0),
            )

        here = synapse_adapter.instance_id(self.module_api)
        for instance in (here, "a-dead-worker"):
            self.get_success(
                self.module_api.run_db_interaction("test_lock", lock_txn, instance)
            )
        dropped = self.get_success(self.tables.release_room_locks(["!room:test"], here))
        self.assertEqual(dropped, 1)

        def left_txn(txn: LoggingTransaction) -> list[Any]:
            txn.execute("SELECT instance_name FROM worker_read_write_locks")
            return [row[0] for row in txn]

        left = self.get_success(
            self.module_api.run_db_interaction("test_left", left_txn)
        )
        self.assertEqual(left, [here])


class PasswordMarkTestCase(TablesTestCase):
    def test_the_mark_changes_with_the_password_only(self) -> None:
        user = self.register_user("u", "pass")
        mark = self.get_success(self.tables.password_mark(user))
        self.assertEqual(len(mark), 64)
        self.assertEqual(self.get_success(self.tables.password_mark(user)), mark)
        new_hash = self.get_success(self.hs.get_auth_handler().hash("other"))
        self.get_success(
            self.hs.get_set_password_handler().set_password(user, new_hash, False)
        )
        self.assertNotEqual(self.get_success(self.tables.password_mark(user)), mark)
        self.assertEqual(self.get_success(self.tables.password_mark("@none:test")), "")


class RoomsWithCreateEventTestCase(TablesTestCase):
    def test_one_query_finds_the_known_rooms(self) -> None:
        user = self.register_user("u", "pass")
        tok = self.login("u", "pass")
        rooms = [self.helper.create_room_as(user, tok=tok) for _ in range(5)]
        rooms.append(self.helper.create_room_as(user, tok=tok, room_version="12"))
        unknown = ["!nope:test", "!" + "Z" * 43, "!x:elsewhere.example"]
        answers: list[set[str]] = []

        def look() -> None:
            for asked in (rooms + unknown, []):
                answers.append(
                    self.get_success(self.tables.rooms_with_create_event(asked))
                )

        descs = transactions_during(self.hs, look)
        self.assertEqual(answers, [set(rooms), set()])
        self.assertEqual(descs, ["breakout_rooms_with_create_event"])

    def test_a_room_whose_create_event_is_gone_is_unknown(self) -> None:
        user = self.register_user("u", "pass")
        tok = self.login("u", "pass")
        room_id = self.helper.create_room_as(user, tok=tok)
        assert room_id is not None

        def drop_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "DELETE FROM state_events WHERE room_id = ? AND type = 'm.room.create'",
                (room_id,),
            )

        self.get_success(self.module_api.run_db_interaction("test_drop", drop_txn))
        found = self.get_success(self.tables.rooms_with_create_event([room_id]))
        self.assertEqual(found, set())


class MembersOfRoomsTestCase(TablesTestCase):
    """``members_of_rooms``: who is joined or invited in several rooms, in one
    query, the same as the module API's member events say."""

    def test_the_same_as_the_member_events_in_one_query(self) -> None:
        host = self.register_user("host", "pass")
        host_tok = self.login("host", "pass")
        ann = self.register_user("ann", "pass")
        ann_tok = self.login("ann", "pass")
        bob = self.register_user("bob", "pass")
        cat = self.register_user("cat", "pass")
        cat_tok = self.login("cat", "pass")
        dan = self.register_user("dan", "pass")
        dan_tok = self.login("dan", "pass")
        first = self.helper.create_room_as(host, is_public=True, tok=host_tok)
        second = self.helper.create_room_as(host, is_public=True, tok=host_tok)
        empty = self.helper.create_room_as(host, is_public=True, tok=host_tok)
        assert first is not None and second is not None and empty is not None
        self.helper.join(first, ann, tok=ann_tok)
        self.helper.invite(first, host, bob, tok=host_tok)
        self.helper.join(first, cat, tok=cat_tok)
        self.helper.leave(first, cat, tok=cat_tok)
        self.helper.join(first, dan, tok=dan_tok)
        self.helper.ban(first, host, dan, tok=host_tok)
        self.helper.invite(second, host, ann, tok=host_tok)
        self.helper.leave(empty, host, tok=host_tok)
        rooms = [first, second, empty, "!unknown:test"]

        found: dict[str, dict[str, str]] = {}

        def look() -> None:
            found.update(
                self.get_success(
                    self.tables.members_of_rooms(rooms, ("join", "invite"))
                )
            )

        descs = transactions_during(self.hs, look)
        self.assertEqual(descs, ["breakout_members_of_rooms"])
        self.assertEqual(
            found,
            {
                first: {host: "join", ann: "join", bob: "invite"},
                second: {host: "join", ann: "invite"},
            },
        )
        # The module API's member events say the same of every member.
        for room in (first, second):
            state = self.get_success(
                self.module_api.get_room_state(room, [("m.room.member", None)])
            )
            said = {
                user: event.content["membership"]
                for (_, user), event in state.items()
                if event.content["membership"] in ("join", "invite")
            }
            self.assertEqual(found[room], said)
        # Only the memberships asked for.
        self.assertEqual(
            self.get_success(self.tables.members_of_rooms([first], ("ban",))),
            {first: {dan: "ban"}},
        )
        # The current state: ann leaves the first room.
        self.helper.leave(first, ann, tok=ann_tok)
        self.assertEqual(
            self.get_success(self.tables.members_of_rooms([first], ("join",))),
            {first: {host: "join"}},
        )
