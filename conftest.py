"""Puts Synapse's own test harness (``from tests import unittest``) on the path.

Synapse ships its ``tests`` package only in its sdist, so it is fetched (and
checked against the index's sha256) into the ignored ``.cache/`` folder by
``scripts/fetch_synapse_tests.py``, for the installed Synapse version. The
project's own ``tests/`` folder has no ``__init__.py``: pytest imports its files as
top-level modules, so the name ``tests`` is Synapse's alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent


def _harness_path() -> str:
    out = subprocess.run(
        [sys.executable, str(_ROOT / "scripts" / "fetch_synapse_tests.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or "fetching Synapse's tests failed")
    return out.stdout.strip()


sys.path.insert(0, _harness_path())
# The helpers shared by the demo and the end-to-end tests (a real Synapse process).
sys.path.insert(0, str(_ROOT / "scripts"))
