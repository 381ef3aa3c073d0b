"""Plans in the console: a CSV file imported as a plan, started, ended, and
the same groups again with one press; the start form saved as a plan; the
members of the room searched.

The tests run in order and share one parent room and one host tab; each step
is checked in the server.
"""

from __future__ import annotations

from collections.abc import Iterator
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

ROOMS = ("Red", "Green", "Blue")


class Workshop:
    """A parent with a host, six members, and someone who is not in it."""

    def __init__(self, server: Server, browser: Any):
        self.server = server
        self.host, self.host_token, password = server.user("planhost")
        people = [server.user(f"planp{i}") for i in range(6)]
        self.people = [user for user, _, _ in people]
        self.outsider = server.user("planaway")[0]
        self.parent = server.synapse.create_room(
            self.host_token, preset="public_chat", name="Workshop"
        )
        for _, token, _ in people:
            server.synapse.join(token, self.parent)
        self.page = new_page(browser)
        sign_in(self.page, server, self.host, password)
        self.page.goto(f"{server.console_url}#room={q(self.parent)}")
        self.page.get_by_role("heading", name="Workshop").wait_for()

    def csv(self) -> str:
        lines = ["room,user"]
        for i, user in enumerate(self.people):
            lines.append(f"{ROOMS[i // 2]},{user}")
        lines.append(f'"Blue",{self.outsider}')
        return "\r\n".join(lines) + "\r\n"

    def planned(self) -> dict[str, list[str]]:
        """The CSV's groups, without the person who is not in the room."""
        return {
            name: sorted(self.people[2 * i : 2 * i + 2]) for i, name in enumerate(ROOMS)
        }

    def groups(self) -> dict[str, list[str]]:
        state = self.server.breakout(self.parent, self.host_token)
        assert state["active"] is True
        return {room["name"]: sorted(room["users"]) for room in state["rooms"]}

    def plans(self) -> list[dict[str, Any]]:
        path = f"{API}/rooms/{q(self.parent)}/plans"
        return list(self.server.request("GET", path, self.host_token)["plans"])

    def column(self, name: str) -> Any:
        return column(self.page, name)


@pytest.fixture(scope="module")
def workshop(server: Server, browser: Any) -> Iterator[Workshop]:
    workshop = Workshop(server, browser)
    yield workshop
    close_page(workshop.page)


def test_01_a_bad_csv_line_is_named_and_nothing_is_stored(workshop: Workshop) -> None:
    page = workshop.page
    page.locator("#plans").get_by_text("No plans yet.").wait_for()
    page.get_by_text("Import a plan from a CSV file").click()
    page.get_by_label("CSV text").fill(
        f"room,user\nRed,{workshop.people[0]}\nRed,bob\n"
    )
    page.get_by_role("button", name="Import plan").click()
    page.get_by_role("alert").get_by_text(
        'line 3: "bob" is not a Matrix user ID like @name:server'
    ).wait_for()
    assert workshop.plans() == []


def test_02_a_csv_file_becomes_a_plan_that_names_who_is_away(
    workshop: Workshop, tmp_path: Any
) -> None:
    page = workshop.page
    upload = tmp_path / "week-1.csv"
    upload.write_text(workshop.csv(), encoding="utf-8")
    page.get_by_label("Name of the imported plan").fill("Week 1")
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Import plan").click()
    page.get_by_text("Imported the plan “Week 1”: 3 rooms, 7 people.").wait_for()
    page.get_by_text(
        f"Not in this room now (a start leaves them out): {workshop.outsider}"
    ).wait_for()
    page.get_by_role("button", name="Start Week 1").wait_for()
    [plan] = workshop.plans()
    assert plan["plan_id"] == "week-1" and plan["name"] == "Week 1"
    assert [room["name"] for room in plan["rooms"]] == list(ROOMS)
    assert plan["rooms"][2]["users"] == [*workshop.people[4:], workshop.outsider]
    screenshot(page, "console-plans.png")


def test_03_starting_the_plan_makes_its_groups(workshop: Workshop) -> None:
    page = workshop.page
    page.get_by_role("button", name="Start Week 1").click()
    for name in ROOMS:
        workshop.column(name).wait_for()
    page.get_by_text(
        f"Left out, no longer in this room: {workshop.outsider}"
    ).wait_for()
    assert workshop.groups() == workshop.planned()
    # Each room's column opens it: its matrix.to link, with where to find it.
    state = workshop.server.breakout(workshop.parent, workshop.host_token)
    red = next(room for room in state["rooms"] if room["name"] == "Red")
    link = workshop.column("Red").get_by_role("link", name="Open Red")
    assert link.get_attribute("href") == (
        f"https://matrix.to/#/{red['room_id']}?via=localhost"
    )


def test_04_same_groups_as_last_time(workshop: Workshop) -> None:
    page = workshop.page
    page.get_by_role("button", name="End break-out").click()
    page.get_by_role("button", name="Start the same groups").click()
    for name in ROOMS:
        workshop.column(name).wait_for()
    assert workshop.groups() == workshop.planned()
    page.get_by_role("button", name="End break-out").click()
    page.get_by_role("button", name="Start break-out").wait_for()


def test_05_the_start_form_saved_as_a_plan(workshop: Workshop) -> None:
    page = workshop.page
    page.get_by_label("How").select_option("size")
    page.get_by_label("People per room").fill("2")
    page.get_by_label("Duration in minutes (0: no deadline)").fill("20")
    page.get_by_label("Save the start form as a plan named").fill("Pairs")
    page.get_by_role("button", name="Save as plan").click()
    page.get_by_role("button", name="Start Pairs").wait_for()
    pairs = next(plan for plan in workshop.plans() if plan["plan_id"] == "pairs")
    assert pairs["name"] == "Pairs"
    assert pairs["auto_assign"] == {"room_size": 2, "users": "joined"}
    assert pairs["duration_seconds"] == 1200
    assert (
        workshop.server.breakout(workshop.parent, workshop.host_token)["active"]
        is False
    )
    page.get_by_role("button", name="Delete Pairs").click()
    page.get_by_role("button", name="Start Pairs").wait_for(state="detached")
    assert "pairs" not in [plan["plan_id"] for plan in workshop.plans()]


def test_06_members_are_searched_on_the_server(workshop: Workshop) -> None:
    page = workshop.page
    members = page.locator("#members")
    page.get_by_role("heading", name="Members (7)").wait_for()
    page.get_by_label("Search members").fill("planp3")
    members.get_by_text(workshop.people[3]).wait_for()
    expect(members.locator("li")).to_have_count(1)
    page.get_by_label("Search members").fill("nobody-like-this")
    members.get_by_text("Nobody matches.").wait_for()
    page.get_by_label("Search members").fill("")
    members.get_by_text(workshop.people[5]).wait_for()
    expect(members.locator("li")).to_have_count(7)
