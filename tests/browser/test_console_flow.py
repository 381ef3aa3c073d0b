"""A host runs a break-out from the console, and a participant follows it.

The tests run in order and share one parent room, one host tab and one
participant tab (at a phone's width); each step is checked in the server.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import expect

from conftest import (
    API,
    Server,
    close_page,
    column,
    new_page,
    q,
    screenshot,
    sign_in,
)

HOST_ACTIONS = ("Start break-out", "Send to all rooms", "End break-out", "+5 minutes")


class Flow:
    """What the steps share."""

    def __init__(self, server: Server, browser: Any):
        self.server = server
        self.host, self.host_token, self.host_password = server.user("flowhost")
        self.people = [server.user(f"flow{i}") for i in range(6)]
        self.tokens = {user: token for user, token, _ in self.people}
        self.parent = server.synapse.create_room(
            self.host_token, preset="public_chat", name="Plenary"
        )
        for _, token, _ in self.people:
            server.synapse.join(token, self.parent)
        self.host_page = new_page(browser)
        self.participant, self.participant_token, self.participant_password = (
            self.people[0]
        )
        self.participant_page = new_page(browser, phone=True)

    def breakout(self) -> Any:
        return self.server.breakout(self.parent, self.host_token)

    def room_of(self, user: str) -> Any:
        rooms = [r for r in self.breakout()["rooms"] if user in r["users"]]
        return rooms[0] if rooms else None

    def column(self, name: str) -> Any:
        return column(self.host_page, name)


@pytest.fixture(scope="module")
def flow(server: Server, browser: Any) -> Iterator[Flow]:
    flow = Flow(server, browser)
    yield flow
    for page in (flow.host_page, flow.participant_page):
        close_page(page)


def assert_no_host_actions(page: Any) -> None:
    for name in HOST_ACTIONS:
        assert page.get_by_role("button", name=name).count() == 0, name


def test_01_host_signs_in_and_opens_the_parent(flow: Flow) -> None:
    page = flow.host_page
    sign_in(page, flow.server, flow.host, flow.host_password)
    # The password is not kept anywhere; the token only in this tab's session storage.
    assert page.evaluate("localStorage.length") == 0
    stored = page.evaluate("sessionStorage.getItem('breakout-console-token')")
    assert flow.host in stored
    item = page.get_by_role("listitem").filter(has_text="Plenary")
    assert "host" in item.inner_text()
    item.get_by_role("link", name="Plenary").click()
    page.get_by_role("heading", name="Plenary").wait_for()
    members = page.locator("#members")
    for user, _, _ in flow.people:
        members.get_by_text(user).wait_for()


def test_02_participant_sees_no_host_actions_before_a_break_out(flow: Flow) -> None:
    page = flow.participant_page
    sign_in(page, flow.server, flow.participant, flow.participant_password)
    page.get_by_text("You are in no room where you may start a break-out").wait_for()
    assert_no_host_actions(page)


def test_03_host_starts_three_rooms_with_auto_assign(flow: Flow) -> None:
    page = flow.host_page
    page.get_by_label("How").select_option("count")
    assert page.get_by_label("Room names, one a line").is_hidden()
    # A request the API refuses: its error text beside the button, nothing made.
    page.get_by_label("Number of rooms").fill("51")
    page.get_by_role("button", name="Start break-out").click()
    form = page.get_by_role("form", name="Start a break-out")
    form.get_by_role("alert").get_by_text(
        "auto_assign.rooms: must be an integer from 1 to 50"
    ).wait_for()
    assert flow.breakout()["active"] is False
    page.get_by_label("Number of rooms").fill("3")
    page.get_by_label("Move people").select_option("invite")
    page.get_by_label("Duration in minutes (0: no deadline)").fill("15")
    page.get_by_role("button", name="Start break-out").click()
    for name in ("Room 1", "Room 2", "Room 3"):
        flow.column(name).wait_for()
    # The server: three rooms, two people each, everyone invited.
    state = flow.breakout()
    assert state["active"] is True
    assert sorted(r["name"] for r in state["rooms"]) == ["Room 1", "Room 2", "Room 3"]
    assert sorted(len(r["users"]) for r in state["rooms"]) == [2, 2, 2]
    assert state["ends_at"] is not None
    for room in state["rooms"]:
        for user in room["users"]:
            assert (
                flow.server.membership(room["room_id"], user, flow.host_token)
                == "invite"
            )
            flow.column(room["name"]).locator(f'li[data-user="{user}"]').get_by_text(
                "invited"
            ).wait_for()
    page.get_by_text(re.compile(r"^1[45]:\d\d left$")).wait_for()


def test_04_participant_sees_their_room_and_time_left(flow: Flow) -> None:
    page = flow.participant_page
    mine = flow.room_of(flow.participant)
    page.reload()
    item = page.get_by_role("listitem").filter(has_text="Plenary")
    assert "participant" in item.inner_text()
    item.get_by_role("link", name="Plenary").click()
    page.get_by_role("heading", name="Your break-out room").wait_for()
    assert page.locator(".my-room").inner_text() == mine["name"]
    page.get_by_text(re.compile(r"^1[45]:\d\d left$")).wait_for()
    link = page.get_by_role("link", name="Open my room").get_attribute("href")
    assert link == f"https://matrix.to/#/{mine['room_id']}?via=localhost"
    assert_no_host_actions(page)
    screenshot(page, "console-participant.png")
    # ...and the API refuses the host's actions to a participant's own token.
    for method, suffix, body in [
        ("POST", "", {"auto_assign": {"rooms": 2}, "replace": True}),
        ("POST", "/broadcast", {"body": "hi"}),
        ("POST", "/move", {"user_id": flow.participant, "to": None}),
        ("DELETE", "", {}),
    ]:
        status, answer = flow.server.status_of(
            method,
            f"{API}/rooms/{q(flow.parent)}{suffix}",
            flow.participant_token,
            body,
        )
        assert (status, answer["errcode"]) == (403, "M_FORBIDDEN"), suffix
    assert flow.room_of(flow.participant)["room_id"] == mine["room_id"]


def test_05_host_drags_a_person_to_another_room(flow: Flow) -> None:
    state = flow.breakout()
    by_name = {r["name"]: r for r in state["rooms"]}
    user = by_name["Room 1"]["users"][0]
    person = flow.column("Room 1").locator(f'li[data-user="{user}"]')
    person.locator(".name").drag_to(flow.column("Room 2").locator("h3"))
    flow.column("Room 2").locator(f'li[data-user="{user}"]').wait_for()
    flow.column("Room 1").locator(f'li[data-user="{user}"]').wait_for(state="detached")
    assert flow.room_of(user)["room_id"] == by_name["Room 2"]["room_id"]
    # The column moves with the event, which the move sends before it
    # invites: the console's next look shows the invitation.
    flow.column("Room 2").locator(f'li[data-user="{user}"]').get_by_text(
        "invited"
    ).wait_for()
    room1, room2 = by_name["Room 1"]["room_id"], by_name["Room 2"]["room_id"]
    assert flow.server.membership(room2, user, flow.host_token) == "invite"
    assert flow.server.membership(room1, user, flow.host_token) == "leave"


def test_06_host_moves_a_person_back_with_the_menu(flow: Flow) -> None:
    room3 = next(r for r in flow.breakout()["rooms"] if r["name"] == "Room 3")
    user = room3["users"][0]
    person = flow.column("Room 3").locator(f'li[data-user="{user}"]')
    person.get_by_label(f"Move {user} to").select_option(label="Main room")
    person.get_by_role("button", name="Move").focus()
    flow.host_page.keyboard.press("Enter")
    flow.column("Main room").locator(f'li[data-user="{user}"]').wait_for()
    assert flow.room_of(user) is None
    assert flow.server.membership(room3["room_id"], user, flow.host_token) == "leave"


def test_07_host_extends_the_deadline(flow: Flow) -> None:
    before = flow.breakout()["ends_at"]
    flow.host_page.get_by_role("button", name="+5 minutes").click()
    flow.host_page.get_by_text(re.compile(r"^(19|20):\d\d left$")).wait_for()
    assert flow.breakout()["ends_at"] == before + 300_000
    # A custom deadline, in the browser's time zone (UTC here), to the minute.
    target = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=42)
    page = flow.host_page
    page.get_by_label("New deadline (empty: none)").fill(
        target.strftime("%Y-%m-%dT%H:%M")
    )
    page.get_by_role("button", name="Set deadline").click()
    page.get_by_text(re.compile(r"^4[12]:\d\d left$")).wait_for()
    assert flow.breakout()["ends_at"] == int(target.timestamp() * 1000)


def test_08_participant_asks_for_help(flow: Flow) -> None:
    mine = flow.room_of(flow.participant)
    flow.server.synapse.join(flow.participant_token, mine["room_id"])
    page = flow.participant_page
    # The host moved people since this tab last looked (a background tab's
    # timers are slowed): the participant looks at the tab, which catches up.
    page.bring_to_front()
    expect(page.locator(".my-room")).to_have_text(mine["name"], timeout=15_000)
    page.get_by_label("What do you need? (optional)").fill("We are stuck")
    page.get_by_role("button", name="Ask for help").click()
    page.get_by_text("Your host has been asked for help.").wait_for()
    notices = [
        e
        for e in flow.server.messages(flow.parent, flow.host_token)
        if e["content"].get("org.matrix.msc3985.notice") == "help"
    ]
    assert len(notices) == 1 and flow.participant in json.dumps(notices[0]["content"])
    assert "We are stuck" in json.dumps(notices[0]["content"])
    assert notices[0]["content"]["msgtype"] == "m.text"
    # The host's list: from the module's record, with who asked, from where.
    listed = flow.host_page.locator("#help")
    listed.get_by_text(flow.participant).wait_for()
    expect(listed).to_contain_text(f"asks for help in {mine['name']}")


def test_09_host_broadcasts(flow: Flow) -> None:
    page = flow.host_page
    page.get_by_label("Message to every break-out room").fill("Five minutes left")
    page.get_by_role("button", name="Send to all rooms").click()
    page.get_by_text("Sent to every break-out room.").wait_for()
    for room in flow.breakout()["rooms"]:
        bodies = [
            e["content"]["body"]
            for e in flow.server.messages(room["room_id"], flow.host_token)
            if e["content"].get("msgtype") == "m.notice"
        ]
        assert "Five minutes left" in bodies, room["name"]
    screenshot(page, "console-host.png")


def test_10_host_ends_and_closes_the_rooms(flow: Flow) -> None:
    rooms = flow.breakout()["rooms"]
    page = flow.host_page
    page.get_by_label("Message to the rooms").fill("Back to the plenary")
    page.get_by_label("Remove everyone from the break-out rooms").check()
    with page.expect_response(lambda r: r.request.method == "DELETE") as answer:
        page.get_by_role("button", name="End break-out").click()
    assert answer.value.json().get("failed_rooms") == [], answer.value.json()
    page.get_by_role("button", name="Start break-out").wait_for()
    assert flow.breakout()["active"] is False
    for room in rooms:
        for user in room["users"]:
            assert flow.server.membership(room["room_id"], user, flow.host_token) in (
                "leave",
                None,
            )
        bodies = [
            e["content"]["body"]
            for e in flow.server.messages(room["room_id"], flow.host_token)
        ]
        assert any("Back to the plenary" in b for b in bodies), room["name"]
    flow.participant_page.get_by_text("No break-out is running here.").wait_for()
    screenshot(page, "console-start.png")


def test_11_sign_out_ends_the_session(flow: Flow) -> None:
    page = flow.host_page
    token = page.evaluate(
        "JSON.parse(sessionStorage.getItem('breakout-console-token'))[0]"
    )
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    status, body = flow.server.status_of(
        "GET", "/_matrix/client/v3/account/whoami", token
    )
    assert (status, body["errcode"]) == (401, "M_UNKNOWN_TOKEN")
