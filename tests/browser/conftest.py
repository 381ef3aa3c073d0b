"""The host console in a real browser against a real Synapse (``tox -e browser``).

Debian's Chromium (apt packages ``chromium``, ``chromium-driver``), driven by
Playwright for Python; Playwright never downloads a browser of its own here.
One Synapse process with the module serves every test of the session; each
test builds its own rooms. Every step is checked in the server's state through
the admin and client-server APIs, not only on the page.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synapse_process import HttpError, SynapseProcess, free_port

# Only `tox -e browser` installs Playwright; elsewhere they are not collected.
if importlib.util.find_spec("playwright") is None:
    collect_ignore_glob = ["test_*.py"]

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"
API = "/_synapse/client/breakout/v1"
CONSOLE = "/_synapse/client/breakout/console/"
CHROMIUM = os.environ.get("BREAKOUT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long the page may take to show what the server did (it polls every 3 s).
WAIT_MS = 15_000

q = urllib.parse.quote


class Server:
    """The Synapse process, with helpers that read its state."""

    def __init__(self, synapse: SynapseProcess):
        self.synapse = synapse
        self.url = synapse.base_url
        self.console_url = synapse.base_url + CONSOLE

    def user(self, localpart: str) -> tuple[str, str, str]:
        """A new user: (user ID, access token, password)."""
        user_id, token = self.synapse.register(localpart)
        return user_id, token, self.synapse.passwords[user_id]

    def request(
        self, method: str, path: str, token: str | None, body: Any = None
    ) -> Any:
        return self.synapse.request(method, path, token, body)

    def status_of(
        self, method: str, path: str, token: str | None, body: Any = None
    ) -> tuple[int, Any]:
        try:
            return 200, self.request(method, path, token, body)
        except HttpError as e:
            return e.status, e.body

    def breakout(self, parent: str, token: str) -> Any:
        return self.request("GET", f"{API}/rooms/{q(parent)}", token)

    def membership(self, room_id: str, user_id: str, token: str) -> str | None:
        status, body = self.status_of(
            "GET",
            f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}",
            token,
        )
        return body.get("membership") if status == 200 else None

    def messages(self, room_id: str, token: str) -> list[dict[str, Any]]:
        body = self.request(
            "GET",
            f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=100",
            token,
        )
        return [e for e in body["chunk"] if e["type"] == "m.room.message"]


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    workdir = Path(tempfile.mkdtemp(prefix="breakout-browser-"))
    synapse = SynapseProcess(
        workdir,
        port=free_port(),
        module_config={"admin_api": {"allow_room_moderators": True}},
    )
    try:
        synapse.start()
        yield Server(synapse)
    finally:
        synapse.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Any, phone: bool = False) -> Any:
    """A fresh tab (its own session storage); a phone's width when ``phone``."""
    viewport = (
        {"width": 390, "height": 844} if phone else {"width": 1280, "height": 900}
    )
    context = browser.new_context(
        viewport=viewport, device_scale_factor=1, timezone_id="UTC", locale="en-GB"
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.js_errors = errors
    return page


def close_page(page: Any) -> None:
    """Close a tab, once it is clear the page threw no error."""
    assert page.js_errors == [], page.js_errors
    page.context.close()


def column(page: Any, name: str) -> Any:
    """A running break-out's column for the room ``name`` (or "Main room")."""
    return page.locator(f'section.column[aria-label="{name}"]')


def sign_in(page: Any, server: Server, user_id: str, password: str) -> None:
    page.goto(server.console_url)
    page.get_by_label("User name").fill(user_id.split(":")[0][1:])
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"Signed in as {user_id}").wait_for()


def screenshot(page: Any, name: str) -> None:
    """A screenshot for docs/console.md, renewed by every run."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), full_page=True)
