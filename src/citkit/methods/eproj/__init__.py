"""EProj: `layers` holds the expert projector and the query features, `method` the registered method."""

from citkit.methods.eproj.layers import ExpertProjector, expert_projector
from citkit.methods.eproj.method import EProj, EProjConfig

__all__ = ["EProj", "EProjConfig", "ExpertProjector", "expert_projector"]
