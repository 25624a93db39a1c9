"""EProj's model side: a projector with one expert copy per task, and the frozen query features.

`ExpertProjector` replaces the vision-language projector. Outside a routing context it runs one
expert (the task being trained); inside `EProj.route` it runs, for every image of a mixed batch,
the expert chosen for that image, grouping the images by expert so each expert runs once.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Literal

import torch
from peft import PeftModel
from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.models.families import (
    ImageFeature,
    input_embeddings,
    instruction_mask,
    language_model,
    pooled_image_features,
    projector,
)

__all__ = ["ExpertProjector", "ImageFeature", "InstructionFeature", "expert_projector", "image_queries",
           "instruction_queries"]
InstructionFeature = Literal["input-embeddings", "language-model"]


class ExpertProjector(nn.Module):
    """The original (frozen) projector plus one trainable copy per task.

    Rows: the first dimension of the projector's input, one per image for LLaVA, one per tile for
    any-resolution models, one per vision patch for Qwen-VL (`citkit.models.families.projector_rows`),
    whose patch merger turns every 2 x 2 group of rows into one output row.

    Attributes:
        base: the pretrained projector; used only while no expert exists.
        experts: one projector per task, in task order.
        active: the expert used when no per-image routing is set (the task being trained).
        routing: (rows,) expert index per row of the projector input, set by `EProj.route` for one batch.
    """

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.experts = nn.ModuleList()
        self.active = 0
        self.routing: Tensor | None = None

    def add_expert(self, init: Literal["base", "previous"]) -> int:
        """Append a copy of the base projector (or of the newest expert); return its index."""
        source = self.experts[-1] if init == "previous" and len(self.experts) else self.base
        expert = copy.deepcopy(source)
        expert.requires_grad_(True)
        self.experts.append(expert)
        return len(self.experts) - 1

    def train_only(self, index: int) -> None:
        """Make expert `index` the one used and trained; freeze the others."""
        for k, expert in enumerate(self.experts):
            expert.requires_grad_(k == index)
        self.active = index

    def forward(self, image_features: Tensor) -> Tensor:  # (rows, ...) -> (rows / merge, ..., text_hidden)
        if not len(self.experts):
            return self.base(image_features)
        if self.routing is None:
            return self.experts[self.active](image_features)
        routing = self.routing.to(image_features.device)
        if routing.shape[0] != image_features.shape[0]:
            raise ConfigError(f"eproj: routing holds {routing.shape[0]} choices for "
                              f"{image_features.shape[0]} projector input rows")
        parts = []
        for expert in routing.unique().tolist():
            rows = (routing == expert).nonzero().squeeze(1)
            parts.append((rows, self.experts[expert](image_features[rows])))
        if not parts:  # no image: empty batch
            return self.experts[self.active](image_features)
        return _reassemble(parts, image_features.shape[0])


def _reassemble(parts: list[tuple[Tensor, Tensor]], input_rows: int) -> Tensor:
    """Put each expert's output rows back in input order.

    A projector may merge `merge` consecutive input rows into one output row (Qwen-VL's patch merger:
    2 x 2 patches, so merge = 4); an image owns whole groups, so the output row of input rows
    merge * k ... merge * k + merge - 1 is k. Without merging (merge = 1) rows map one to one."""
    output_rows = sum(projected.shape[0] for _, projected in parts)
    merge = input_rows // max(1, output_rows)
    out = parts[0][1].new_empty((output_rows, *parts[0][1].shape[1:]))
    for rows, projected in parts:
        targets = rows[::merge] // merge
        grouped = targets.unsqueeze(1) * merge + torch.arange(merge, device=rows.device)  # (outputs, merge)
        is_whole_groups = (merge * output_rows == input_rows and projected.shape[0] == len(targets)
                           and torch.equal(grouped.flatten(), rows))
        if not is_whole_groups:
            raise ConfigError(f"eproj: the projector turned {input_rows} input rows into {output_rows}, which do "
                              "not split into whole per-image groups; projector_rows of the model's family must "
                              "give each image a multiple of the rows the projector merges")
        out[targets] = projected
    return out


def expert_projector(model: nn.Module) -> ExpertProjector:
    found = projector(model)
    if not isinstance(found, ExpertProjector):
        raise ConfigError("eproj: the model has no expert projector; call EProj.attach(model) first")
    return found


@torch.no_grad()
def image_queries(model: nn.Module, batch: dict[str, Tensor], feature: ImageFeature) -> Tensor:
    """(images, vision_hidden): the frozen vision tower's pooled (CLS) or patch-mean feature."""
    return pooled_image_features(model, batch, feature)


@torch.no_grad()
def instruction_queries(model: nn.Module, batch: dict[str, Tensor], feature: InstructionFeature,
                        skip_ids: list[int]) -> Tensor:
    """(batch, text_hidden): a frozen text feature mean-pooled over each sample's question tokens.

    Question tokens: attended, not an image token or another id in `skip_ids` (template tokens), and
    not an answer token (label -100) when the batch has labels. 'input-embeddings' pools the base
    LLM's input embeddings; 'language-model' pools the last hidden state of the language model run
    on those tokens alone, with any peft adapter disabled."""
    input_ids = batch["input_ids"]
    keep = instruction_mask(batch, torch.tensor(skip_ids, device=input_ids.device, dtype=input_ids.dtype))
    embeds = input_embeddings(model)(input_ids)  # (batch, seq, hidden)
    if feature == "language-model":
        disabled = model.disable_adapter() if isinstance(model, PeftModel) else contextlib.nullcontext()
        with disabled:
            positions = (keep.long().cumsum(1) - 1).clamp(min=0)  # padding-independent positions
            embeds = language_model(model)(inputs_embeds=embeds, attention_mask=keep.long(),
                                           position_ids=positions).last_hidden_state
    weights = keep.unsqueeze(-1).to(embeds.dtype)  # (batch, seq, 1)
    return ((embeds * weights).sum(1) / weights.sum(1).clamp(min=1)).float()
