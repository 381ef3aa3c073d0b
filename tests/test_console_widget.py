"""The console as a room widget (``console.widget``, SPEC 10): a start adds it
to the parent, the end removes it, where the acting user may send it."""

from __future__ import annotations

from typing import Any

from harness import ParentRoomTestCase, find_module, module_config
from synapse.module_api import make_deferred_yieldable
from tests.unittest import override_config
from twisted.internet import defer

from synapse_breakout.rooms.console_widget import WIDGET_KEY, WIDGET_TYPE


class ConsoleWidgetTestCase(ParentRoomTestCase):
    def widget(self, parent: str | None = None) -> Any:
        """The widget's content in the parent, None without one."""
        found = self.state(parent or self.parent, WIDGET_TYPE, WIDGET_KEY)
        return found or None

    def widget_sender(self) -> str:
        state = self.get_success(
            self.module_api.get_room_state(self.parent, [(WIDGET_TYPE, WIDGET_KEY)])
        )
        return str(state[(WIDGET_TYPE, WIDGET_KEY)].sender)

    def start_and_announce(self, body: dict[str, Any]) -> Any:
        """A start, and its notices and widget sent (after its answer, each a
        step of the pacer: rooms/pacing.py)."""
        answer = self.start(body)
        self.pump(0.1)  # 10 s, in steps: the pacer's pauses tick every 5 ms
        return answer

    def test_a_start_adds_the_console_and_the_end_removes_it(self) -> None:
        self.assertIsNone(self.widget())
        self.start_and_announce({"rooms": [{"name": "A", "users": self.users[:1]}]})
        widget = self.widget()
        self.assertEqual(widget["type"], "m.custom")
        self.assertEqual(widget["name"], "Break-out rooms")
        # The console opens the widget's room: the client fills it in.
        self.assertTrue(
            widget["url"].endswith(
                "/_synapse/client/breakout/console/?room=$matrix_room_id"
            ),
            widget["url"],
        )
        self.assertTrue(widget["url"].startswith(self.hs.config.server.public_baseurl))
        self.assertEqual(self.widget_sender(), self.host)  # the acting user
        self.call("DELETE", self.room_path())
        self.assertIsNone(self.widget())

    def test_the_timer_removes_it_and_a_replacement_keeps_it(self) -> None:
        self.start_and_announce({"rooms": [{"name": "A"}], "duration_seconds": 30})
        self.start_and_announce(
            {"rooms": [{"name": "B"}], "replace": True, "duration_seconds": 30}
        )
        self.assertIsNotNone(self.widget())
        self.reactor.advance(31)
        self.get_success(find_module(self.hs).loops.end_due())
        self.assertFalse(self.call("GET", self.room_path())["active"])
        self.assertIsNone(self.widget())

    def test_an_end_before_the_notices_are_out_leaves_no_widget(self) -> None:
        # On a busy server a start's notices can take minutes (they are
        # paced); its end may come first: the widget must not appear after
        # it. Here the notices wait until the end is done.
        announcer = find_module(self.hs).announcer
        after_start = announcer.after_start
        end_done: defer.Deferred[None] = defer.Deferred()

        async def slow_notices(*args: Any, **kwargs: Any) -> None:
            await make_deferred_yieldable(end_done)
            await after_start(*args, **kwargs)

        announcer.after_start = slow_notices  # type: ignore[method-assign]
        self.start({"rooms": [{"name": "A"}]})
        self.call("DELETE", self.room_path())
        end_done.callback(None)
        self.pump(0.1)
        self.assertFalse(self.call("GET", self.room_path())["active"])
        self.assertIsNone(self.widget())

    def test_no_widget_where_the_acting_user_may_not_send_one(self) -> None:
        levels = self.state(self.parent, "m.room.power_levels")
        levels["events"] = {**levels.get("events", {}), WIDGET_TYPE: 100}
        self.helper.send_state(
            self.parent, "m.room.power_levels", levels, tok=self.host_tok
        )
        # The moderator (50) acts: the start goes on without the widget.
        result = self.start({"rooms": [{"name": "A"}], "acting_user": self.mod})
        self.assertEqual(len(result["rooms"]), 1)
        self.assertIsNone(self.widget())
        self.call("DELETE", self.room_path())

    @override_config(module_config(console={"enabled": True, "widget": False}))
    def test_off_adds_nothing(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        self.assertIsNone(self.widget())

    @override_config(module_config(console={"enabled": False}))
    def test_no_widget_without_the_console(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        self.assertIsNone(self.widget())

    def test_a_widget_someone_changed_is_still_removed_by_the_end(self) -> None:
        self.start({"rooms": [{"name": "A"}]})
        self.helper.send_state(
            self.parent,
            WIDGET_TYPE,
            {"type": "m.custom", "url": "https://elsewhere.example/", "name": "x"},
            tok=self.host_tok,
            state_key=WIDGET_KEY,
        )
        self.call("DELETE", self.room_path())
        self.assertIsNone(self.widget())
