"""The committed matrix-widget-api bundle is the one the lock file names.

``scripts/build-console-bundle`` rebuilds it; the browser environment also
rebuilds it and compares byte for byte (tests/browser/test_bundle.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "console-build"
STATIC = ROOT / "synapse_breakout" / "http" / "console" / "static"


def locked(name: str) -> str:
    lock = json.loads((BUILD / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{name}"]["version"])


def test_bundle_names_the_locked_versions() -> None:
    banner = (STATIC / "widget-api.js").read_text().splitlines()[0]
    match = re.fullmatch(
        r"/\* matrix-widget-api (\S+) \(Apache-2.0, see widget-api.LICENSE\), "
        r"bundled by esbuild (\S+) with scripts/build-console-bundle \*/",
        banner,
    )
    assert match, banner
    assert match.group(1) == locked("matrix-widget-api")
    assert match.group(2) == locked("esbuild")


def test_package_json_pins_exact_versions_the_lock_agrees_with() -> None:
    package = json.loads((BUILD / "package.json").read_text())
    pinned = {**package["dependencies"], **package["devDependencies"]}
    assert pinned == {
        "matrix-widget-api": locked("matrix-widget-api"),
        "esbuild": locked("esbuild"),
    }
    assert locked("matrix-widget-api").startswith("1.19.")


def test_licence_ships_beside_the_bundle() -> None:
    assert "Apache License" in (STATIC / "widget-api.LICENSE").read_text()
