"""Loading image-text-to-text models, the tiny toy model, and LoRA helpers on top of peft."""

from citkit.models.loading import ModelConfig, load_model, load_processor
from citkit.models.lora import AdapterConfig, add_lora

__all__ = ["AdapterConfig", "ModelConfig", "add_lora", "load_model", "load_processor"]
