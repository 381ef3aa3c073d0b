"""The console as a Matrix widget: signed in by the client's OpenID token.

A test page on another origin plays the client's side with matrix-widget-api's
``ClientWidgetApi`` (as Element does) and embeds the console in an iframe; it
hands out a real OpenID token from the same homeserver, or a forged one.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synapse_process import free_port

from conftest import API, ROOT, WAIT_MS, Server, new_page, q

#: The state key of the console's room widget (docs/console.md).
WIDGET_KEY = "org.matrix.msc3985.console"

HERE = Path(__file__).resolve().parent
BUNDLE = ROOT / "synapse_breakout" / "http" / "console" / "static" / "widget-api.js"


@pytest.fixture(scope="module")
def client_origin() -> Iterator[str]:
    """The test client page and the bundle, served from an origin of their own."""
    folder = Path(tempfile.mkdtemp(prefix="breakout-widget-client-"))
    shutil.copy(HERE / "widget_client.html", folder / "index.html")
    shutil.copy(BUNDLE, folder / "widget-api.js")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(folder)
    )
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        shutil.rmtree(folder, ignore_errors=True)


class Room:
    """A parent with a host and two members, for one test."""

    def __init__(self, server: Server, prefix: str):
        self.host, self.host_token, _ = server.user(f"{prefix}host")
        self.members = [server.user(f"{prefix}{i}") for i in range(2)]
        self.parent = server.synapse.create_room(
            self.host_token, preset="public_chat", name=f"{prefix} room"
        )
        for _, token, _ in self.members:
            server.synapse.join(token, self.parent)
        self.server = server

    def start(self, body: dict[str, Any]) -> Any:
        """A break-out started by the host through the admin API."""
        return self.server.request(
            "POST", f"{API}/rooms/{q(self.parent)}", self.host_token, body
        )


def open_widget(
    browser: Any,
    origin: str,
    server: Server,
    user: str,
    token: str,
    room: str,
    forge: bool = False,
    hold: bool = False,
    from_state: bool = False,
) -> tuple[Any, Any]:
    """The client page and the console's frame in it."""
    page = new_page(browser)
    query = {"hs": server.url, "user": user, "token": token, "room": room}
    if from_state:
        query["fromState"] = "1"
    if forge:
        query["forge"] = "1"
    if hold:
        query["hold"] = "1"
    page.goto(f"{origin}/index.html?{urllib.parse.urlencode(query)}")
    return page, page.frame_locator("#widget")


def test_host_signs_in_through_the_client_without_a_password(
    server: Server, browser: Any, client_origin: str
) -> None:
    room = Room(server, "widget")
    page, console = open_widget(
        browser, client_origin, server, room.host, room.host_token, room.parent
    )
    console.get_by_text(f"Signed in as {room.host}").wait_for()
    assert page.evaluate("window.openidHandedOut") == 1
    assert console.get_by_label("Password").is_hidden()
    # The host view of the widget's room, and its session may act.
    console.get_by_role("heading", name="widget room").wait_for()
    console.get_by_label("Number of rooms").fill("2")
    console.get_by_role("button", name="Start break-out").click()
    console.locator('section.column[aria-label="Room 2"]').wait_for()
    state = server.breakout(room.parent, room.host_token)
    assert state["active"] is True and state["sender"] == room.host
    assert sorted(u for r in state["rooms"] for u in r["users"]) == sorted(
        u for u, _, _ in room.members
    )
    # Each room's column opens it in the client (the widget API's navigate).
    child = next(r for r in state["rooms"] if r["name"] == "Room 1")
    console.get_by_role("button", name="Open Room 1").click()
    page.wait_for_function("window.navigatedTo !== undefined")
    assert page.evaluate("window.navigatedTo") == (
        f"https://matrix.to/#/{child['room_id']}?via=localhost"
    )
    # The console's session is not an access token of the client-server API.
    session = console.locator("body").evaluate("() => sessionStorage.length")
    assert session == 0
    assert page.js_errors == []
    page.context.close()


def test_participant_opens_their_room_through_the_client(
    server: Server, browser: Any, client_origin: str
) -> None:
    room = Room(server, "wpart")
    result = room.start({"auto_assign": {"rooms": 1}, "duration_seconds": 600})
    child = result["rooms"][0]
    user, token, _ = room.members[0]
    page, console = open_widget(
        browser, client_origin, server, user, token, room.parent
    )
    console.get_by_role("heading", name="Your break-out room").wait_for()
    assert console.locator(".my-room").inner_text() == child["name"]
    console.get_by_role("button", name="Start break-out").wait_for(state="detached")
    console.get_by_role("button", name="Open my room").click()
    page.wait_for_function("window.navigatedTo !== undefined")
    assert page.evaluate("window.navigatedTo") == (
        f"https://matrix.to/#/{child['room_id']}?via=localhost"
    )
    assert page.js_errors == []
    page.context.close()


def test_participant_chooses_a_room_through_the_client(
    server: Server, browser: Any, client_origin: str
) -> None:
    room = Room(server, "wchoose")
    result = room.start(
        {"auto_assign": {"rooms": 2}, "move": "choose", "room_capacity": 1}
    )
    child = next(r for r in result["rooms"] if r["name"] == "Room 2")
    user, token, _ = room.members[0]
    page, console = open_widget(
        browser, client_origin, server, user, token, room.parent
    )
    choice = console.locator("li.choice").filter(has_text="Room 2")
    choice.get_by_role("button", name="Join Room 2").click()
    # Joined by the console session, then opened in the client.
    page.wait_for_function("window.navigatedTo !== undefined")
    assert page.evaluate("window.navigatedTo") == (
        f"https://matrix.to/#/{child['room_id']}?via=localhost"
    )
    assert server.membership(child["room_id"], user, room.host_token) == "join"
    console.get_by_role("heading", name="Your break-out room").wait_for()
    assert page.js_errors == []
    page.context.close()


def test_forged_openid_token_gets_no_session(
    server: Server, browser: Any, client_origin: str
) -> None:
    room = Room(server, "forged")
    page, console = open_widget(
        browser,
        client_origin,
        server,
        room.host,
        room.host_token,
        room.parent,
        forge=True,
    )
    console.get_by_text("the OpenID token is unknown or has expired").wait_for()
    assert console.get_by_text("Signed in as").count() == 0
    assert console.get_by_role("button", name="Start break-out").count() == 0
    assert server.breakout(room.parent, room.host_token)["active"] is False
    page.context.close()


def test_a_sibling_frame_cannot_answer_for_the_client(
    server: Server, browser: Any, client_origin: str
) -> None:
    """Only the embedding client speaks for the console: a forged OpenID
    answer from another frame of the page is dropped, and the client's own
    answer signs the console in."""
    room = Room(server, "sibling")
    page, console = open_widget(
        browser,
        client_origin,
        server,
        room.host,
        room.host_token,
        room.parent,
        hold=True,
    )
    page.wait_for_function("window.openidRequestId !== undefined")
    page.evaluate("window.forgeFromSibling()")
    page.wait_for_function("window.siblingPosted === true")
    page.wait_for_timeout(500)  # time for the console to act on it, if it would
    assert console.get_by_text("unknown or has expired").count() == 0
    page.evaluate("window.releaseOpenID()")
    console.get_by_text(f"Signed in as {room.host}").wait_for()
    assert console.get_by_text("unknown or has expired").count() == 0
    page.context.close()


def widget_state(server: Server, room: Room, present: bool | None = None) -> Any:
    """The console widget's content in the room's state, or None; with
    ``present``, once it is (or is not) there: the start adds it after its
    notices, in the background."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        status, content = server.status_of(
            "GET",
            f"/_matrix/client/v3/rooms/{q(room.parent)}/state/"
            f"im.vector.modular.widgets/{WIDGET_KEY}",
            room.host_token,
        )
        found = content if status == 200 and content else None
        if present is None or (found is not None) == present:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"the widget is still {found!r}")
        time.sleep(0.2)


def test_participants_find_the_console_in_the_room_while_a_break_out_runs(
    server: Server, browser: Any, client_origin: str
) -> None:
    """No one types an address: the start puts the console in the room's
    widgets, a client embeds it from there, the end takes it away."""
    room = Room(server, "found")
    assert widget_state(server, room) is None
    result = room.start({"auto_assign": {"rooms": 2}, "duration_seconds": 600})
    content = widget_state(server, room, present=True)
    assert content["name"] == "Break-out rooms"
    user, token, _ = room.members[1]
    mine = next(r for r in result["rooms"] if user in r["users"])
    page, console = open_widget(
        browser, client_origin, server, user, token, room.parent, from_state=True
    )
    console.get_by_text(f"Signed in as {user}").wait_for()
    console.get_by_role("heading", name="Your break-out room").wait_for()
    assert console.locator(".my-room").inner_text() == mine["name"]
    assert page.js_errors == []
    page.context.close()
    server.request("DELETE", f"{API}/rooms/{q(room.parent)}", room.host_token, {})
    assert widget_state(server, room, present=False) is None
