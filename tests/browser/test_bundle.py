"""The committed bundle is exactly what the locked packages build (needs npm)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "build-console-bundle"
BUNDLE = ROOT / "synapse_breakout" / "http" / "console" / "static" / "widget-api.js"


def test_committed_bundle_matches_a_rebuild_from_the_lock(tmp_path: Path) -> None:
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: apt-get install nodejs npm")
    out = tmp_path / "widget-api.js"
    subprocess.run([str(SCRIPT), "--out", str(out)], check=True, timeout=300)
    assert out.read_bytes() == BUNDLE.read_bytes()
