"""EProj (He et al. 2023, "Continual instruction tuning for large multimodal models", Sec. 4).

One copy of the vision-language projector per task, plus two keys per task: one over the frozen
vision feature of the image, one over a frozen text feature of the instruction. At test time each
image goes through the projector whose keys are closest to its queries; no task id is needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from citkit.errors import ConfigError
from citkit.methods.base import Method, register_method
from citkit.methods.eproj.layers import (
    ExpertProjector,
    ImageFeature,
    InstructionFeature,
    expert_projector,
    image_queries,
    instruction_queries,
)
from citkit.models.families import (
    count_images,
    image_owners,
    image_token_id,
    projector,
    projector_rows,
    set_projector,
)
from citkit.models.lora import add_lora

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData


@dataclass(frozen=True)
class EProjConfig:
    """Key tuning, query features and what trains besides the projector copy."""

    key_steps: int = field(default=2000, metadata={"help": (
        "Adam steps of key tuning per task, on queries computed once (a few thousand in the paper).")})
    key_lr: float = field(default=1e-2, metadata={"help": "Learning rate of key tuning (1e-2 in the paper)."})
    key_loss_weight: float = field(default=0.1, metadata={"help": (
        "Weight of the key loss 0.1 * [(1 - cos(q_img, K_img)) + (1 - cos(q_ins, K_ins))] (paper: 0.1).")})
    key_samples: int = field(default=1000, metadata={"help": (
        "Training samples per task whose queries tune its keys.")})
    image_feature: ImageFeature = field(default="pooled", metadata={"help": (
        "Image query: 'pooled' (the vision tower's CLS / pooled output, as in the paper) or 'mean' (mean of "
        "its last hidden states).")})
    instruction_feature: InstructionFeature = field(default="input-embeddings", metadata={"help": (
        "Instruction query: 'input-embeddings' (the frozen LLM input embeddings mean-pooled over the "
        "question tokens) or 'language-model' (the frozen LLM's last hidden state, mean-pooled). The "
        "paper uses a separate frozen text encoder; both options stay inside the model being tuned.")})
    expert_init: Literal["base", "previous"] = field(default="base", metadata={"help": (
        "Where a new task's projector starts: 'base' (the pretrained projector) or 'previous' (the newest "
        "expert, for forward transfer).")})
    also_lora: bool = field(default=False, metadata={"help": (
        "Also train one LoRA on the language model, shared by all tasks (as in LoRA-FT). He et al.'s "
        "EProj trains only the projector expansion, hence False.")})
    feature_batch_size: int = field(default=32, metadata={"help": (
        "Samples per forward pass when computing queries.")})

    def __post_init__(self) -> None:
        if self.key_steps < 0 or self.key_samples < 1 or self.feature_batch_size < 1:
            raise ConfigError(f"eproj: key_steps must be >= 0, key_samples and feature_batch_size >= 1; got "
                              f"{self.key_steps}, {self.key_samples}, {self.feature_batch_size}")
        if self.key_lr <= 0 or self.key_loss_weight <= 0:
            raise ConfigError(f"eproj: key_lr and key_loss_weight must be > 0, got {self.key_lr}, "
                              f"{self.key_loss_weight}")
        for name, allowed in (("image_feature", ("pooled", "mean")),
                              ("instruction_feature", ("input-embeddings", "language-model")),
                              ("expert_init", ("base", "previous"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"eproj {name} {getattr(self, name)!r}: use one of {', '.join(allowed)}")


@register_method("eproj")
class EProj(Method):
    """Projector expansion with key-based routing per image.

    Per task: add a projector copy (the others are frozen), tune the task's keys, train the copy with
    the usual loss. Key tuning runs in `before_task` on queries computed once with the frozen
    encoders; it uses its own Adam on the keys only (the keys are not model parameters, so the
    engine's step never touches them), which is equivalent to the paper's key loss because the
    queries are detached. Its optimum is known (K proportional to the sum of normalised queries);
    the paper's optimiser is kept so the key loss is the same as the paper's."""

    config_class = EProjConfig

    def __init__(self, config: EProjConfig | None = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.image_keys: Tensor | None = None        # (tasks, vision_hidden)
        self.instruction_keys: Tensor | None = None  # (tasks, text_hidden)
        self.skip_token_ids: list[int] = []          # template and image tokens, left out of the queries

    # --- structure ---
    def attach(self, model: nn.Module) -> nn.Module:
        set_projector(model, ExpertProjector(projector(model)))
        if self.config.also_lora:  # the projector copies are EProj's own; peft must not wrap the projector
            model = add_lora(model, replace(self.adapter, train_projector=False))
        return model

    def resume(self, model: nn.Module, finished: list[str]) -> nn.Module:
        projector = expert_projector(model)
        while len(projector.experts) < len(finished):
            projector.add_expert(self.config.expert_init)
        if finished:
            projector.train_only(len(finished) - 1)
        return model

    # --- training ---
    def before_task(self, task: TaskData, model: nn.Module) -> None:
        projector = expert_projector(model)
        if task.index > len(projector.experts):
            raise ConfigError(f"eproj: task {task.name!r} has index {task.index} but only "
                              f"{len(projector.experts)} projector experts exist; visit tasks in order")
        if task.index == len(projector.experts):
            projector.add_expert(self.config.expert_init)
        projector.train_only(task.index)
        tokenizer = task.tokenizer
        self.skip_token_ids = sorted(set(tokenizer.all_special_ids) | {image_token_id(model)})
        image_query, instruction_query = self._task_queries(task, model)
        image_key, instruction_key = self._tune_keys(image_query, instruction_query)
        self.image_keys = _set_row(self.image_keys, task.index, image_key)
        self.instruction_keys = _set_row(self.instruction_keys, task.index, instruction_key)

    def _task_queries(self, task: TaskData, model: nn.Module) -> tuple[Tensor, Tensor]:
        """Queries of up to `key_samples` training samples (answer tokens left out, so as at test time)."""
        samples = [s for s in task.train if s.images][: self.config.key_samples]
        if not samples:
            raise ConfigError(f"eproj: task {task.name!r} has no training sample with an image; "
                              "EProj routes images, so every task needs some")
        device = next(model.parameters()).device
        image_parts, instruction_parts = [], []
        for start in range(0, len(samples), self.config.feature_batch_size):
            chunk = [task.encode(s) for s in samples[start:start + self.config.feature_batch_size]]
            batch = {k: v.to(device) for k, v in task.collate(chunk).items()}
            image_query, instruction_query = self.queries(batch, model)
            image_parts.append(image_query)
            instruction_parts.append(instruction_query)
        return torch.cat(image_parts), torch.cat(instruction_parts)

    def _tune_keys(self, image_query: Tensor, instruction_query: Tensor) -> tuple[Tensor, Tensor]:
        """Minimise 0.1 [(1 - cos(q_img, K_img)) + (1 - cos(q_ins, K_ins))] over the keys (init U[0, 1])."""
        keys = [nn.Parameter(torch.rand(image_query.shape[1], device=image_query.device)),
                nn.Parameter(torch.rand(instruction_query.shape[1], device=instruction_query.device))]
        optimizer = torch.optim.Adam(keys, lr=self.config.key_lr)
        with torch.enable_grad():
            for _ in range(self.config.key_steps):
                loss = self.config.key_loss_weight * (
                    (1 - F.cosine_similarity(image_query, keys[0].unsqueeze(0), dim=-1)).mean()
                    + (1 - F.cosine_similarity(instruction_query, keys[1].unsqueeze(0), dim=-1)).mean())
                for key, grad in zip(keys, torch.autograd.grad(loss, keys), strict=True):
                    key.grad = grad
                optimizer.step()
        return keys[0].detach().cpu(), keys[1].detach().cpu()

    # --- inference ---
    def queries(self, batch: dict[str, Tensor], model: nn.Module) -> tuple[Tensor, Tensor]:
        """Queries per image of `batch`: (images, vision_hidden) and (images, text_hidden).

        An image's instruction query is that of the sample it belongs to."""
        owners = image_owners(batch["input_ids"], count_images(model, batch), image_token_id(model))
        image_query = image_queries(model, batch, self.config.image_feature)
        instruction_query = instruction_queries(model, batch, self.config.instruction_feature,
                                                self.skip_token_ids)
        return image_query, instruction_query[owners]

    @torch.no_grad()
    def choose_experts(self, batch: dict[str, Tensor], model: nn.Module) -> Tensor:
        """(images,) the expert with the largest cos(q_img, K_img,k) + cos(q_ins, K_ins,k), per image."""
        if self.image_keys is None or self.instruction_keys is None:
            raise ConfigError("eproj: no task keys yet; routing needs at least one before_task()")
        image_query, instruction_query = self.queries(batch, model)
        scores = (_cosine_table(image_query, self.image_keys)
                  + _cosine_table(instruction_query, self.instruction_keys))  # (images, tasks)
        return scores.argmax(1)

    @contextlib.contextmanager
    def route(self, batch: dict[str, Tensor], model: nn.Module) -> Iterator[None]:
        """Inside the context, every image of `batch` goes through its own chosen projector expert."""
        if "pixel_values" not in batch or self.image_keys is None:
            yield
            return
        experts = expert_projector(model)
        choices = self.choose_experts(batch, model)  # (images,)
        experts.routing = choices.repeat_interleave(projector_rows(model, batch).to(choices.device))  # (rows,)
        try:
            yield
        finally:
            experts.routing = None

    # --- state ---
    def state_dict(self) -> dict[str, Tensor]:
        if self.image_keys is None or self.instruction_keys is None:
            return {}
        return {"image_keys": self.image_keys, "instruction_keys": self.instruction_keys}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        unknown = set(state) - {"image_keys", "instruction_keys"}
        if unknown:
            raise ConfigError(f"eproj: unexpected state entries {sorted(unknown)}")
        self.image_keys = state.get("image_keys")
        self.instruction_keys = state.get("instruction_keys")

    def extra_state(self) -> dict[str, Any]:
        return {"skip_token_ids": list(self.skip_token_ids)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.skip_token_ids = [int(i) for i in state.get("skip_token_ids", [])]


def _cosine_table(queries: Tensor, keys: Tensor) -> Tensor:
    """(n, tasks) cosine similarity of each query (n, d) with each task's key (tasks, d)."""
    return F.normalize(queries, dim=-1) @ F.normalize(keys.to(queries.device), dim=-1).T


def _set_row(table: Tensor | None, index: int, row: Tensor) -> Tensor:
    """`table` with row `index` replaced, or appended when `index` is one past its end."""
    if table is None or index == table.shape[0]:
        return row.unsqueeze(0) if table is None else torch.cat([table, row.unsqueeze(0)])
    table = table.clone()
    table[index] = row
    return table
