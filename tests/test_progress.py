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

from synapse_breakout import placing
from synapse_breakout.journal import CREATION_MARKER
from synapse_breakout.progress import TOLD_TICK_SECONDS


class SlowRooms:
    """Another module that makes each break-out room's creation take one second.

    Only the break-out's children (they carry its marker): the parent, made by
    Synapse's test helper, must be done within the helper's request timeout
    (one second of the test clock in Synapse 1.141).
    """

    def __init__(self, config: dict[str, Any], api: ModuleApi):
        self._api = api
        api.register_spam_checker_callbacks(user_may_create_room=self.may_create)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config

    async def may_create(self, user_id: str, config: dict[str, Any]) -> Any:
        if CREATION_MARKER in config.get("creation_content", {}):
            await self._api.sleep(1)
        return NOT_SPAM


SLOW_ROOMS = {
    "modules": [
        {"module": MODULE, "config": {}},
        {"module": f"{__name__}.SlowRooms", "config": {}},
    ]
}


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
            self.reactor.advance(TOLD_TICK_SECONDS)
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
            self.module.operations.placement.placer.assignment.rooms(
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
        placer = self.module.operations.placement.placer
        placer.concurrency = 1
        place_one = placer._place_one
        placed: list[str] = []

        async def dies_after_three(*args: Any) -> Any:
            if len(placed) == 3:
                # Its lease ran out (journal.py): another process may take
                # the operation over, and does here, before it tries again.
                op = await self.module.operation_store.get(op_id)
                assert op is not None
                await placer.assignment.claim(op_id, op.process_token, "master", "dead")
                raise RuntimeError("the process died")
            placed.append(args[1])
            return await place_one(*args)

        placer._place_one = dies_after_three
        op_id = self.start_in_background({"auto_assign": {"rooms": 2}})
        self.pump(1)
        placer._place_one = place_one
        # Three were invited and journalled; the process that was taken for
        # dead stopped without an answer.
        left = self.operation(op_id)
        self.assertEqual(left["state"], "committed")
        self.assertIsNone(left["response"])
        self.assertEqual(left["progress"]["users_placed"], 3)
        self.assertIsNotNone(self.call("GET", self.room_path())["operation"])
        self.get_success(self.module.lifecycle.recover())
        self.pump(1)
        final = self.operation(op_id)
        self.assertEqual(final["progress"]["users_placed"], 6)
        self.assertEqual(final["response"]["failed_users"], [])
        rooms = self.get_success(placer.assignment.room_ids(op_id))
        invited = [u for room in rooms.values() for u in self.invites_in(room)]
        self.assertEqual(sorted(invited), sorted(self.users))  # each exactly once
        self.assertEqual(self.get_success(placer.assignment.planned(op_id)), [])
        self.assertIsNone(self.call("GET", self.room_path())["operation"])

    def test_a_pass_that_stops_on_a_server_error_is_tried_again_without_repeats(
        self,
    ) -> None:
        placer = self.module.operations.placement.placer
        placer.concurrency = 1
        record = placer.assignment.record
        failures: list[int] = []

        async def loses_the_first_batch(op_id: str, outcomes: Any) -> None:
            if not failures:
                failures.append(len(outcomes))
                raise RuntimeError("database connection lost")
            await record(op_id, outcomes)

        placer.assignment.record = loses_the_first_batch  # type: ignore[method-assign]
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
        placer = self.module.operations.placement.placer
        calls: list[str] = []

        async def broken(*args: Any) -> Any:
            calls.append(args[1])
            raise RuntimeError("a bug in the placing loop")

        placer._place_one = broken
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
