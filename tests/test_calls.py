"""Calls follow the break-out (SPEC section 14; docs/participants.md, "Calls").

In Synapse's harness: a parent with Element Call enabled and an open MatrixRTC
slot, as Element Web sends them, gives children where a plain member may join
the call (their call membership sent and accepted by Synapse's event auth); an
MSC3401 group call and a Jitsi widget are re-created with the child's own
identifiers; a parent without calls gives children without call state. The
pure reading of a parent's calls (matrix/calls.py) is tested at the end.
"""

from __future__ import annotations

import base64
import urllib.parse
from http import HTTPStatus
from typing import Any

from harness import ParentRoomTestCase
from test_power import Ev

from synapse_breakout.matrix.calls import (
    CALL_STATE,
    GROUP_CALL,
    RTC_SLOT,
    WIDGETS,
    child_call_state,
    parent_calls,
    room_conference_id,
)

CALL_MEMBER = "org.matrix.msc3401.call.member"
RTC_MEMBER = "org.matrix.msc4143.rtc.member"
SLOT_KEY = "m.call#ROOM"
#: A Jitsi widget as Element Web's ``addJitsiWidget`` writes it.
JITSI_URL = (
    "https://app.element.io/jitsi.html?confId=JitsiParentconference"
    "#conferenceDomain=$domain&conferenceId=$conferenceId&isAudioOnly=$isAudioOnly"
    "&displayName=$matrix_display_name&roomId=$matrix_room_id&roomName=$roomName"
)
JITSI = {
    "type": "jitsi",
    "name": "Jitsi",
    "url": JITSI_URL,
    "data": {
        "conferenceId": "JitsiParentconference",
        "roomName": "Plenary",
        "isAudioOnly": False,
        "isVideoChannel": False,
        "domain": "meet.example.org",
    },
}


def call_membership(user: str, device: str) -> dict[str, Any]:
    """A call membership as matrix-js-sdk's ``MembershipManager`` sends it
    for Element Call (``makeMyMembership``)."""
    return {
        "application": "m.call",
        "call_id": "",
        "scope": "m.room",
        "device_id": device,
        "membershipID": f"{user}:{device}",
        "expires": 14400000,
        "m.call.intent": "video",
        "focus_active": {"type": "livekit", "focus_selection": "oldest_membership"},
        "foci_preferred": [
            {
                "type": "livekit",
                "livekit_service_url": "https://livekit.example.org",
                "livekit_alias": "!parent:example.org",
            }
        ],
        "created_ts": 1700000000000,
    }


class CallsTestCase(ParentRoomTestCase):
    def levels(self, room_id: str) -> dict[str, Any]:
        levels = self.state(room_id, "m.room.power_levels")
        assert levels is not None
        return dict(levels)

    def enable_element_call(self) -> None:
        """What Element Web's "Enable Element Call" does in a public room
        (VoipRoomSettingsTab), and its labs ``ensureSlotOpen``."""
        levels = self.levels(self.parent)
        levels["events"] = {
            **levels["events"],
            "org.matrix.msc3401.call": levels.get("kick", 50),
            CALL_MEMBER: levels.get("users_default", 0),
        }
        self.helper.send_state(
            self.parent, "m.room.power_levels", levels, tok=self.host_tok
        )
        self.helper.send_state(
            self.parent,
            RTC_SLOT,
            {"status": "open", "application": {"type": "m.call"}},
            state_key=SLOT_KEY,
            tok=self.host_tok,
        )

    def start_joined(self, **extra: Any) -> list[dict[str, Any]]:
        result = self.start(
            {
                "rooms": [
                    {"name": "Table 1", "users": self.users[:2]},
                    {"name": "Table 2", "users": self.users[2:4]},
                ],
                "move": "join",
                **extra,
            }
        )
        self.pump(1)
        return list(result["rooms"])

    def call_state(self, room_id: str) -> dict[tuple[str, str], Any]:
        state = self.get_success(self.module_api.get_room_state(room_id, CALL_STATE))
        return {key: event.content for key, event in state.items()}

    def send_state_as(
        self, user: str, room_id: str, event_type: str, key: str, content: Any
    ) -> int:
        channel = self.make_request(
            "PUT",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/state/"
            f"{event_type}/{urllib.parse.quote(key)}",
            content,
            access_token=self.toks[user],
        )
        return channel.code

    def test_element_call_with_an_open_slot_follows_and_members_may_join_it(
        self,
    ) -> None:
        self.enable_element_call()
        parent_levels = self.levels(self.parent)
        rooms = self.start_joined()
        for room in rooms:
            child = room["room_id"]
            # The slot, re-created: its own event in the child, opened by the
            # acting user, with the content Element Web sends.
            self.assertEqual(
                self.call_state(child),
                {
                    (RTC_SLOT, SLOT_KEY): {
                        "status": "open",
                        "application": {"type": "m.call"},
                    }
                },
            )
            self.assertEqual(self.levels(child)["events"], parent_levels["events"])
            # A plain member joins the call: Synapse's event auth accepts their
            # call membership (state key as matrix-js-sdk makes it) and the
            # MatrixRTC membership event.
            user = room["users"][0]
            key = f"_{user}_DEVICE_m.call"
            member = call_membership(user, "DEVICE")
            self.assertEqual(
                self.send_state_as(user, child, CALL_MEMBER, key, member), 200
            )
            self.helper.send_event(
                child, RTC_MEMBER, {"membership": "join"}, tok=self.toks[user]
            )
            # Opening or closing the slot stays the moderators' (state_default).
            closed = {"status": "closed", "application": {"type": "m.call"}}
            self.assertEqual(
                self.send_state_as(user, child, RTC_SLOT, SLOT_KEY, closed),
                HTTPStatus.FORBIDDEN,
            )
        # Said where people look: the parent's started, each room's welcome.
        (started,) = self.notices(self.parent, "started")
        self.assertIn("A call is ready in each room.", started["body"])
        for room in rooms:
            (welcome,) = self.notices(room["room_id"], "welcome")
            self.assertIn("A call is ready in this room.", welcome["body"])

    def test_an_encrypted_parents_slot_is_encrypted_in_the_child(self) -> None:
        self.helper.send_state(
            self.parent,
            "m.room.encryption",
            {"algorithm": "m.megolm.v1.aes-sha2"},
            tok=self.host_tok,
        )
        self.helper.send_state(
            self.parent,
            RTC_SLOT,
            {
                "status": "open",
                "application": {"type": "m.call", "m.call.id": "parent-call"},
                "encryption": {"type": "org.matrix.msc4143.per_member"},
            },
            state_key=SLOT_KEY,
            tok=self.host_tok,
        )
        (room, _) = self.start_joined()
        self.assertEqual(
            self.call_state(room["room_id"]),
            {
                (RTC_SLOT, SLOT_KEY): {
                    "status": "open",
                    "application": {"type": "m.call"},
                    "encryption": {"type": "org.matrix.msc4143.per_member"},
                }
            },
        )

    def test_a_group_call_follows_with_a_call_id_of_its_own(self) -> None:
        call = {"m.intent": "m.room", "m.type": "m.video", "m.name": "Weekly"}
        self.helper.send_state(
            self.parent,
            GROUP_CALL,
            call,
            state_key="1700000000000abc",
            tok=self.host_tok,
        )
        self.helper.send_state(
            self.parent,
            GROUP_CALL,
            {**call, "m.terminated": "call_ended"},
            state_key="1600000000000old",
            tok=self.host_tok,
        )
        ids = set()
        for room in self.start_joined():
            ((key, content),) = self.call_state(room["room_id"]).items()
            self.assertEqual(key[0], GROUP_CALL)
            self.assertNotIn(key[1], ("1700000000000abc", "1600000000000old"))
            self.assertEqual(content, call)
            ids.add(key[1])
        self.assertEqual(len(ids), 2)

    def test_a_jitsi_widget_gives_each_room_a_conference_of_its_own(self) -> None:
        self.helper.send_state(
            self.parent, WIDGETS, JITSI, state_key="parentwidget", tok=self.host_tok
        )
        conferences = set()
        for room in self.start_joined():
            ((key, widget),) = self.call_state(room["room_id"]).items()
            self.assertEqual(key[0], WIDGETS)
            self.assertNotEqual(key[1], "parentwidget")
            conference = widget["data"]["conferenceId"]
            self.assertNotEqual(conference, "JitsiParentconference")
            self.assertRegex(conference, r"^Jitsi[A-Z][a-z]{23}$")
            self.assertEqual(
                widget["data"],
                {
                    "conferenceId": conference,
                    "roomName": room["name"],
                    "isAudioOnly": False,
                    "isVideoChannel": False,
                    "domain": "meet.example.org",
                },
            )
            self.assertEqual((widget["type"], widget["name"]), ("jitsi", "Jitsi"))
            url = urllib.parse.urlsplit(widget["url"])
            self.assertEqual(urllib.parse.parse_qs(url.query), {"confId": [conference]})
            # The client fills the rest in, per viewer: kept as it was.
            self.assertEqual(url.fragment, urllib.parse.urlsplit(JITSI_URL).fragment)
            conferences.add(conference)
        self.assertEqual(len(conferences), 2)
        (started,) = self.notices(self.parent, "started")
        self.assertIn("A call is ready in each room.", started["body"])

    def test_a_jitsi_widget_with_matrix_auth_is_named_after_the_room(self) -> None:
        jwt = {**JITSI, "data": {**JITSI["data"], "auth": "openidtoken-jwt"}}
        self.helper.send_state(
            self.parent, WIDGETS, jwt, state_key="parentwidget", tok=self.host_tok
        )
        for room in self.start_joined():
            ((_, widget),) = self.call_state(room["room_id"]).items()
            conference = base64.b32encode(room["room_id"].encode()).decode()
            self.assertEqual(widget["data"]["conferenceId"], conference.rstrip("="))
            self.assertEqual(widget["data"]["auth"], "openidtoken-jwt")

    def test_a_parent_without_calls_gives_rooms_without_call_state(self) -> None:
        # A custom widget is no call, and stays in the parent.
        self.helper.send_state(
            self.parent,
            WIDGETS,
            {"type": "m.custom", "url": "https://example.org/pad", "name": "Pad"},
            state_key="pad",
            tok=self.host_tok,
        )
        for room in self.start_joined():
            self.assertEqual(self.call_state(room["room_id"]), {})
            (welcome,) = self.notices(room["room_id"], "welcome")
            self.assertNotIn("call", welcome["body"])
        (started,) = self.notices(self.parent, "started")
        self.assertNotIn("call", started["body"])


def test_reading_a_parents_calls() -> None:
    state = {
        (RTC_SLOT, SLOT_KEY): Ev(
            "@h:x", {"status": "open", "application": {"type": "m.call"}}
        ),
        # Closed, or not matching its state key: no call (MSC4143).
        (RTC_SLOT, "m.call#other"): Ev(
            "@h:x", {"status": "closed", "application": {"type": "m.call"}}
        ),
        (RTC_SLOT, "m.call#odd"): Ev(
            "@h:x", {"status": "open", "application": {"type": "io.x"}}
        ),
        (GROUP_CALL, "ended"): Ev("@h:x", {"m.intent": "m.room", "m.terminated": "x"}),
        (GROUP_CALL, "removed"): Ev("@h:x", {}),
        (WIDGETS, "custom"): Ev("@h:x", {"type": "m.custom", "url": "https://x"}),
        (WIDGETS, "gone"): Ev("@h:x", {}),
        (WIDGETS, "nourl"): Ev("@h:x", {"type": "jitsi"}),
    }
    calls = parent_calls(state)
    assert [(s.state_key, s.application) for s in calls.slots] == [(SLOT_KEY, "m.call")]
    assert calls.group_calls == () and calls.jitsi == ()
    assert calls.ready
    assert not parent_calls({}).ready
    events = child_call_state(calls, True, "Room 1", lambda n: "x" * n)
    assert events == [
        {
            "type": RTC_SLOT,
            "state_key": SLOT_KEY,
            "content": {
                "status": "open",
                "application": {"type": "m.call"},
                "encryption": {"type": "org.matrix.msc4143.per_member"},
            },
        }
    ]
    assert room_conference_id("!a:b") == "EFQTUYQ"
