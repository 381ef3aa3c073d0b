"""Reading many users' memberships at once (members.py)."""

from __future__ import annotations

from harness import ParentRoomTestCase

from synapse_breakout.matrix.power import membership
from synapse_breakout.rooms.members import CHUNK, member_events


class MemberEventsTestCase(ParentRoomTestCase):
    def test_thousands_of_users_in_one_read(self) -> None:
        # 2,000 users in one SQL statement was "Expression tree is too large"
        # on Synapse 1.141 with SQLite; the answer must hold every member.
        strangers = [f"@nobody{i}:test" for i in range(2000)]
        self.assertGreater(len(strangers), 4 * CHUNK)
        asked = [*strangers[:1000], self.users[0], *strangers[1000:], self.users[5]]
        self.helper.leave(self.parent, self.users[5], tok=self.toks[self.users[5]])
        found = self.get_success(
            member_events(self.hs.get_module_api(), self.parent, asked)
        )
        self.assertEqual(
            {key: membership(key[1], found) for key in found},
            {
                ("m.room.member", self.users[0]): "join",
                ("m.room.member", self.users[5]): "leave",
            },
        )
