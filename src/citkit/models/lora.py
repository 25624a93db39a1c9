"""LoRA helpers on top of peft: language-model targets per architecture, and adding adapters.

peft matches `target_modules` names anywhere in the model, so a plain ["q_proj", "v_proj"] would also
wrap the vision tower's attention. citkit targets the language model explicitly with a regex built
from the module path its architecture's `Family` gives (`citkit.models.families`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from citkit.errors import ConfigError
from citkit.models.families import family_of, projector

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def check_adapter_settings(rank: int, dropout: float, target_modules: tuple[str, ...]) -> None:
    """The checks every LoRA config shares (the language model's and the CIL ViT's)."""
    if rank < 1:
        raise ConfigError(f"adapter.rank must be >= 1, got {rank}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"adapter.dropout must be in [0, 1), got {dropout}")
    if not target_modules:
        raise ConfigError("adapter.target_modules is empty; name at least one linear layer, e.g. q_proj")


@dataclass(frozen=True)
class AdapterConfig:
    """The LoRA every method builds on (He et al. 2023 / HiDe-LLaVA setting unless changed)."""

    rank: int = field(default=8, metadata={"help": "LoRA rank r."})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; the papers use 2r."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    target_modules: tuple[str, ...] = field(default=DEFAULT_TARGETS, metadata={"help": (
        "Linear layers of the language model to adapt (names inside a decoder block).")})
    train_projector: bool = field(default=False, metadata={"help": "Also train the vision-language projector."})

    def __post_init__(self) -> None:
        check_adapter_settings(self.rank, self.dropout, self.target_modules)


def model_type(model: torch.nn.Module) -> str:
    return family_of(model).model_type


def target_regex(model: torch.nn.Module, modules: tuple[str, ...]) -> str:
    """A peft `target_modules` regex that matches `modules` inside the language model only."""
    return rf".*{family_of(model).language_model_regex}\..*\.({'|'.join(modules)})"


def projector_module_name(model: torch.nn.Module) -> str:
    """The projector's attribute name, as peft's `modules_to_save` matches it."""
    return family_of(model).projector.rpartition(".")[2]


def lora_config(model: torch.nn.Module, adapter: AdapterConfig) -> LoraConfig:
    saved = [projector_module_name(model)] if adapter.train_projector else None
    return LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                      target_modules=target_regex(model, adapter.target_modules), modules_to_save=saved)


def train_projector(model: torch.nn.Module) -> None:
    """Make the vision-language projector trainable (for methods that build their own adapters)."""
    projector(model).requires_grad_(True)


def add_lora(model: torch.nn.Module, adapter: AdapterConfig, name: str = "default") -> PeftModel:
    """Wrap `model` with one LoRA adapter named `name` (or add it to an existing peft model)."""
    if isinstance(model, PeftModel):
        model.add_adapter(name, lora_config(model.get_base_model(), adapter))
        return model
    return get_peft_model(model, lora_config(model, adapter), adapter_name=name)


def trainable_parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
