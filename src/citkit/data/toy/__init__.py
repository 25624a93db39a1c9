"""The built-in procedural multimodal toy world (the CPU default)."""

from citkit.data.toy.world import ToyWorldConfig, export

__all__ = ["ToyWorldConfig", "export"]
