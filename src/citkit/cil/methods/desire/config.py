"""Options of DESIRE; every choice the paper leaves open is one of them, with citkit's default."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from citkit.cil.methods.base import AlignmentConfig
from citkit.errors import ConfigError


@dataclass(frozen=True)
class CalibrationConfig:
    """The learned merge: per adapted layer l, Delta = a_l Delta_old + b_l Delta_t, (a_l, b_l) trained on the
    current task's images only (citkit's reading of the paper's feature-space calibration)."""

    epochs: float = field(default=2.0, metadata={"help": "Passes over the current task's images."})
    lr: float = field(default=5e-2, metadata={"help": "Learning rate of the coefficients."})
    batch_size: int = field(default=32, metadata={"help": "Images per step."})
    plasticity_weight: float = field(default=1.0, metadata={"help": (
        "Weight of ||f_merged(x) - f_new(x)||^2 (mean over the batch, summed over dimensions): keep what the "
        "new LoRA learned.")})
    stability_weight: float = field(default=1.0, metadata={"help": (
        "Weight of ||f_merged(x) - f_old(x)||^2 on the same images: keep the consolidated representation.")})
    ce_weight: float = field(default=1.0, metadata={"help": (
        "Weight of the cross-entropy over every seen class through the current head.")})
    stability_scale: Literal["constant", "old_tasks"] = field(default="constant", metadata={"help": (
        "'constant': stability_weight as given; 'old_tasks': multiplied by the number of tasks already in the "
        "consolidated set (t-1), so the feature-space optimum weights old and new as (t-1)/t and 1/t, as the "
        "task-arithmetic average does. With 'constant' the two feature terms pull to the midpoint at every task "
        "(measured: a ~ b ~ 0.5 per layer on the built-in stream).")})
    init: Literal["average", "sum"] = field(default="average", metadata={"help": (
        "Start of (a_l, b_l): 'average' ((t-1)/t, 1/t, task arithmetic's mean) or 'sum' (1, 1).")})

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise ConfigError(f"desire calibration: epochs, lr and batch_size must be positive, got {self}")
        if min(self.plasticity_weight, self.stability_weight, self.ce_weight) < 0:
            raise ConfigError("desire calibration weights must be >= 0")
        if self.stability_scale not in ("constant", "old_tasks"):
            raise ConfigError(f"desire calibration.stability_scale {self.stability_scale!r}: use constant or old_tasks")
        if self.init not in ("average", "sum"):
            raise ConfigError(f"desire calibration.init {self.init!r}: use 'average' or 'sum'")


@dataclass(frozen=True)
class DESIREConfig:
    """DESIRE (dynamic representation consolidation + decision boundary refinement), rehearsal-free."""

    merge: Literal["learned", "average", "sum", "none"] = field(default="learned", metadata={"help": (
        "How the new task's LoRA joins the consolidated one. 'learned': coefficients calibrated per layer "
        "(calibration.*); 'average': task arithmetic a = (t-1)/t, b = 1/t; 'sum': a = b = 1; 'none': no "
        "consolidation, one LoRA fine-tuned through all tasks (the 'without consolidation' ablation).")})
    consolidated_rank: int = field(default=16, metadata={"help": (
        "Rank of the consolidated LoRA set. The merge a Delta_old + b Delta_t has rank <= this + adapter.rank and "
        "is truncated to this rank by SVD (exact at task 2 with the default 2r), so memory stays flat.")})
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig, metadata={"help": "The learned merge."})
    drift_compensation: Literal["none", "mean", "weighted"] = field(default="weighted", metadata={"help": (
        "Move old-class means by the feature drift (old -> merged model) measured on the current images: "
        "'weighted' (SDC-style kernel weights), 'mean' (one shift for all), 'none'. Covariances are kept.")})
    refine: bool = field(default=True, metadata={"help": (
        "Decision boundary refinement: re-train the head on Gaussian pseudo-features of every seen class "
        "(False: the 'without refinement' ablation).")})
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig, metadata={"help": (
        "Pseudo-features per class, epochs, lr and covariance shrinkage of the refinement.")})

    def __post_init__(self) -> None:
        if self.merge not in ("learned", "average", "sum", "none"):
            raise ConfigError(f"desire merge {self.merge!r}: use learned, average, sum or none")
        if self.consolidated_rank < 1:
            raise ConfigError(f"desire consolidated_rank must be >= 1, got {self.consolidated_rank}")
        if self.drift_compensation not in ("none", "mean", "weighted"):
            raise ConfigError(f"desire drift_compensation {self.drift_compensation!r}: use none, mean or weighted")
