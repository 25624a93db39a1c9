"""O-LoRA (Wang et al. 2023, "Orthogonal subspace learning for language model continual learning").

Each task trains a new peft LoRA adapter; earlier adapters are frozen but stay in the forward pass,
so the model's update is the sum of all task updates. A penalty keeps the new adapter's input
subspace (the rows of its down-projection A_t) orthogonal to those of earlier tasks (Eq. 4-6):

    loss = CE + lambda1 * sum_layers sum_{s<t} ||A_s A_t^T||_1 + lambda2 * ||(A_t, B_t)||^2
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from peft import PeftModel
from peft.tuners.lora import LoraLayer
from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.methods.base import Method, register_method
from citkit.models.families import projector
from citkit.models.lora import add_lora

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData


@dataclass(frozen=True)
class OLoRAConfig:
    """Weights of O-LoRA's two penalties (the authors' defaults)."""

    orthogonality_weight: float = field(default=0.5, metadata={"help": (
        "lambda1 on sum_layers sum_{s<t} ||A_s A_t^T||_1 (element-wise absolute sum). 0.5 in the paper's "
        "code; the term can be thousands of times the CE at the start of a task (logged as "
        "'orthogonality').")})
    l2_weight: float = field(default=0.0, metadata={"help": (
        "lambda2 on the size of the new adapter (A_t, B_t); 0 in the paper's code (logged as 'l2').")})
    l2_form: Literal["squared", "norm"] = field(default="squared", metadata={"help": (
        "'squared': ||(A_t, B_t)||^2, the sum of squares (the paper's formula); 'norm': the sum of each "
        "matrix's Frobenius norm, as the authors' code computes it.")})

    def __post_init__(self) -> None:
        if self.orthogonality_weight < 0 or self.l2_weight < 0:
            raise ConfigError(f"o-lora weights must be >= 0, got orthogonality_weight="
                              f"{self.orthogonality_weight}, l2_weight={self.l2_weight}")
        if self.l2_form not in ("squared", "norm"):
            raise ConfigError(f"o-lora l2_form {self.l2_form!r}: use 'squared' or 'norm'")


def adapter_name(task_index: int) -> str:
    """The peft adapter name of a task (one adapter per task, by position in the stream)."""
    return f"task_{task_index}"


def orthogonality_penalty(previous: list[Tensor], current: Tensor) -> Tensor:
    """sum_s ||A_s A_t^T||_1 for down-projections A of shape (rank, in_features); zero if no previous."""
    total = current.new_zeros(())
    for earlier in previous:
        total = total + (earlier @ current.T).abs().sum()  # (rank_s, rank_t)
    return total


@register_method("o-lora")
class OLoRA(Method):
    """One frozen-after-use LoRA per task, summed in the forward pass, kept in orthogonal subspaces.

    Departures: the adapters are separate peft adapters activated together
    (`model.base_model.set_adapter([...])`) rather than the authors' single adapter whose old ranks are
    concatenated; the forward pass and the penalty are the same. With `adapter.train_projector` the
    projector is one shared module trained on every task (not protected by the penalty)."""

    config_class = OLoRAConfig

    def __init__(self, config: OLoRAConfig | None = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.adapters: list[str] = []  # adapter names in task order; the last one trains

    def attach(self, model: nn.Module) -> nn.Module:
        model = self._add_adapter(model, 0)
        self._activate(model)
        return model

    def resume(self, model: nn.Module, finished: list[str]) -> nn.Module:
        for index in range(len(self.adapters), len(finished)):
            model = self._add_adapter(model, index)
        self._activate(model)
        return model

    def before_task(self, task: TaskData, model: nn.Module) -> None:
        if task.index not in (len(self.adapters) - 1, len(self.adapters)):
            raise ConfigError(f"o-lora: task {task.name!r} has index {task.index} but adapters "
                              f"{self.adapters} exist; tasks must be visited in stream order")
        if task.index == len(self.adapters):
            self._add_adapter(model, task.index)
        self._activate(model)

    def loss(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        current, previous = self.adapters[-1], self.adapters[:-1]
        orthogonality, l2 = None, None
        for module in model.modules():
            if not isinstance(module, LoraLayer) or current not in module.lora_A:
                continue
            a_new = module.lora_A[current].weight  # (rank, in_features)
            b_new = module.lora_B[current].weight  # (out_features, rank)
            a_old = [module.lora_A[s].weight for s in previous if s in module.lora_A]
            term = orthogonality_penalty(a_old, a_new)
            size = (a_new.square().sum() + b_new.square().sum() if self.config.l2_form == "squared"
                    else a_new.norm() + b_new.norm())
            orthogonality = term if orthogonality is None else orthogonality + term
            l2 = size if l2 is None else l2 + size
        if orthogonality is None or l2 is None:
            raise ConfigError(f"o-lora: adapter {current!r} is not in the model; was attach() called on it?")
        return {"orthogonality": self.config.orthogonality_weight * orthogonality,
                "l2": self.config.l2_weight * l2}

    def extra_state(self) -> dict[str, Any]:
        return {"adapters": list(self.adapters)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        saved = list(state.get("adapters", []))
        if saved and saved != self.adapters[:len(saved)]:
            raise ConfigError(f"o-lora: the checkpoint's adapters {saved} differ from the rebuilt "
                              f"{self.adapters}")

    # --- helpers ---
    def _add_adapter(self, model: nn.Module, index: int) -> PeftModel:
        """Add task `index`'s adapter (peft freezes every non-adapter parameter while doing so)."""
        name = adapter_name(index)
        model = add_lora(model, replace(self.adapter, train_projector=False), name=name)
        self.adapters.append(name)
        return model

    def _activate(self, model: nn.Module) -> None:
        """All adapters in the forward pass; only the newest one trains."""
        if not isinstance(model, PeftModel):
            raise ConfigError(f"o-lora needs the peft model returned by attach(), got {type(model).__name__}")
        model.base_model.set_adapter(list(self.adapters))
        model.base_model.set_requires_grad(self.adapters[:-1], requires_grad=False)
        model.base_model.set_requires_grad(self.adapters[-1], requires_grad=True)
        if self.adapter.train_projector:
            projector(model).requires_grad_(True)
