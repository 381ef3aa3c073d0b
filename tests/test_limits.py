"""Requests that cannot succeed create nothing; limits on delegated moderators
(SPEC section 4), in Synapse's harness."""

from __future__ import annotations

from http import HTTPStatus

from harness import BASE, UNSTABLE, ParentRoomTestCase, find_module, module_config
from synapse.types import UserID
from tests.unittest import override_config

MODERATORS = {"admin_api": {"allow_room_moderators": True}}
# 300 users whose IDs take about 210 bytes each: past 64 KiB in one event.
MANY = [f"@{'x' * 200}{i:03d}:test" for i in range(300)]
LARGE = module_config(users_must_be_members=False)


class SizeRuleTestCase(ParentRoomTestCase):
    @override_config(LARGE)
    def test_suggest_too_large_for_the_event_creates_nothing(self) -> None:
        before = self.local_room_count()
        body = self.start(
            {
                "rooms": [{"name": f"R{i}", "users": MANY[i::5]} for i in range(5)],
                "move": "suggest",
            },
            expect=HTTPStatus.BAD_REQUEST,
        )
        self.assertEqual(body["errcode"], "M_TOO_LARGE")
        self.assertEqual(self.local_room_count(), before)
        self.assertIsNone(self.state(self.parent, UNSTABLE))

    @override_config(LARGE)
    def test_invite_leaves_the_users_out_of_the_event(self) -> None:
        rooms = [{"name": f"R{i}", "users": MANY[i::5]} for i in range(5)]
        result = self.start({"rooms": rooms, "move": "suggest"}, expect=400)
        result = self.start({"rooms": rooms, "move": "invite"})
        content = self.state(self.parent, UNSTABLE)[UNSTABLE]
        self.assertEqual(len(content), 5)
        self.assertTrue(all("users" not in entry for entry in content.values()))
        # The answer and GET still carry the assignment.
        by_name = {r["name"]: r for r in result["rooms"]}
        self.assertEqual(by_name["R0"]["users"], MANY[0::5])
        got = {r["room_id"]: r for r in self.call("GET", self.room_path())["rooms"]}
        self.assertEqual(
            sorted(got[by_name["R3"]["room_id"]]["users"]), sorted(MANY[3::5])
        )


class ModeratorLimitsTestCase(ParentRoomTestCase):
    @override_config(module_config(moderator_starts_per_hour=2, **MODERATORS))
    def test_moderator_starts_per_hour(self) -> None:
        body = {"rooms": [{"name": "A"}], "replace": True}
        self.call("POST", self.room_path(), body, tok=self.mod_tok)
        self.call("POST", self.room_path(), body, tok=self.mod_tok)
        before = self.local_room_count()
        err = self.call(
            "POST",
            self.room_path(),
            body,
            tok=self.mod_tok,
            expect=HTTPStatus.TOO_MANY_REQUESTS,
        )
        self.assertEqual(err["errcode"], "M_LIMIT_EXCEEDED")
        self.assertTrue(0 < err["retry_after_ms"] <= 3600_000)
        self.assertEqual(self.local_room_count(), before)
        # Server admins are not limited; the moderator is again an hour later.
        self.call("POST", self.room_path(), {**body, "acting_user": self.host})
        self.reactor.advance(err["retry_after_ms"] / 1000 + 1)
        self.call("POST", self.room_path(), body, tok=self.mod_tok)

    @override_config(module_config(moderator_starts_per_hour=3, **MODERATORS))
    def test_the_limit_holds_for_starts_at_the_same_moment(self) -> None:
        """Eight starts of one moderator in flight at once, on eight parents:
        exactly the limit succeed (counted and recorded in one transaction),
        and the others create nothing."""
        parents = [self.make_parent() for _ in range(8)]
        before = self.local_room_count()
        channels = [
            self.make_request(
                "POST",
                BASE + self.room_path(parent),
                {"rooms": [{"name": "A"}]},
                access_token=self.mod_tok,
                await_result=False,
            )
            for parent in parents
        ]
        for channel in channels:
            channel.await_result(timeout_ms=600_000)
        codes = sorted(channel.code for channel in channels)
        self.assertEqual(codes, [200] * 3 + [429] * 5, codes)
        self.assertEqual(self.local_room_count(), before + 3)

    @override_config(module_config(**MODERATORS))
    def test_a_shadow_banned_moderator_changes_nothing(self) -> None:
        self.get_success(
            self.hs.get_datastores().main.set_shadow_banned(
                UserID.from_string(self.mod), True
            )
        )
        before = self.local_room_count()
        result = self.call(
            "POST",
            self.room_path(),
            {"rooms": [{"name": "A", "users": [self.users[0]]}]},
            tok=self.mod_tok,
        )
        # Told it worked (Synapse's convention), and nothing happened.
        self.assertEqual(result["rooms"][0]["users"], [self.users[0]])
        # Not waiting: a 202 with an operation ID, as anyone else gets.
        accepted = self.call(
            "POST",
            self.room_path(),
            {"rooms": [{"name": "A"}], "wait": False},
            tok=self.mod_tok,
            expect=HTTPStatus.ACCEPTED,
        )
        self.assertEqual(list(accepted), ["operation_id"])
        self.assertEqual(self.local_room_count(), before)
        self.assertIsNone(self.state(self.parent, UNSTABLE))
        self.assertFalse(self.call("GET", self.room_path())["active"])

    @override_config(module_config(**MODERATORS))
    def test_a_suspended_moderator_is_told_so(self) -> None:
        self.get_success(
            self.hs.get_datastores().main.set_user_suspended_status(self.mod, True)
        )
        before = self.local_room_count()
        err = self.call(
            "POST",
            self.room_path(),
            {"rooms": [{"name": "A"}]},
            tok=self.mod_tok,
            expect=HTTPStatus.FORBIDDEN,
        )
        self.assertEqual(err["errcode"], "M_USER_SUSPENDED")
        self.assertEqual(self.local_room_count(), before)


class TxnIdTestCase(ParentRoomTestCase):
    def test_a_retry_gets_the_first_answer_though_the_parent_changed(self) -> None:
        body = {"rooms": [{"name": "A", "users": [self.users[0]]}], "txn_id": "t1"}
        first = self.start(body)
        # The user leaves: planning the same body again would be a 400.
        self.helper.leave(self.parent, self.users[0], tok=self.toks[self.users[0]])
        self.assertEqual(self.start(body), first)

    def test_the_journal_hands_back_an_earlier_txn_id(self) -> None:
        store = find_module(self.hs).operation_store
        first = self.start({"rooms": [{"name": "A"}], "txn_id": "t2"})
        earlier = self.get_success(store.find_txn(self.admin, "t2"))
        assert earlier is not None
        self.assertEqual(earlier.response["body"], first)
