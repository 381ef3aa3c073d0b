"""synapse-breakout: break-out rooms (MSC3985) for Synapse."""

from synapse_breakout.module import BreakoutModule

__all__ = ["BreakoutModule"]
__version__ = "0.1.0"
