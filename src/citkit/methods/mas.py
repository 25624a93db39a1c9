"""MAS: EWC's penalty with a label-free importance, the sensitivity of the output to each parameter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.methods._importance import output_sensitivity
from citkit.methods.base import register_method
from citkit.methods.ewc import EWC, EWCConfig
from citkit.methods.task_similarity import TIRConfig

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData


@dataclass(frozen=True)
class MASConfig(EWCConfig):
    """EWC's options (He et al. 2023 defaults: normalised, max-merged; their lambda is reused for MAS)
    plus which logits the output norm covers."""

    positions: Literal["answer", "all"] = field(default="answer", metadata={"help": (
        "Logits whose squared L2 norm is differentiated: 'answer' (positions predicting answer "
        "tokens, as the CE loss) or 'all' (every non-padding position, prompt and image tokens included).")})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.positions not in ("answer", "all"):
            raise ConfigError(f"method.positions {self.positions!r} is unknown; use 'answer' or 'all'")


@dataclass(frozen=True)
class MASTIRConfig(MASConfig):
    """MAS with TIR switched on (He et al. 2023)."""

    tir: TIRConfig = field(default_factory=lambda: TIRConfig(enabled=True), metadata={"help": (
        "Task-similarity-informed regularisation (enabled).")})


@register_method("mas")
class MAS(EWC):
    """Memory aware synapses (Aljundi et al. 2018): importance = mean |d ||logits||^2 / d theta|.

    Everything else (normalising, merging with owners, TIR, the quadratic penalty) is EWC's."""

    config_class = MASConfig
    penalty_name = "mas"

    def compute_importance(self, task: TaskData, model: nn.Module) -> dict[str, Tensor]:
        return output_sensitivity(model, self._batches(task), self.config.positions)


@register_method("mas-tir")
class MASTIR(MAS):
    """MAS with task-similarity-informed regularisation (He et al. 2023), on by default."""

    config_class = MASTIRConfig
