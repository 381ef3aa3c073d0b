"""docs/participants.md's transcript is what the module really sends.

A break-out runs in Synapse's harness from start to end; every notice a
participant sees is rendered as the plain text any client shows, with room
and user IDs replaced by readable ones, and compared with the transcript in
the document. After changing a notice's wording, regenerate the transcript:

    BREAKOUT_WRITE_DOCS=1 .venv/bin/tox -e py -- tests/test_participants_doc.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from harness import ParentRoomTestCase

from synapse_breakout.matrix.notices import NOTICE_KEY

DOC = Path(__file__).resolve().parent.parent / "docs" / "participants.md"
START, END = "<!-- transcript:start -->\n", "<!-- transcript:end -->\n"


class TranscriptTestCase(ParentRoomTestCase):
    def prepare(self, *args: Any) -> None:
        super().prepare(*args)
        # The session begins at 14:00 UTC (the test clock starts near 0).
        self.reactor.advance(14 * 3600 - self.clock.time())
        self.names = {self.parent: "!main"}
        self.helper.send_state(
            self.parent, "m.room.name", {"name": "Team meeting"}, tok=self.host_tok
        )
        self.lines: list[str] = []
        self.seen: set[str] = set()
        self.people = []
        for name in ("alice", "bob", "carol", "dave"):
            user = self.register_user(name, "pass")
            self.toks[user] = self.login(name, "pass")
            self.helper.join(self.parent, user, tok=self.toks[user])
            self.people.append(user)

    def readable(self, text: str) -> str:
        for room_id, name in self.names.items():
            text = text.replace(room_id, name + ":example.org")
        text = text.replace("%21", "!")
        return re.sub(r"(@[a-z0-9]+):test\b", r"\1:example.org", text).replace(
            "via=test", "via=example.org"
        )

    def step(self, title: str, what: str) -> None:
        self.lines += [f"### {title}", "", what, ""]

    def show(self, room_id: str, where: str, kind: str) -> None:
        """The newest notice of ``kind`` in ``room_id``, as a client shows it."""
        for event in self.messages(room_id):
            content = event["content"]
            if content.get(NOTICE_KEY) == kind and event["event_id"] not in self.seen:
                self.seen.add(event["event_id"])
                sender = self.readable(event["sender"])
                self.lines.append(f"In **{where}**, from {sender} (`{kind}`):")
                self.lines.append("")
                self.lines += [
                    f"> {self.readable(line)}".rstrip()
                    for line in content["body"].split("\n")
                ]
                self.lines.append("")
                return
        raise AssertionError(f"no {kind} notice in {where}")

    def transcript(self) -> str:
        alice, bob, carol, dave = self.people
        result = self.start(
            {
                "rooms": [
                    {"name": "Table 1", "users": [alice, bob]},
                    {"name": "Table 2", "users": [carol, dave]},
                ],
                "duration_seconds": 1800,
            }
        )
        table1, table2 = (r["room_id"] for r in result["rooms"])
        self.names.update({table1: "!table1", table2: "!table2"})
        self.step(
            "1. The break-out starts",
            "Everyone assigned gets an invitation to their room, and the main "
            "room says where to go (a rich client shows the links as room names "
            "and the users as mention pills):",
        )
        self.show(self.parent, "Team meeting", "started")
        self.helper.join(table1, alice, tok=self.toks[alice])
        self.step(
            "2. In the break-out room",
            "Whoever opens the invitation finds a welcome with the way back:",
        )
        self.show(table1, "Table 1", "welcome")
        self.call(
            "POST",
            self.room_path(suffix="/broadcast"),
            {"body": "Write your ideas down!"},
        )
        self.step(
            "3. The host broadcasts", "Every break-out room gets the host's words:"
        )
        self.show(table1, "Table 1", "broadcast")
        self.call("POST", self.room_path(suffix="/deadline"), {"add_seconds": -1380})
        self.step("4. The host shortens the time", "Every break-out room is told:")
        self.show(table1, "Table 1", "deadline")
        for _ in range(125):
            self.reactor.advance(1)
        self.step("5. Before the end", "At 5 minutes and at 1 minute left:")
        self.show(table1, "Table 1", "warning")
        for _ in range(240):
            self.reactor.advance(1)
        self.show(table1, "Table 1", "warning")
        self.call(
            "POST",
            self.room_path(suffix="/help"),
            {"room_id": table1, "message": "Can someone explain step 2?"},
            tok=self.toks[alice],
        )
        self.step(
            "6. Asking for help",
            "A participant calls `POST .../help` (see admin_api.md); the main "
            "room gets, mentioning the host:",
        )
        self.show(self.parent, "Team meeting", "help")
        self.call("DELETE", self.room_path(), {"message": "Thanks, everyone!"})
        self.step(
            "7. The end",
            "Every break-out room gets the host's message and the way back; "
            "invitations nobody accepted are withdrawn; the main room says:",
        )
        self.show(table1, "Table 1", "ended")
        self.show(self.parent, "Team meeting", "ended")
        return "\n".join(self.lines).rstrip() + "\n"

    def test_the_document_shows_what_is_sent(self) -> None:
        transcript = self.transcript()
        text = DOC.read_text(encoding="utf-8")
        head, _, rest = text.partition(START)
        _, _, tail = rest.partition(END)
        if os.environ.get("BREAKOUT_WRITE_DOCS") == "1":
            DOC.write_text(head + START + transcript + END + tail, encoding="utf-8")
        self.assertIn(START + transcript + END, DOC.read_text(encoding="utf-8"))
