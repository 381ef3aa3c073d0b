"""``move: choose`` in the console: the host starts rooms of one place each,
a participant joins one from the console, a second account sees it full, and
the host sees the counts change. Each step is checked in the server.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from conftest import Server, new_page, q, screenshot, sign_in


def open_room(page: Any, server: Server, parent: str, name: str) -> None:
    """The console's view of ``parent`` (named ``name``) in a signed-in tab."""
    page.goto(f"{server.console_url}#room={q(parent)}")
    page.get_by_role("heading", name=name).wait_for()


def test_participants_choose_their_room_and_the_host_sees_the_counts(
    server: Server, browser: Any
) -> None:
    host, host_token, host_password = server.user("choosehost")
    people = [server.user(f"chooser{i}") for i in range(2)]
    parent = server.synapse.create_room(host_token, preset="public_chat", name="Fair")
    for _, token, _ in people:
        server.synapse.join(token, parent)
    host_page, pages = (
        new_page(browser),
        [new_page(browser, phone=True) for _ in people],
    )

    # The host starts two rooms of one place each, to choose from.
    sign_in(host_page, server, host, host_password)
    open_room(host_page, server, parent, "Fair")
    host_page.get_by_label("Number of rooms").fill("2")
    host_page.get_by_label("Move people").select_option("choose")
    host_page.get_by_label("Places per room (0: no limit)").fill("1")
    host_page.get_by_role("button", name="Start break-out").click()
    heading = host_page.locator('section.column[aria-label="Room 1"] h3')
    expect(heading).to_have_text("Room 1 (0 of 1)")
    state = server.breakout(parent, host_token)
    assert [(r["users"], r["capacity"]) for r in state["rooms"]] == [([], 1)] * 2
    room1 = next(r["room_id"] for r in state["rooms"] if r["name"] == "Room 1")

    # The first participant joins Room 1 from the console.
    (first, _, first_password), (second, _, second_password) = people
    sign_in(pages[0], server, first, first_password)
    open_room(pages[0], server, parent, "Fair")
    choose = pages[0].get_by_role("region", name="Choose a room")
    row = choose.locator("li.choice").filter(has_text="Room 1")
    expect(row).to_contain_text("0 of 1")
    row.get_by_role("button", name="Join Room 1").click()
    pages[0].get_by_role("heading", name="Your break-out room").wait_for()
    expect(row.get_by_role("button", name="You are in Room 1")).to_be_disabled()
    assert server.membership(room1, first, host_token) == "join"
    screenshot(pages[0], "console-choose.png")

    # The second account sees it full: its "Join" disabled.
    sign_in(pages[1], server, second, second_password)
    open_room(pages[1], server, parent, "Fair")
    full = pages[1].locator("li.choice").filter(has_text="Room 1")
    expect(full).to_contain_text("1 of 1")
    expect(full.get_by_role("button", name="Join Room 1")).to_be_disabled()
    expect(full.get_by_role("button", name="Join Room 1")).to_have_text("Full")
    assert server.membership(room1, second, host_token) is None

    # The host sees the count change as it polls.
    expect(heading).to_have_text("Room 1 (1 of 1)")
    host_page.locator('section.column[aria-label="Room 1"]').get_by_text(
        first
    ).wait_for()

    # The first leaves (another room, from the console): a place is free.
    pages[0].get_by_role("button", name="Join Room 2").click()
    expect(row).to_contain_text("0 of 1")
    assert server.membership(room1, first, host_token) == "leave"
    expect(full.get_by_role("button", name="Join Room 1")).to_be_enabled()
    expect(heading).to_have_text("Room 1 (0 of 1)")
    for page in (host_page, *pages):
        assert page.js_errors == [], page.js_errors
        page.context.close()
