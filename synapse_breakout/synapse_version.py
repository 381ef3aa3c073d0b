"""The Synapse releases this module supports, checked before anything else loads.

The package declares ``matrix-synapse>=MINIMUM_SYNAPSE`` with no upper bound
(docs/operations.md, "Supported Synapse releases"); CI tests that release and
the newest. pip can still be told to install the module beside an older
Synapse (``--no-deps``, a distribution's own package), so the module checks
again when Synapse loads it and stops start-up with a ``ConfigError`` that
names the release it needs, before an import of a newer Synapse API could fail
with a less helpful error.
"""

from __future__ import annotations

import re
from importlib import metadata

from synapse.module_api.errors import ConfigError

#: The lowest Synapse release the module supports (and CI tests).
MINIMUM_SYNAPSE = "1.141.0"


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: "1.141.0rc2" -> (1, 141, 0)."""
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    if match is None:
        raise ConfigError(f"cannot read the Synapse version {version!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def installed_synapse() -> str:
    """The version of the installed matrix-synapse distribution."""
    return metadata.version("matrix-synapse")


def require_supported_synapse(installed: str | None = None) -> None:
    """Stop start-up when the installed Synapse is older than the module supports.

    Args:
        installed: the Synapse version to check; the installed one by default.

    Raises:
        ConfigError: naming the installed and the needed release.
    """
    version = installed if installed is not None else installed_synapse()
    if _release(version) < _release(MINIMUM_SYNAPSE):
        raise ConfigError(
            f"synapse_breakout needs Synapse {MINIMUM_SYNAPSE} or newer; this is"
            f" Synapse {version}. Upgrade Synapse (or install an older"
            " synapse-breakout)."
        )
