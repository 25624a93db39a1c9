"""The class-incremental method interface: citkit's `Method` hooks, on a ViT classifier.

A CIL method is a `citkit.methods.Method` (the engine calls the same hooks in the same order), with:

- `attach` adding LoRA to the ViT backbone (`ViTAdapterConfig`), not to a language model;
- `objective`: cross-entropy on the new task's classes only (old-class logits masked, the usual CIL
  practice), unless `masks_old_classes = False` (Joint);
- `phases(task, model)`: a generator of extra trainings after a task (DESIRE's merge calibration, the
  classifier alignment of SLCA and DESIRE). The runner trains each `Phase` with `Engine.fit_task`,
  then resumes the generator, which can use the result: there is no second training loop;
- `prepare_inference(model)`: put the model in its test configuration (which adapters are active).

Methods register in `CIL_METHODS` by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.utils import ModelOutput

from citkit.cil.backbone import ViTAdapterConfig, ViTClassifier, add_lora
from citkit.cil.stats import ClassGaussians, class_statistics, sample_pseudo_features
from citkit.cil.stream import CILTask, collate
from citkit.engine.batches import BatchSource, LazyDataset
from citkit.engine.config import TrainConfig
from citkit.errors import ConfigError
from citkit.methods.base import Method, MethodConfig
from citkit.registry import Registry


@dataclass
class Phase:
    """A training after the task's own: `method`'s hooks on `model` over `task`, with `train` settings."""

    name: str
    model: nn.Module
    method: Method
    task: Any
    train: TrainConfig


class CILMethod(Method):
    """Base class of class-incremental methods on a ViT; by default one LoRA, new-class CE."""

    config_class: ClassVar[type] = MethodConfig
    classifier: ClassVar[str | None] = None   # a head kind the method needs ('cosine' for SimpleCIL)
    masks_old_classes: ClassVar[bool] = True  # objective sees the new task's logits only

    def __init__(self, config: Any = None, adapter: ViTAdapterConfig | None = None) -> None:
        super().__init__(config)
        self.adapter = adapter or ViTAdapterConfig()  # type: ignore[assignment]
        self.classes: list[int] = []  # the current task's global labels
        self.run_seed = 0  # set by the runner: seeds the method's own sampling (pseudo-features)

    def attach(self, model: nn.Module) -> nn.Module:
        add_lora(as_classifier(model), self.adapter)
        return model

    def before_task(self, task: CILTask, model: nn.Module) -> None:
        self.classes = list(task.classes)
        super().before_task(task, model)

    def objective(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        if not self.masks_old_classes:
            return {"ce": F.cross_entropy(outputs.logits, batch["labels"])}
        return {"ce": masked_cross_entropy(outputs.logits, batch["labels"], self.classes)}

    def phases(self, task: CILTask, model: nn.Module) -> Iterator[Phase]:
        """Extra trainings after the task (none by default)."""
        return iter(())

    def prepare_inference(self, model: nn.Module) -> None:
        """Called before evaluation and after resume: the model's test configuration."""


CIL_METHODS: Registry[type[CILMethod]] = Registry("CIL method")


def register_cil_method(name: str):  # type: ignore[no-untyped-def]
    def decorator(cls: type[CILMethod]) -> type[CILMethod]:
        cls.name = name  # type: ignore[attr-defined]
        return CIL_METHODS.register(name)(cls)

    return decorator


def as_classifier(model: nn.Module) -> ViTClassifier:
    if not isinstance(model, ViTClassifier):
        raise ConfigError(f"CIL methods work on a citkit.cil.backbone.ViTClassifier, got {type(model).__name__}")
    return model


def masked_cross_entropy(logits: Tensor, labels: Tensor, classes: list[int]) -> Tensor:
    """CE over the logits of `classes` only: the other columns are set to -inf (no gradient reaches them)."""
    keep = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    keep[classes] = True
    return F.cross_entropy(logits.masked_fill(~keep, float("-inf")), labels)


@torch.no_grad()
def extract_features(model: ViTClassifier, task: CILTask, batch_size: int = 128,
                     split: str = "train") -> tuple[Tensor, Tensor]:
    """(n, d) pooled features and (n,) labels of a task's images, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    features, labels = [], []
    try:
        for batch in task.batches(batch_size, split=split):
            features.append(model.features(batch["pixel_values"].to(device)).float().cpu())
            labels.append(batch["labels"])
    finally:
        model.train(was_training)
    return torch.cat(features), torch.cat(labels)


# --- classifier alignment on Gaussian pseudo-features (SLCA, DESIRE's refinement) ---

@dataclass(frozen=True)
class AlignmentConfig:
    """Re-training the head on features sampled from every seen class's Gaussian (SLCA's classifier alignment)."""

    per_class: int = field(default=256, metadata={"help": "Pseudo-features drawn per seen class (PILOT SLCA: 256)."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the pseudo-features (PILOT SLCA: 3... 5)."})
    lr: float = field(default=1e-2, metadata={"help": "Learning rate of the head during alignment."})
    batch_size: int = field(default=64, metadata={"help": "Pseudo-features per step."})
    shrinkage: float = field(default=0.1, metadata={"help": (
        "Covariance shrinkage s: (1 - s) Sigma + s tr(Sigma)/d I, so Sigma is invertible on few images.")})

    def __post_init__(self) -> None:
        if self.per_class < 1 or self.batch_size < 1 or self.epochs <= 0 or self.lr <= 0:
            raise ConfigError(f"alignment: per_class, batch_size, epochs and lr must be positive, got {self}")
        if not 0 <= self.shrinkage <= 1:
            raise ConfigError(f"alignment.shrinkage must be in [0, 1], got {self.shrinkage}")


class HeadOnly(nn.Module):
    """The head as a model: `forward(features, labels)` -> logits and CE over every seen class."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: Tensor, labels: Tensor | None = None) -> ModelOutput:
        logits = self.head(features)
        return ModelOutput(logits=logits, loss=F.cross_entropy(logits, labels) if labels is not None else None)


class TrainAll(Method):
    """Trains every parameter of the model it is given (the head in classifier alignment)."""

    def attach(self, model: nn.Module) -> nn.Module:
        return model.requires_grad_(True)


@dataclass
class FeatureTask:
    """Pre-computed features and labels as an engine task."""

    name: str
    index: int
    features: Tensor
    labels: Tensor

    @property
    def train(self) -> list[int]:
        return list(range(len(self.labels)))

    def source(self, samples: list[int]) -> BatchSource:
        return BatchSource(LazyDataset(samples, lambda i: {"features": self.features[i], "labels": self.labels[i]}),
                           collate)


def alignment_phase(model: ViTClassifier, gaussians: ClassGaussians, config: AlignmentConfig, task: CILTask,
                    seed: int) -> Phase:
    """A phase that re-trains the head on `config.per_class` seeded pseudo-features of every seen class."""
    generator = torch.Generator().manual_seed(seed)
    features, labels = sample_pseudo_features(gaussians.means, gaussians.covariances,
                                              torch.tensor(gaussians.classes), config.per_class, generator)
    device = next(model.parameters()).device
    train = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, lr_schedule="cosine",
                        warmup_ratio=0.0, progress=False)
    return Phase("align", HeadOnly(model.head), TrainAll(), FeatureTask(f"{task.name}-align", task.index,
                 features.to(device), labels.to(device)), train)


def new_class_gaussians(model: ViTClassifier, task: CILTask, shrinkage: float) -> tuple[Tensor, Tensor]:
    features, labels = extract_features(model, task)
    return class_statistics(features, labels, task.classes, shrinkage)
