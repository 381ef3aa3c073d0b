"""A start in the background (``wait: false``), its progress from GET /operations."""

from __future__ import annotations

from typing import Any

from conftest import Server, new_page, q, sign_in


def test_background_start_shows_progress_then_the_rooms(
    server: Server, browser: Any
) -> None:
    host, token, password = server.user("ophost")
    people = [server.user(f"op{i}") for i in range(4)]
    parent = server.synapse.create_room(token, preset="public_chat", name="Hall")
    for _, member_token, _ in people:
        server.synapse.join(member_token, parent)
    page = new_page(browser)
    polled: list[Any] = []
    page.on(
        "response",
        lambda r: polled.append(r.json()) if "/operations/" in r.url and r.ok else None,
    )
    sign_in(page, server, host, password)
    page.goto(f"{server.console_url}#room={q(parent)}")
    page.get_by_label("Number of rooms").fill("2")
    page.get_by_role("button", name="Start break-out").click()
    page.locator('section.column[aria-label="Room 2"]').wait_for()
    assert polled, "the console never asked GET /operations/{id}"
    assert polled[-1]["state"] == "committed"
    assert polled[-1]["parent_room_id"] == parent
    state = server.breakout(parent, token)
    assert state["active"] is True and len(state["rooms"]) == 2
    assert page.js_errors == []
    page.context.close()
