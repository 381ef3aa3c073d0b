"""Puts Synapse's own test harness (``from tests import unittest``) on the path.

Synapse ships its ``tests`` package only in its sdist, so it is fetched (and
checked against the index's sha256) into the ignored ``.cache/`` folder by
``scripts/fetch_synapse_tests.py``, for the installed Synapse version. The
project's own ``tests/`` folder has no ``__init__.py``: pytest imports its files as
top-level modules, so the name ``tests`` is Synapse's alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
# The helpers shared by the demo and the end-to-end tests (a real Synapse
# process), and the harness fetcher.
sys.path.insert(0, str(_ROOT / "scripts"))

from fetch_synapse_tests import use_harness  # noqa: E402

use_harness()
