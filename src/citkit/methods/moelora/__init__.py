"""MoELoRA: `layers` holds the mixture-of-LoRA-experts module, `method` the registered method."""

from citkit.methods.moelora.layers import MoELoRALinear, add_moelora, moelora_layers, record_router_weights
from citkit.methods.moelora.method import MoELoRA, MoELoRAConfig

__all__ = ["MoELoRA", "MoELoRAConfig", "MoELoRALinear", "add_moelora", "moelora_layers",
           "record_router_weights"]
