"""Conference scale in Synapse's harness: ``wait: false``, ``GET /operations``,
``auto_assign.room_size``, journalled placement and its resumption."""

from __future__ import annotations

import logging
import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import MODULE, ParentRoomTestCase, find_module, module_config
from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.server import HomeServer
from synapse.util.clock import Clock
from test_faults import faults
from tests.unittest import logcontext_clean, override_config
from twisted.internet.testing import MemoryReactor

from synapse_breakout.journal.ownership import LEASE_MS
from synapse_breakout.matrix.child_room import CREATION_MARKER
from synapse_breakout.operations import place_users as placing


class SlowRooms:
    """Another module that makes each break-out room's creation take one second
    (``seconds``).

    Only the break-out's children (they carry its marker): the parent, made by
    Synapse's test helper, must be done within the helper's request timeout
    (one second of the test clock in Synapse 1.141).
    """

    def __init__(self, config: dict[str, Any], api: ModuleApi):
        self._api = api
        self._seconds = config.get("seconds", 1)
        api.register_spam_checker_callbacks(user_may_create_room=self.may_create)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config

    async def may_create(self, user_id: str, config: dict[str, Any]) -> Any:
        if CREATION_MARKER in config.get("creation_content", {}):
            await self._api.sleep(self._seconds)
        return NOT_SPAM


def slow_rooms(seconds: float = 1) -> dict[str, Any]:
    return {
        "modules": [
            {"module": MODULE, "config": {}},
            {"module": f"{__name__}.SlowRooms", "config": {"seconds": seconds}},
        ]
    }


SLOW_ROOMS = slow_rooms()


@logcontext_clean
class ProgressTestCase(ParentRoomTestCase):
    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        super().prepare(reactor, clock, hs)
        self.module = find_module(hs)

    def operation(self, op_id: str, **kw: Any) -> Any:
        return self.call("GET", "/operations/" + urllib.parse.quote(op_id), **kw)

    def answered(self, op_id: str) -> Any:
        """The operation once it has its answer, moving the clock on."""
        for _ in range(10_000):
            seen = self.operation(op_id)
            if seen["response"] is not None:
                return seen
            self.reactor.advance(0.5)
        self.fail(f"{op_id} got no answer")

    def start_in_background(self, body: dict[str, Any], **kw: Any) -> str:
        accepted = self.start({**body, "wait": False}, expect=HTTPStatus.ACCEPTED, **kw)
        self.assertEqual(list(accepted), ["operation_id"])
        op_id: str = accepted["operation_id"]
        return op_id

    def split_dying_after_three(self, instance: str, token: str) -> str:
        """A background split whose placement stops after three users, the
        operation taken over meanwhile by (``instance``, ``token``), as
        recovery does when a lease ran out (ownership.py)."""
        placer = self.module.placer
        placer.concurrency = 1
        place_one = placer.place_one
        placed: list[str] = []

        async def dies_after_three(*args: Any) -> Any:
            if len(placed) == 3:
                op = await self.module.operation_store.get(op_id)
                assert op is not None
                await self.module.ownership.transfer(op, instance, token)
                raise RuntimeError("the process died")
            placed.append(args[2])  # (parent, acting, user, room, ...)
            return await place_one(*args)

        placer.place_one = dies_after_three  # type: ignore[method-assign]
        op_id = self.start_in_background({"auto_assign": {"rooms": 2}})
        # Until the fourth placement, by the test clock (the pacer measures
        # real time and CPU: how many turns that takes varies, what it ends
        # in does not).
        self.advance_until(lambda: self.owner_of(op_id) == token)
        placer.place_one = place_one  # type: ignore[method-assign]
        self.assertEqual(len(placed), 3)
        return op_id

    def owner_of(self, op_id: str) -> str | None:
        op = self.get_success(self.module.operation_store.get(op_id))
        return op.process_token if op is not None else None

    def advance_until(self, done: Any, seconds: float = 600) -> None:
        """Move the test clock on, a tenth of a second at a time, until
        ``done()``; fail after ``seconds`` of it."""
        for _ in range(int(seconds * 10)):
            if done():
                return
            self.reactor.advance(0.1)
        self.fail(f"not done after {seconds} s of the test clock")

    def split_pausing_after_three(self) -> tuple[str, list[tuple[str, str]]]:
        """A background split whose fourth placement waits 30 s; returns
        once three are placed, with the (user, room) pairs placed (the list
        grows as placement goes on)."""
        placer = self.module.placer
        placer.concurrency = 1
        place_one = placer.place_one
        placed: list[tuple[str, str]] = []

        async def slow_after_three(*args: Any) -> Any:
            if len(placed) == 3:
                await self.module_api.sleep(30)  # the test acts meanwhile
            placed.append((args[2], args[3]))  # (parent, acting, user, room, ...)
            return await place_one(*args)

        placer.place_one = slow_after_three  # type: ignore[method-assign]
        self.addCleanup(setattr, placer, "place_one", place_one)
        op_id = self.start_in_background({"auto_assign": {"rooms": 2}})
        self.advance_until(lambda: len(placed) == 3)
        return op_id, placed

    def assert_each_invited_once(self, op_id: str) -> None:
        """Every user of the split invited to their room exactly once."""
        placer = self.module.placer
        rooms = self.get_success(placer.assignment.room_ids(op_id))
        invited = [u for room in rooms.values() for u in self.invites_in(room)]
        self.assertEqual(sorted(invited), sorted(self.users))

    def invites_in(self, room_id: str) -> list[str]:
        """Every invite event of ``room_id``, by invitee (repeats included)."""
        channel = self.make_request(
            "GET",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/messages"
            "?dir=b&limit=1000",
            access_token=self.host_tok,
        )
        return [
            e["state_key"]
            for e in channel.json_body["chunk"]
            if e["type"] == "m.room.member" and e["content"]["membership"] == "invite"
        ]

    # --- room_size ----------------------------------------------------------------

    def test_room_size_sets_the_count_and_sizes_differ_by_at_most_one(self) -> None:
        for size, sizes in ((4, [3, 3]), (2, [2, 2, 2]), (6, [6]), (5, [3, 3])):
            result = self.start(
                {"auto_assign": {"room_size": size}, "replace": True, "move": "suggest"}
            )
            self.assertEqual(sorted(len(r["users"]) for r in result["rooms"]), sizes)
            self.assertEqual(
                sorted(u for r in result["rooms"] for u in r["users"]),
                sorted(self.users),
            )

    @override_config(module_config(max_child_rooms=2))
    def test_room_size_needing_too_many_rooms_or_both_counts_is_400(self) -> None:
        rooms_before = self.local_room_count()
        body = self.start(
            {"auto_assign": {"room_size": 2}}, expect=HTTPStatus.BAD_REQUEST
        )
        self.assertEqual(body["errcode"], "M_INVALID_PARAM")
        self.assertIn(
            "auto_assign.room_size: 6 users in rooms of 2 need 3", body["error"]
        )
        for auto in ({"rooms": 2, "room_size": 2}, {}):
            body = self.start({"auto_assign": auto}, expect=HTTPStatus.BAD_REQUEST)
            self.assertEqual(body["errcode"], "M_MISSING_PARAM")
            self.assertIn("auto_assign.rooms: give either", body["error"])
        self.assertEqual(self.local_room_count(), rooms_before)

    # --- wait: false --------------------------------------------------------------

    @override_config(SLOW_ROOMS)
    def test_wait_false_answers_at_once_and_progress_moves_to_the_answer(self) -> None:
        channel = self.make_request(
            "POST",
            "/_synapse/client/breakout/v1" + self.room_path(),
            {
                "acting_user": self.host,
                "auto_assign": {"room_size": 1},
                "wait": False,
                "txn_id": "bg",
            },
            access_token=self.admin_tok,
            await_result=False,
        )
        # The answer comes before the first room exists.
        while not channel.is_finished():
            self.reactor.advance(0.005)
        self.assertEqual(channel.code, HTTPStatus.ACCEPTED, channel.json_body)
        op_id = channel.json_body["operation_id"]
        seen = [self.operation(op_id)]
        self.assertEqual(seen[0]["state"], "pending")
        self.assertEqual(seen[0]["progress"]["rooms_total"], 6)
        self.assertLess(seen[0]["progress"]["rooms_created"], 6)
        self.assertEqual(self.call("GET", self.room_path())["operation"], seen[0])
        while seen[-1]["response"] is None:
            self.reactor.advance(0.5)
            seen.append(self.operation(op_id))
        progress = [
            (p["progress"]["rooms_created"], p["progress"]["users_placed"])
            for p in seen
        ]
        self.assertEqual(progress, sorted(progress))  # never backwards
        self.assertGreater(len(set(progress)), 3)  # seen moving
        self.assertEqual(progress[-1], (6, 6))
        final = seen[-1]
        self.assertEqual(final["state"], "committed")
        self.assertEqual(final["progress"]["users_total"], 6)
        self.assertIsNone(final["error"])
        answer = final["response"]
        self.assertEqual(answer["failed_users"], [])
        for room in answer["rooms"]:
            (user,) = room["users"]
            self.assertEqual(self.membership_in(room["room_id"], user), "invite")
        # The same txn_id answers the same operation; GET no longer shows it.
        again = self.start(
            {"auto_assign": {"room_size": 1}, "wait": False, "txn_id": "bg"},
            expect=HTTPStatus.ACCEPTED,
        )
        self.assertEqual(again["operation_id"], op_id)
        self.assertIsNone(self.call("GET", self.room_path())["operation"])

    @override_config(slow_rooms(20))
    def test_wait_true_answers_202_after_50_s_and_the_start_goes_on(self) -> None:
        # Four rooms of 20 s each: not done within the 50 s a wait: true
        # start is waited for (reverse proxies end requests at about 60 s).
        body = {"auto_assign": {"rooms": 4}, "txn_id": "slow"}
        accepted = self.start(body, expect=HTTPStatus.ACCEPTED)
        self.assertEqual(list(accepted), ["operation_id"])
        op_id = accepted["operation_id"]
        seen = self.operation(op_id)
        self.assertEqual(seen["state"], "pending")
        self.assertLess(seen["progress"]["rooms_created"], 4)
        # Asked again meanwhile, with the same txn_id: still under way.
        self.start(body, expect=HTTPStatus.CONFLICT)
        final = self.answered(op_id)
        self.assertEqual(final["state"], "committed")
        self.assertEqual(final["progress"]["users_placed"], len(self.users))
        self.assertEqual(final["response"]["failed_users"], [])
        # Once done, the same txn_id answers what the start came to.
        self.assertEqual(self.start(body), final["response"])

    @logcontext_clean
    def test_a_background_start_keeps_synapse_logging_contexts(self) -> None:
        """The start goes on in its own background process after the 202:
        Synapse neither loses its metrics nor logs "from sentinel context"."""
        seen: list[str] = []

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                seen.append(record.getMessage())

        handler = Collect(logging.WARNING)
        logging.getLogger("synapse").addHandler(handler)
        try:
            op_id = self.start_in_background({"auto_assign": {"rooms": 2}})
            final = self.answered(op_id)
        finally:
            logging.getLogger("synapse").removeHandler(handler)
        self.assertEqual(final["progress"]["users_placed"], len(self.users))
        self.assertEqual([m for m in seen if "sentinel" in m], [])

    def test_wait_false_refused_before_journalling_answers_the_error(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        body = self.start(
            {"rooms": [{"name": "B"}], "wait": False}, expect=HTTPStatus.CONFLICT
        )
        self.assertEqual(body["errcode"], "ORG.MATRIX.MSC3985.BREAKOUT_ACTIVE")
        body = self.start(
            {"rooms": [{"name": "B"}], "wait": "no"}, expect=HTTPStatus.BAD_REQUEST
        )
        self.assertIn("wait: must be true or false", body["error"])

    @override_config(faults(deny_room="Room 2"))
    def test_background_failure_is_rolled_back_and_reported(self) -> None:
        rooms_before = self.local_room_count()
        op_id = self.start_in_background({"auto_assign": {"rooms": 3}})
        for _ in range(3):
            self.reactor.advance(61)
            self.pump(1)
        got = self.operation(op_id)
        self.assertEqual(got["state"], "rolled_back")
        self.assertEqual(got["error"]["errcode"], "M_FORBIDDEN")
        self.assertIsNone(got["response"])
        self.assertEqual(self.local_room_count(), rooms_before)

    @override_config(module_config(admin_api={"allow_room_moderators": True}))
    def test_operation_is_visible_to_its_caller_and_server_admins_only(self) -> None:
        op_id = self.start_in_background(
            {"rooms": [{"name": "A"}], "acting_user": self.mod}, tok=self.mod_tok
        )
        self.pump(1)
        self.assertEqual(self.operation(op_id, tok=self.mod_tok)["state"], "committed")
        self.assertEqual(self.operation(op_id)["operation_id"], op_id)  # admin
        for tok in (self.host_tok, self.toks[self.users[0]]):
            body = self.operation(op_id, tok=tok, expect=HTTPStatus.NOT_FOUND)
            self.assertEqual(body["errcode"], "M_NOT_FOUND")
        body = self.operation("no-such", expect=HTTPStatus.NOT_FOUND)
        self.assertEqual(body["errcode"], "M_NOT_FOUND")
        channel = self.make_request("GET", "/_synapse/client/breakout/v1/operations/x")
        self.assertEqual(channel.code, HTTPStatus.UNAUTHORIZED)

    # --- journalled placement -----------------------------------------------------

    def test_get_serves_the_assignment_from_the_journal(self) -> None:
        result = self.start({"auto_assign": {"rooms": 2}, "move": "suggest"})
        described = self.call("GET", self.room_path())
        self.assertEqual(
            {r["room_id"]: r["users"] for r in described["rooms"]},
            {r["room_id"]: r["users"] for r in result["rooms"]},
        )
        journalled = self.get_success(
            self.module.placer.assignment.rooms(
                self.get_success(
                    self.module.operation_store.get_running(self.parent)
                ).op_id  # type: ignore[union-attr]
            )
        )
        self.assertEqual(
            journalled, {r["room_id"]: r["users"] for r in result["rooms"]}
        )

    def test_placement_left_by_a_dead_process_is_resumed_without_repeats(
        self,
    ) -> None:
        placer = self.module.placer
        # Another process of this instance took it over, and is gone too.
        op_id = self.split_dying_after_three("master", "dead")
        # Three were invited and journalled; the process that was taken for
        # dead stopped without an answer.
        left = self.operation(op_id)
        self.assertEqual(left["state"], "committed")
        self.assertIsNone(left["response"])
        self.assertEqual(left["progress"]["users_placed"], 3)
        self.assertIsNotNone(self.call("GET", self.room_path())["operation"])
        self.get_success(self.module.loops.recover())
        self.pump(1)
        final = self.operation(op_id)
        self.assertEqual(final["progress"]["users_placed"], 6)
        self.assertEqual(final["response"]["failed_users"], [])
        self.assert_each_invited_once(op_id)
        self.assertEqual(self.get_success(placer.assignment.planned(op_id)), [])
        self.assertIsNone(self.call("GET", self.room_path())["operation"])

    # Only the test runs recovery: the looping one would look at the lease
    # at times the test does not choose.
    @override_config(module_config(recovery_interval_seconds=86_400))
    def test_placement_left_by_a_worker_that_never_returns_is_resumed(
        self,
    ) -> None:
        """Another instance's process died while placing: its lease stands
        still, and recovery here takes the placement over once it stood
        still for a lease (two looks, each a recovery run).

        Driven, not waited on: recovery is run by the test at chosen times
        of the test clock, and the answer is waited for by looking at it."""
        # As if worker1 had taken it over, then died in its turn.
        op_id = self.split_dying_after_three("worker1", "t")
        loops = self.module.loops
        # The first look sees worker1's lease: alive, nothing resumed.
        self.assertEqual(self.get_success(loops.recover()), 0)
        self.assertEqual(self.operation(op_id)["progress"]["users_placed"], 3)
        # Less than a lease later, the counter stood still: still alive.
        self.reactor.advance(LEASE_MS / 1000 - 1)
        self.assertEqual(self.get_success(loops.recover()), 0)
        self.assertEqual(self.operation(op_id)["progress"]["users_placed"], 3)
        # A lease after the first look: worker1 is dead, and it is resumed.
        self.reactor.advance(1)
        self.assertEqual(self.get_success(loops.recover()), 1)
        final = self.answered(op_id)
        self.assertEqual(final["progress"]["users_placed"], len(self.users))
        self.assertEqual(final["response"]["failed_users"], [])
        self.assert_each_invited_once(op_id)
        self.assertIsNone(self.call("GET", self.room_path())["operation"])

    def test_an_end_stops_the_placement_and_its_announcement(self) -> None:
        placer = self.module.placer
        op_id, placed_rooms = self.split_pausing_after_three()
        self.call("DELETE", self.room_path())
        final = self.answered(op_id)
        placed = [user for user, _ in placed_rooms]
        # The one in flight went on; nobody after it was placed.
        self.assertEqual(len(placed), 4)
        failed = {f["user_id"]: f for f in final["response"]["failed_users"]}
        self.assertEqual(set(failed), set(self.users) - set(placed))
        for entry in failed.values():
            self.assertEqual(entry["errcode"], "M_UNKNOWN")
            self.assertIn("ended before this user was placed", entry["error"])
        rooms = self.get_success(placer.assignment.room_ids(op_id))
        invited = {u for room in rooms.values() for u in self.invites_in(room)}
        self.assertEqual(invited, set(placed))
        # Ended, then never announced as started.
        self.assertEqual(self.notice_bodies(self.parent, "started"), [])
        self.assertEqual(len(self.notices(self.parent, "ended")), 1)

    def test_a_move_while_placing_is_not_undone_by_the_placement(self) -> None:
        placer = self.module.placer
        op_id, placed = self.split_pausing_after_three()
        rooms = self.get_success(placer.assignment.rooms(op_id))
        (first, placed_there), (second, waiting) = sorted(
            rooms.items(), key=lambda room: placed[0][1] != room[0]
        )
        self.assertEqual(sorted(u for u, _ in placed), sorted(placed_there))
        moved, sent_back = waiting[-1], waiting[-2]
        self.call(
            "POST", self.room_path(suffix="/move"), {"user_id": moved, "to": first}
        )
        self.call(
            "POST", self.room_path(suffix="/move"), {"user_id": sent_back, "to": None}
        )
        final = self.answered(op_id)
        # The placement left both alone; the move placed the one it moved.
        self.assertNotIn(moved, [u for u, _ in placed])
        self.assertNotIn(sent_back, [u for u, _ in placed])
        self.assertEqual(self.invites_in(first).count(moved), 1)
        self.assertNotIn(moved, self.invites_in(second))
        self.assertNotIn(sent_back, self.invites_in(second))
        self.assertEqual(final["response"]["failed_users"], [])
        self.assertEqual(final["progress"]["users_placed"], len(self.users) - 1)
        # Finished: no operation left to resume or to show.
        self.assertEqual(self.get_success(placer.assignment.planned(op_id)), [])
        self.assertIsNone(self.call("GET", self.room_path())["operation"])

    def losing_the_first_batch(self) -> list[int]:
        """The first batch of placement results is lost (a database error):
        returns the sizes of the batches lost."""
        placer = self.module.placer
        record = placer.assignment.record
        lost: list[int] = []

        async def loses_the_first_batch(op_id: str, outcomes: Any) -> None:
            if not lost:
                lost.append(len(outcomes))
                raise RuntimeError("database connection lost")
            await record(op_id, outcomes)

        placer.assignment.record = loses_the_first_batch  # type: ignore[method-assign]
        return lost

    def test_a_retry_leaves_alone_who_accepted_or_declined_meanwhile(self) -> None:
        placer = self.module.placer
        lost = self.losing_the_first_batch()
        op_id = self.start_in_background({"auto_assign": {"rooms": 2}})
        for _ in range(100):
            if lost:
                break
            self.reactor.advance(0.1)
        self.assertEqual(lost, [len(self.users)])  # all invited, none recorded
        # Before the retry (5 s later), one accepts and one declines.
        rooms = self.get_success(placer.assignment.rooms(op_id))
        (room, users), *_ = sorted(rooms.items())
        accepts, declines = users[:2]
        self.helper.join(room, accepts, tok=self.toks[accepts])
        self.helper.leave(room, declines, tok=self.toks[declines])
        final = self.answered(op_id)
        self.assertEqual(final["response"]["failed_users"], [])
        self.assertEqual(self.membership_in(room, accepts), "join")
        self.assertEqual(self.membership_in(room, declines), "leave")
        self.assertEqual(self.invites_in(room).count(declines), 1)  # not again

    def test_a_pass_that_stops_on_a_server_error_is_tried_again_without_repeats(
        self,
    ) -> None:
        placer = self.module.placer
        placer.concurrency = 1
        failures = self.losing_the_first_batch()
        op_id = self.start_in_background({"auto_assign": {"rooms": 2}})
        final = self.answered(op_id)
        self.assertEqual(failures, [len(self.users)])  # every result was lost
        self.assertEqual(final["state"], "committed")
        self.assertEqual(final["response"]["failed_users"], [])
        self.assertEqual(final["progress"]["users_placed"], len(self.users))
        rooms = self.get_success(placer.assignment.room_ids(op_id))
        invited = [u for room in rooms.values() for u in self.invites_in(room)]
        self.assertEqual(sorted(invited), sorted(self.users))  # each exactly once
        self.assertIsNone(self.call("GET", self.room_path())["operation"])

    def test_placing_that_keeps_stopping_gives_its_users_up_with_an_answer(
        self,
    ) -> None:
        placer = self.module.placer
        calls: list[str] = []

        async def broken(*args: Any) -> Any:
            calls.append(args[2])  # (parent, acting, user, ...)
            raise RuntimeError("a bug in the placing loop")

        placer.place_one = broken  # type: ignore[method-assign]
        op_id = self.start_in_background({"auto_assign": {"rooms": 2}})
        final = self.answered(op_id)
        # Each pass stopped at its first user, in one room or both, and a
        # stopped pass takes no further room.
        self.assertGreaterEqual(len(calls), placing.ATTEMPTS)
        self.assertLessEqual(len(calls), 2 * placing.ATTEMPTS)
        rooms = self.get_success(placer.assignment.room_ids(op_id))
        self.assertEqual([u for r in rooms.values() for u in self.invites_in(r)], [])
        failed = final["response"]["failed_users"]
        self.assertEqual(sorted(f["user_id"] for f in failed), sorted(self.users))
        self.assertEqual({f["errcode"] for f in failed}, {"M_UNKNOWN"})
        self.assertIn("server error", failed[0]["error"])
        self.assertEqual(final["progress"]["failed_users"], len(self.users))
        self.assertIsNone(self.call("GET", self.room_path())["operation"])
