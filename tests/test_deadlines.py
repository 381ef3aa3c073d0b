"""Deadlines (deadlines.py): POST .../deadline and the warnings before the end."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from harness import ParentRoomTestCase, find_module, module_config
from tests.unittest import override_config
from twisted.internet import defer

from synapse_breakout.matrix.notices import EVENT_ID_KEY
from synapse_breakout.operations.deadline import due_warnings, warning_seconds

MIN = 60_000
FIVE = "5 minutes left in this break-out."
ONE = "1 minute left in this break-out."


def test_due_warnings() -> None:
    offsets = (300, 60)
    none: frozenset[int] = frozenset()
    # Armed at 0, deadline at 10 minutes.
    assert due_warnings(offsets, 10 * MIN, 0, 5 * MIN - 1, none) == ()
    assert due_warnings(offsets, 10 * MIN, 0, 5 * MIN, none) == (300,)
    assert due_warnings(offsets, 10 * MIN, 0, 5 * MIN, frozenset({300})) == ()
    # Both passed (the server was down): both due, the caller sends the last.
    assert due_warnings(offsets, 10 * MIN, 0, 9.5 * MIN, none) == (300, 60)
    # The deadline passed too: nothing.
    assert due_warnings(offsets, 10 * MIN, 0, 10 * MIN, none) == ()
    # Set 2 minutes before the end: the 5-minute warning is never due.
    assert due_warnings(offsets, 10 * MIN, 8 * MIN, 9 * MIN, none) == (60,)


def test_warning_seconds() -> None:
    assert warning_seconds(300, 10 * MIN, 5 * MIN + 1000) == 300
    # Late (after a restart): the time actually left.
    assert warning_seconds(300, 10 * MIN, 9 * MIN + 15_000) == 45


class DeadlineTestCase(ParentRoomTestCase):
    def start_timed(self, seconds: int | None) -> Any:
        result = self.start(
            {
                "rooms": [
                    {"name": "A", "users": self.users[:1]},
                    {"name": "B", "users": self.users[1:2]},
                ],
                "duration_seconds": seconds,
            }
        )
        self.children = [r["room_id"] for r in result["rooms"]]
        return result

    def bodies(self, kind: str) -> list[str]:
        """The notices of ``kind``, the same in every child."""
        first = self.notice_bodies(self.children[0], kind)
        for child in self.children[1:]:
            self.assertEqual(self.notice_bodies(child, kind), first)
        return first

    def sent_before(self, kind: str, ends_at: int) -> list[tuple[float, str]]:
        """(seconds before ``ends_at``, body) of each notice of ``kind`` in
        the first child, oldest first."""
        return [
            ((ends_at - m["origin_server_ts"]) / 1000, m["content"]["body"])
            for m in reversed(self.messages(self.children[0]))
            if m["content"].get("org.matrix.msc3985.notice") == kind
        ]

    def assert_warned(
        self, ends_at: int, expected: list[tuple[int, str]], kind: str = "warning"
    ) -> None:
        """Each warning at its offset before ``ends_at`` (the loop ticks each
        second, requests move the test clock a little)."""
        sent = self.sent_before(kind, ends_at)
        self.assertEqual([body for _, body in sent], [body for _, body in expected])
        for (before, _), (offset, _) in zip(sent, expected, strict=True):
            self.assertTrue(offset - 2 <= before <= offset, (before, offset))

    def run_for(self, seconds: int) -> None:
        """Let ``seconds`` pass, second by second, as a running server would."""
        for _ in range(seconds):
            self.reactor.advance(1)

    def active(self) -> bool:
        return bool(self.call("GET", self.room_path())["active"])

    def deadline(self, body: Any, expect: int = HTTPStatus.OK, **kw: Any) -> Any:
        return self.call(
            "POST", self.room_path(suffix="/deadline"), body, expect=expect, **kw
        )

    def test_warnings_at_their_time_once_then_the_end(self) -> None:
        result = self.start_timed(600)
        self.run_for(599)
        self.assertTrue(self.active())
        self.run_for(10)
        self.assertFalse(self.active())
        five, one = FIVE, ONE
        self.assertEqual(self.bodies("warning"), [five, one])
        self.assert_warned(result["ends_at"], [(300, five), (60, one)])
        (warning, _) = self.notices(self.children[0], "warning")
        self.assertEqual(warning[EVENT_ID_KEY], result["event_id"])
        self.run_for(60)
        self.assertEqual(len(self.bodies("warning")), 2)

    def test_a_warning_before_the_start_is_not_sent(self) -> None:
        self.start_timed(120)
        self.run_for(125)
        self.assertEqual(self.bodies("warning"), [ONE])

    def test_moved_later_warns_again_and_ends_at_the_new_time_only(self) -> None:
        first = self.start_timed(600)["ends_at"]
        self.run_for(305)
        ends_at = self.deadline({"add_seconds": 600})["ends_at"]
        self.assertEqual(ends_at, first + 600_000)
        self.assertEqual(self.call("GET", self.room_path())["ends_at"], ends_at)
        self.assertEqual(self.bodies("deadline"), ["New deadline: 15 minutes left."])
        self.run_for(300)  # the first deadline passes
        self.assertTrue(self.active())
        self.run_for(590)
        self.assertTrue(self.active())
        self.run_for(10)
        self.assertFalse(self.active())
        five, one = FIVE, ONE
        self.assertEqual(self.bodies("warning"), [five, five, one])
        sent = self.sent_before("warning", ends_at)
        self.assertTrue(898 <= sent[0][0] <= 900)  # 5 minutes before the first
        for (before, _), offset in zip(sent[1:], (300, 60), strict=True):
            self.assertTrue(offset - 2 <= before <= offset, (before, offset))
        ((ended_before, _),) = self.sent_before("ended", ends_at)
        self.assertTrue(-2 <= ended_before <= 0)

    def test_moved_earlier_ends_at_the_new_time(self) -> None:
        self.start_timed(1800)
        wanted = self.clock.time_msec() + 200_000
        self.assertEqual(self.deadline({"ends_at": wanted}), {"ends_at": wanted})
        self.assertEqual(self.bodies("deadline"), ["New deadline: 3 minutes left."])
        self.run_for(195)
        self.assertTrue(self.active())
        self.run_for(10)
        self.assertFalse(self.active())
        self.assert_warned(wanted, [(60, ONE)])
        ((ended_before, ended),) = self.sent_before("ended", wanted)
        self.assertTrue(-2 <= ended_before <= 0)
        self.assertTrue(ended.startswith("Time is up"))

    def test_lifted_and_set_again(self) -> None:
        self.start_timed(60)
        self.assertEqual(self.deadline({"ends_at": None}), {"ends_at": None})
        self.assertEqual(
            self.bodies("deadline"), ["The deadline was lifted: no time limit."]
        )
        self.run_for(120)
        self.assertTrue(self.active())
        self.assertIsNone(self.call("GET", self.room_path())["ends_at"])
        now = self.clock.time_msec()
        ends_at = self.deadline({"add_seconds": 90})["ends_at"]
        self.assertTrue(now + 90_000 <= ends_at <= now + 92_000)
        self.run_for(95)
        self.assertFalse(self.active())
        self.assert_warned(ends_at, [(60, ONE)])

    def test_bad_requests_change_nothing(self) -> None:
        self.start_timed(600)
        before = self.call("GET", self.room_path())["ends_at"]
        now = self.clock.time_msec()
        for body, field in [
            ({}, "ends_at"),
            ({"ends_at": now + 100_000, "add_seconds": 5}, "ends_at"),
            ({"ends_at": now - 1}, "ends_at"),
            ({"ends_at": "soon"}, "ends_at"),
            ({"ends_at": True}, "ends_at"),
            ({"add_seconds": -700}, "add_seconds"),
            ({"add_seconds": 1.5}, "add_seconds"),
            ({"until": 5}, "until"),
        ]:
            error = self.deadline(body, expect=HTTPStatus.BAD_REQUEST)
            self.assertTrue(error["error"].startswith(field), (body, error))
        self.assertEqual(self.call("GET", self.room_path())["ends_at"], before)
        self.assertEqual(self.bodies("deadline"), [])

    def test_no_active_breakout_is_404_and_others_403(self) -> None:
        error = self.deadline({"add_seconds": 60}, expect=HTTPStatus.NOT_FOUND)
        self.assertEqual(error["errcode"], "M_NOT_FOUND")
        self.start_timed(600)
        tok = self.toks[self.users[0]]
        error = self.deadline({"add_seconds": 60}, expect=HTTPStatus.FORBIDDEN, tok=tok)
        self.assertEqual(error["errcode"], "M_FORBIDDEN")

    def test_two_workers_warn_once(self) -> None:
        self.start_timed(600)
        deadlines = find_module(self.hs).operations.deadlines
        self.run_for(299)
        # Time moves on without the loop's tick: two more "workers" race.
        self.reactor.rightNow += 1.5
        sent = [
            defer.ensureDeferred(deadlines.warn_due()),
            defer.ensureDeferred(deadlines.warn_due()),
        ]
        self.pump()
        self.assertEqual(sum(self.successResultOf(d) for d in sent), 1)
        self.run_for(5)
        self.assertEqual(len(self.bodies("warning")), 1)

    @override_config(module_config(warn_before_end_seconds=[30]))
    def test_configured_offsets(self) -> None:
        self.start_timed(100)
        self.run_for(105)
        self.assertEqual(self.bodies("warning"), ["30 seconds left in this break-out."])

    @override_config(module_config(notices=False))
    def test_no_notices_no_warnings(self) -> None:
        self.start_timed(400)
        self.deadline({"add_seconds": 10})
        self.run_for(415)
        self.assertFalse(self.active())
        for child in self.children:
            # Only what the end asks to say: "Time is up".
            (ended,) = self.notices(child)
            self.assertTrue(ended["body"].startswith("Time is up"))
