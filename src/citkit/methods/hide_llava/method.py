"""HiDe-LLaVA (Guo et al., "HiDe-LLaVA: Hierarchical Decoupling for Continual Instruction Tuning of
Multimodal Large Language Model", ACL 2025).

CKA between task-specific models (Sec. 3; `citkit analyze cka`) shows the lower layers stay alike
across tasks while the top layer becomes task-specific. So each task trains its own LoRA expert in
every adapted layer; after training, the top layer keeps the experts apart and mixes them per sample
with weights from how close the sample is to each task's anchors (task-specific expansion), and the
other layers add one fusion of all experts (task-general fusion).

Departures from the authors' code, on purpose:
- routing is over trained tasks only (the code also softmaxes over untrained slots' random anchors);
- the expanded layers are an option read against the model's `num_hidden_layers` (the code: index 31);
- feature sizes come from the encoders (the code: 768);
- each expert is its own rank-r LoRA trained on the frozen base alone (the setting the CKA analysis
  compares), where the code slices one rank-(T r) LoRA into T slots;
- anchors are averaged in one no-gradient pass over the task's training samples after training,
  rather than accumulated during the training steps (same features, same mean);
- by default features and anchors are centred on the anchors' mean before the cosine
  (`center_features`; False gives the paper's raw cosine): with the model's own mean-pooled
  features, raw cosines barely differ between tasks and the softmax at T = 0.1 stays near uniform.

Diagnostics: `inference_report` measures the router after every task (share of test samples whose
largest weight is on their own task, and the mean weight there; the run report's routing table), and
`oracle_routing` replaces the router by the true task at evaluation, so that a run shows what routing
costs; `citkit analyze blocks` fuses or drops one block at a time under oracle routing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from citkit.data.samples import Turn
from citkit.errors import ConfigError, ResumeMismatchError
from citkit.methods.base import Method, register_method
from citkit.methods.hide_llava.config import HiDeConfig
from citkit.methods.hide_llava.features import ClipFeatures, ModelFeatures, pool_images
from citkit.methods.hide_llava.layers import (
    HiDeLinear,
    hide_layers,
    num_decoder_layers,
    wrap_targets,
    wrap_vision_tower,
)
from citkit.methods.routing_report import routing_accuracy
from citkit.models.families import (
    count_images,
    image_owners,
    image_token_id,
    instruction_mask,
    projector,
)
from citkit.models.lora import AdapterConfig

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData


@register_method("hide-llava")
class HiDeLLaVA(Method):
    """Per-task LoRA experts; routed by image and instruction anchors on top, fused below.

    Inference after task T costs about one LoRA (the materialised fusion) plus T small experts in
    the expanded layers, plus one vision-tower pass per batch for the routing features. With code
    fusion the fused layers also store only one LoRA (the experts are folded into their sums after each
    task); with paper fusion they keep all T experts."""

    config_class = HiDeConfig

    def __init__(self, config: HiDeConfig | None = None, adapter: AdapterConfig | None = None) -> None:
        super().__init__(config, adapter)
        self.config: HiDeConfig
        self.tasks: list[str] = []               # trained tasks, in order (one expert each)
        self.image_anchors: list[Tensor] = []    # per trained task: (image_dim,) mean image feature
        self.text_anchors: list[Tensor] = []     # per trained task: (text_dim,) mean instruction feature
        self.skip_ids: list[int] = []            # token ids that are not instruction words
        self.features = (ClipFeatures(self.config.clip_path) if self.config.anchor_encoder == "clip"
                         else ModelFeatures(self.config.image_feature))
        self._layers: list[HiDeLinear] = []
        self._vision_layers: list[HiDeLinear] = []  # the vision tower's experts (vision_experts only)
        self._expanded: list[int] = []           # decoder layer indices with routed experts
        self._stale = False                      # inference factors must be rebuilt before use
        self._true_task: str | None = None       # the task whose test set is being generated (oracle routing)

    # --- structure ---
    def attach(self, model: nn.Module) -> nn.Module:
        expanded = self.config.expanded(num_decoder_layers(model))
        self._expanded = sorted(expanded)
        wrap_targets(model, self.adapter.target_modules, expanded, self.adapter.rank, self.adapter.alpha,
                     self.adapter.dropout, fold_fused=self.config.fusion == "code", init=self.config.expert_init)
        if self.config.vision_experts:
            self._vision_layers = list(wrap_vision_tower(model, self.adapter.rank, self.adapter.alpha,
                                                         self.adapter.dropout, init=self.config.expert_init).values())
        self._layers = hide_layers(model)
        if self.adapter.train_projector:
            projector(model).requires_grad_(True)
        return model

    def resume(self, model: nn.Module, finished: list[str]) -> nn.Module:
        """One (frozen) expert per finished task (one folded expert in code-fused layers), so the saved
        experts load by name."""
        for layer in self._layers:
            for _ in finished[:1] if layer.folds else finished:
                layer.add_expert()
            layer.train_only(None)
        self._stale = True
        return model

    # --- training ---
    def before_task(self, task: TaskData, model: nn.Module) -> None:
        self._remember_tokens(task, model)
        for layer in self._layers:
            layer.train_only(layer.add_expert())

    def after_task(self, task: TaskData, model: nn.Module) -> None:
        for layer in self._layers:
            layer.train_only(None)
            layer.fold()
        image, text = self._anchors(task, model)
        self.image_anchors.append(image)
        self.text_anchors.append(text)
        self.tasks.append(task.name)
        self._materialise()

    # --- inference ---
    def routing_weights(self, batch: dict[str, Tensor], model: nn.Module) -> Tensor:
        """(batch, trained tasks) softmax(r / T), r_c = w cos(img, imgAnchor_c) + (1 - w) cos(txt, txtAnchor_c)."""
        if not self.tasks:
            raise ConfigError("hide-llava: no task has been trained yet, so there is nothing to route to")
        image, text, has_image = self._sample_features(batch, model)
        scores = self._cosines(text, torch.stack(self.text_anchors))  # (batch, tasks)
        if image is not None:
            image_scores = self._cosines(image, self._image_anchor_matrix())
            w = self.config.image_weight
            scores = torch.where(has_image.unsqueeze(1), w * image_scores + (1 - w) * scores, scores)
        return torch.softmax(scores / self.config.temperature, dim=1)

    def route(self, batch: dict[str, Tensor], model: nn.Module) -> contextlib.AbstractContextManager[None]:
        return self._routing(batch, model)

    @contextlib.contextmanager
    def evaluating(self, task: TaskData) -> Iterator[None]:
        """Remember which task's test set is generated; only `oracle_routing` reads it."""
        self._true_task = task.name
        try:
            yield
        finally:
            self._true_task = None

    def oracle_weights(self, batch: dict[str, Tensor]) -> Tensor | None:
        """(batch, trained tasks) one-hot on the task being evaluated, or None when it is not trained yet."""
        if self._true_task not in self.tasks:
            return None
        weights = torch.zeros(batch["input_ids"].shape[0], len(self.tasks), device=batch["input_ids"].device)
        weights[:, self.tasks.index(self._true_task)] = 1.0
        return weights

    @contextlib.contextmanager
    def _routing(self, batch: dict[str, Tensor], model: nn.Module) -> Iterator[None]:
        """Per-sample weights stay set on the expanded layers for every forward of the generate call."""
        if self._stale:
            self._materialise()
        expanded = [layer for layer in self._layers if layer.expanded]
        weights = None
        if expanded and self.tasks:
            weights = self.oracle_weights(batch) if self.config.oracle_routing else None
            weights = self.routing_weights(batch, model) if weights is None else weights
        for layer in expanded:
            layer.routing = weights
        try:
            yield
        finally:
            for layer in expanded:
                layer.routing = None

    def inference_report(self, tasks: list[TaskData], model: nn.Module) -> dict[str, Any]:
        """How well the anchors' router picks each trained task's test samples: `argmax` (% of samples whose
        largest weight is on their own task) and `weight` (mean weight on it, %). Measured on the router, even
        under `oracle_routing`."""
        if not self.tasks:
            return {}
        own = {name: i for i, name in enumerate(self.tasks)}
        return {"routing": routing_accuracy(tasks, own, self.routing_weights, model, self.config.feature_batch_size)}

    # --- state ---
    def state_dict(self) -> dict[str, Tensor]:
        if not self.tasks:
            return {}
        return {"anchors.image": self._image_anchor_matrix(), "anchors.text": torch.stack(self.text_anchors)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        unknown = set(state) - {"anchors.image", "anchors.text"}
        if unknown:
            raise ResumeMismatchError(f"hide-llava: unexpected state {sorted(unknown)[:3]}")
        self.image_anchors = list(state["anchors.image"].float()) if state else []
        self.text_anchors = list(state["anchors.text"].float()) if state else []
        self._stale = True

    def extra_state(self) -> dict[str, Any]:
        return {"tasks": list(self.tasks), "fusion": self.config.fusion, "layout": self.config.layout,
                "expanded_layers": list(self._expanded), "temperature": self.config.temperature,
                "anchor_encoder": self.config.anchor_encoder, "skip_ids": list(self.skip_ids)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("fusion", self.config.fusion) != self.config.fusion:
            raise ResumeMismatchError(f"hide-llava: the run used fusion={state['fusion']!r}, the config asks for "
                                      f"{self.config.fusion!r}; resume with the run's setting")
        self.tasks = list(state.get("tasks", []))
        self.skip_ids = [int(i) for i in state.get("skip_ids", [])]
        if len(self.tasks) != len(self.text_anchors):
            raise ResumeMismatchError(f"hide-llava: {len(self.tasks)} trained tasks but {len(self.text_anchors)} "
                                      "anchors")
        self._stale = True

    # --- helpers ---
    def _materialise(self) -> None:
        """Build the routed stacks and the fused expert once (per task), from the trained experts."""
        for layer in self._layers:
            layer.materialise(len(self.tasks), self.config.fusion)
        self._stale = False

    def _cosines(self, features: Tensor, anchors: Tensor) -> Tensor:
        """(batch, tasks) cosine of each sample's feature with each task's anchor (centred if configured)."""
        anchors = anchors.to(features.device)  # (tasks, dim)
        if self.config.center_features:
            center = anchors.mean(0)
            features, anchors = features - center, anchors - center
        return F.cosine_similarity(features.unsqueeze(1), anchors.unsqueeze(0), dim=-1)

    def _image_anchor_matrix(self) -> Tensor:
        """(tasks, image_dim); a text-only task's anchor is zeros (cosine 0 with every image)."""
        dim = max(a.numel() for a in self.image_anchors)
        return torch.stack([a if a.numel() == dim else torch.zeros(dim) for a in self.image_anchors])

    def _remember_tokens(self, task: TaskData, model: nn.Module) -> None:
        """Token ids that carry no instruction: special tokens, the image token, the chat template's words."""
        template = task.render([Turn("user", "")], add_generation_prompt=True)
        ids = set(task.tokenizer([template], add_special_tokens=False)["input_ids"][0])
        ids |= set(task.tokenizer.all_special_ids) | {image_token_id(model)}
        self.skip_ids = sorted(int(i) for i in ids)
        if isinstance(self.features, ClipFeatures):
            self.features.model_tokenizer = task.tokenizer

    @contextlib.contextmanager
    def _frozen_vision(self) -> Iterator[None]:
        """The vision tower without its experts (if any), so the router's image features are the base's."""
        for layer in self._vision_layers:
            layer.enabled = False
        try:
            yield
        finally:
            for layer in self._vision_layers:
                layer.enabled = True

    def _sample_features(self, batch: dict[str, Tensor], model: nn.Module) -> tuple[Tensor | None, Tensor, Tensor]:
        """Per-sample image feature (or None when no sample has one), instruction feature, has-image mask."""
        keep = instruction_mask(batch, torch.tensor(self.skip_ids, dtype=torch.long))
        text = self.features.texts(model, batch, keep)  # (batch, text_dim)
        batch_size = batch["input_ids"].shape[0]
        images = count_images(model, batch)
        if not images:
            return None, text, torch.zeros(batch_size, dtype=torch.bool, device=text.device)
        owners = image_owners(batch["input_ids"], images, image_token_id(model))
        with self._frozen_vision():
            features = self.features.images(model, batch)
        image, has_image = pool_images(features, owners, batch_size)
        return image, text, has_image

    @torch.no_grad()
    def _anchors(self, task: TaskData, model: nn.Module) -> tuple[Tensor, Tensor]:
        """Mean image feature over the task's images and mean instruction feature over its samples."""
        device = next(model.parameters()).device
        samples = task.train[: self.config.anchor_samples]
        image_sum: Tensor | None = None
        text_sum: Tensor | None = None
        images = 0
        for batch in task.batches(self.config.feature_batch_size, samples):
            batch = {k: v.to(device) for k, v in batch.items()}
            image, text, has_image = self._sample_features(batch, model)
            text_sum = text.sum(0) if text_sum is None else text_sum + text.sum(0)
            if image is not None:
                part = image[has_image].sum(0)
                image_sum = part if image_sum is None else image_sum + part
                images += int(has_image.sum())
        if text_sum is None:
            raise ConfigError(f"hide-llava: task {task.name!r} has no training samples to compute anchors from")
        image_anchor = image_sum / images if image_sum is not None and images else None
        if image_anchor is None:  # a text-only task: its image anchor matches nothing (see _image_anchor_matrix)
            image_anchor = torch.zeros(1)
        return image_anchor.float().cpu(), (text_sum / len(samples)).float().cpu()
