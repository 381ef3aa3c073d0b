"""The performance budgets of SPEC section 8, measured as ratios in one run.

Run ``python -m benchmarks --help`` (or ``tox -e bench``); docs/performance.md
explains the method and the figures. Nothing here runs in the test suite.

Synapse's own test harness (its ``tests`` package) is fetched by
``scripts/fetch_synapse_tests.py`` and put on ``sys.path`` by
:func:`use_synapse_harness`, which must run before any module of this package
that imports ``tests`` (``__main__`` does so).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def use_synapse_harness() -> str:
    """Put Synapse's test harness for the installed version on ``sys.path``.

    Returns:
        The folder that holds the harness's ``tests`` package.

    Raises:
        RuntimeError: the harness could not be fetched.
    """
    sys.path.insert(0, str(ROOT / "scripts"))
    from fetch_synapse_tests import FetchError, use_harness

    try:
        return use_harness()
    except FetchError as e:
        raise RuntimeError(str(e)) from e
