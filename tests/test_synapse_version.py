"""The Synapse releases the module supports (docs/operations.md).

The package declares ``matrix-synapse>=MINIMUM_SYNAPSE``; CI runs the suite on
that release (``tox -e lowest``) and on the newest. On an older Synapse the
module stops start-up with a ``ConfigError`` that names the release it needs.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from synapse.module_api.errors import ConfigError
from test_config_examples import base_config

from synapse_breakout.synapse_version import (
    MINIMUM_SYNAPSE,
    installed_synapse,
    require_supported_synapse,
)

# No database here: the same on SQLite and PostgreSQL (tox -e postgres
# skips it).
pytestmark = pytest.mark.no_database

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("version", ["1.140.0", "1.140.9", "1.99.0", "0.99.5"])
def test_older_synapse_is_refused_naming_the_release_needed(version: str) -> None:
    with pytest.raises(ConfigError) as info:
        require_supported_synapse(version)
    assert f"needs Synapse {MINIMUM_SYNAPSE} or newer" in info.value.msg
    assert version in info.value.msg


@pytest.mark.parametrize("version", [MINIMUM_SYNAPSE, "1.163.2", "1.200.0rc1", "2.0"])
def test_supported_releases_pass(version: str) -> None:
    require_supported_synapse(version)


def test_the_installed_synapse_is_supported() -> None:
    require_supported_synapse()
    require_supported_synapse(installed_synapse())


def test_the_package_declares_the_same_minimum_and_no_upper_bound() -> None:
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    requires = [
        line.strip()
        for line in setup["options"]["install_requires"].splitlines()
        if line.strip().startswith("matrix-synapse")
    ]
    assert requires == [f"matrix-synapse>={MINIMUM_SYNAPSE}"]
    pins = (ROOT / "constraints-lowest.txt").read_text().splitlines()
    assert f"matrix-synapse=={MINIMUM_SYNAPSE}" in pins


def test_start_up_on_an_older_synapse_stops_with_the_release_needed(
    tmp_path: Path,
) -> None:
    """Synapse's own start-up, with the installed release reported as 1.140.0."""
    config = tmp_path / "modules.yaml"
    config.write_text("modules:\n  - module: synapse_breakout.BreakoutModule\n")
    script = textwrap.dedent(
        """
        import sys
        from importlib import metadata

        real = metadata.version
        metadata.version = lambda name: (
            "1.140.0" if name == "matrix-synapse" else real(name)
        )
        from synapse.app import homeserver

        sys.argv = ["homeserver", "-c", sys.argv[1], "-c", sys.argv[2]]
        homeserver.main()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(base_config(tmp_path)), str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "Error in configuration" in result.stderr
    assert (
        f"synapse_breakout needs Synapse {MINIMUM_SYNAPSE} or newer; this is"
        " Synapse 1.140.0" in result.stderr
    )
