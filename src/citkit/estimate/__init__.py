"""Memory a run will need, per device, before anything runs (`citkit estimate`; docs/estimate.md)."""

from citkit.estimate.memory import MemoryEstimate, estimate

__all__ = ["MemoryEstimate", "estimate"]
