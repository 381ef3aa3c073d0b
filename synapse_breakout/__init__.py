"""synapse-breakout: break-out rooms (MSC3985) for Synapse."""

from synapse_breakout.synapse_version import require_supported_synapse

# Before anything that imports newer Synapse APIs: an older Synapse gets a
# ConfigError naming the release it needs, not an ImportError.
require_supported_synapse()

from synapse_breakout.module import BreakoutModule  # noqa: E402

__all__ = ["BreakoutModule"]
__version__ = "0.2.0"
