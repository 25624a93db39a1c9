"""DISCO (Guo et al., "Federated continual instruction tuning", ICCV 2025): dynamic knowledge
organisation in training, subspace selective activation at inference.

Each adapted layer holds K LoRA subspaces. A task (centralised) or a client's data (federated) is
identified by its *identity token*, the mean frozen text feature of its instructions (the base LLM's
input embeddings mean-pooled over the instruction tokens, as `hide-llava`'s model features), and
trains one subspace (slot). At inference each sample's instruction feature is compared with every
filled slot's global token, s_k = cos, and the layers add sum_k softmax(s / T)_k B_k A_k x.

Centralised (`citkit run --method disco`): one slot per task (the next free slot; the nearest once all
are used), no server. Federated: the slot comes from the server (`configure_client`); the server side
is `federated.DiscoCoordinator`.

Departures: training uses only the assigned slot in the forward pass (the others are inactive, not
only frozen); the text feature is the tuned model's own frozen embeddings, not a separate encoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from citkit.data.samples import Turn
from citkit.errors import ConfigError, ResumeMismatchError
from citkit.methods.base import Method, register_method
from citkit.methods.disco.config import DiscoConfig
from citkit.methods.disco.layers import DiscoLinear, add_disco
from citkit.methods.disco.slots import (
    activation_weights,
    cosines,
    match_slot,
    merge_token,
    own_slots,
    record_slot_samples,
    slot_samples_from_json,
    slot_samples_json,
)
from citkit.methods.routing_report import routing_accuracy
from citkit.models.families import image_token_id, instruction_mask, mean_instruction_embedding, projector

if TYPE_CHECKING:
    from citkit.engine.task_data import TaskData


@register_method("disco")
class Disco(Method):
    """K LoRA subspaces per layer, one per recognised task, mixed per sample by instruction similarity."""

    config_class = DiscoConfig
    federated_coordinator: ClassVar[Any] = None  # set by citkit.methods.disco.federated

    def __init__(self, config: DiscoConfig | None = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.config: DiscoConfig
        self.tokens: Tensor | None = None     # (K, dim) global identity token per slot
        self.counts = torch.zeros(self.config.num_subspaces)  # (K,) samples behind each token; 0 = free slot
        self.skip_ids: list[int] = []          # token ids that are not instruction words
        self.slot: int | None = None           # the slot the current task / client trains
        self.is_federated = False               # the slot and the tokens come from a server
        self.token: Tensor | None = None        # this task's / client's identity token
        self.token_count = 0
        self.slot_samples: dict[int, dict[str, int]] = {}  # slot -> task -> samples it trained on (diagnostic)
        self._layers: list[DiscoLinear] = []

    # --- structure ---
    def attach(self, model: nn.Module) -> nn.Module:
        self._layers = add_disco(model, self.config.target_modules, self.config.num_subspaces, self.adapter.rank,
                                 self.adapter.alpha, self.adapter.dropout)
        self._train_only(None)
        if self.adapter.train_projector:  # one shared projector, averaged over every client
            projector(model).requires_grad_(True)
        return model

    # --- training ---
    def identity_token(self, task: TaskData, model: nn.Module) -> tuple[Tensor, int]:
        """(dim,) mean instruction feature over the task's samples, and how many samples it averages."""
        self._remember_tokens(task, model)
        device = next(model.parameters()).device
        samples = task.train[: self.config.feature_samples]
        total: Tensor | None = None
        with torch.no_grad():
            for batch in task.batches(self.config.feature_batch_size, samples):
                batch = {k: v.to(device) for k, v in batch.items()}
                features = self._features(batch, model).sum(0)  # (dim,)
                total = features if total is None else total + features
        if total is None:
            raise ConfigError(f"disco: task {task.name!r} has no training sample to identify it by")
        return (total / len(samples)).cpu(), len(samples)

    def configure_client(self, info: dict[str, Any], task: TaskData, model: nn.Module) -> None:
        """Federated: take the server's tokens and choose this client's slot (before `fit_task`)."""
        from citkit.methods.disco.federated import client_slot

        self.is_federated = True
        self.token, self.token_count = self.identity_token(task, model)
        if "disco.tokens" in info:
            self.tokens, self.counts = info["disco.tokens"].float(), info["disco.counts"].float()
        self.slot = client_slot(self.config, self.token, self.tokens, self.counts, info, self.token_count)

    def before_task(self, task: TaskData, model: nn.Module) -> None:
        if not self.is_federated:  # centralised: one slot per task, the next free one (nearest once full)
            self.token, self.token_count = self.identity_token(task, model)
            free = (self.counts == 0).nonzero()
            self.slot = int(free[0]) if len(free) else match_slot(self.token, self._token_matrix(), self.counts, 2.0)
        if self.slot is None:
            raise ConfigError("disco: no slot was assigned for this task")
        self._train_only(self.slot)

    def after_task(self, task: TaskData, model: nn.Module) -> None:
        if not self.is_federated and self.token is not None and self.slot is not None:
            tokens = self._token_matrix()
            tokens[self.slot], self.counts[self.slot] = merge_token(tokens[self.slot], float(self.counts[self.slot]),
                                                                    self.token, float(self.token_count))
            self.tokens = tokens
            record_slot_samples(self.slot_samples, self.slot, {task.name: len(task.train)})
        self._train_only(None)

    # --- inference ---
    def routing_weights(self, batch: dict[str, Tensor], model: nn.Module) -> Tensor:
        """(batch, K): the activation of each slot for each sample (0 for free slots)."""
        filled = self.counts > 0
        if self.tokens is None or not filled.any():
            raise ConfigError("disco: no subspace has a token yet; train a task before evaluating")
        features = self._features(batch, model)  # (batch, dim)
        scores = cosines(features, self.tokens.to(features.device))  # (batch, K)
        return activation_weights(scores, filled.to(features.device), self.config.activation, self.config.temperature)

    def route(self, batch: dict[str, Tensor], model: nn.Module) -> contextlib.AbstractContextManager[None]:
        return self._routing(batch, model)

    def inference_report(self, tasks: list[TaskData], model: nn.Module) -> dict[str, Any]:
        """Per trained task: % of its test samples whose largest activation is on its own slot (the one trained
        on most of its samples, counted per round in a federation) and the mean activation there (%)."""
        own = own_slots(self.slot_samples)
        if not own or self.tokens is None:
            return {}
        return {"routing": routing_accuracy(tasks, own, self.routing_weights, model, self.config.feature_batch_size),
                "routing_target": "slot"}

    @contextlib.contextmanager
    def _routing(self, batch: dict[str, Tensor], model: nn.Module) -> Iterator[None]:
        weights = self.routing_weights(batch, model)
        for layer in self._layers:
            layer.routing = weights
        try:
            yield
        finally:
            for layer in self._layers:
                layer.routing = None

    # --- federated payloads ---
    def client_payload(self, model: nn.Module) -> dict[str, Tensor]:
        """Only the trained slot (and a trained projector)."""
        if self.slot is None:
            raise ConfigError("disco: no slot was trained, so there is nothing to send")
        suffixes = (f".lora_A.{self.slot}", f".lora_B.{self.slot}")
        shared = {id(p) for p in projector(model).parameters()} if self.adapter.train_projector else set()
        return {n: p.detach() for n, p in model.named_parameters() if n.endswith(suffixes) or id(p) in shared}

    def changeable_keys(self, model: nn.Module) -> list[str]:
        """Any slot may be trained by some client of a round."""
        shared = {id(p) for p in projector(model).parameters()} if self.adapter.train_projector else set()
        return [n for n, p in model.named_parameters() if ".lora_A." in n or ".lora_B." in n or id(p) in shared]

    def client_report(self) -> dict[str, Tensor]:
        if self.token is None or self.slot is None:
            return {}
        return {"token": self.token, "slot": torch.tensor([self.slot]), "count": torch.tensor([self.token_count]),
                "skip_ids": torch.tensor(self.skip_ids, dtype=torch.long)}

    # --- state ---
    def state_dict(self) -> dict[str, Tensor]:
        return {} if self.tokens is None else {"tokens": self.tokens.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        unknown = set(state) - {"tokens", "counts"}
        if unknown:
            raise ResumeMismatchError(f"disco: unexpected state {sorted(unknown)[:3]}")
        self.tokens = state["tokens"].float().clone() if "tokens" in state else None
        self.counts = state["counts"].float().clone() if "counts" in state else torch.zeros(self.config.num_subspaces)
        if self.counts.numel() != self.config.num_subspaces:
            raise ResumeMismatchError(f"disco: the state has {self.counts.numel()} slots, the config "
                                      f"{self.config.num_subspaces}")

    def extra_state(self) -> dict[str, Any]:
        return {"skip_ids": list(self.skip_ids), "slot_samples": slot_samples_json(self.slot_samples)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.skip_ids = [int(i) for i in state.get("skip_ids", self.skip_ids)]
        self.slot_samples = slot_samples_from_json(state.get("slot_samples", {}))

    # --- helpers ---
    def _train_only(self, slot: int | None) -> None:
        for layer in self._layers:
            layer.active = slot
            for k in range(len(layer.lora_A)):
                layer.lora_A[k].requires_grad_(k == slot)
                layer.lora_B[k].requires_grad_(k == slot)

    def _token_matrix(self) -> Tensor:
        if self.tokens is None:
            if self.token is None:
                raise ConfigError("disco: no identity token yet; before_task computes it")
            self.tokens = torch.zeros(self.config.num_subspaces, self.token.numel())
        return self.tokens

    def _features(self, batch: dict[str, Tensor], model: nn.Module) -> Tensor:
        keep = instruction_mask(batch, torch.tensor(self.skip_ids, dtype=torch.long))
        return mean_instruction_embedding(model, batch, keep)  # (batch, dim)

    def _remember_tokens(self, task: TaskData, model: nn.Module) -> None:
        """Token ids that carry no instruction: special tokens, the image token, the chat template's words."""
        template = task.render([Turn("user", "")], add_generation_prompt=True)
        ids = set(task.tokenizer([template], add_special_tokens=False)["input_ids"][0])
        ids |= set(task.tokenizer.all_special_ids) | {image_token_id(model)}
        self.skip_ids = sorted(int(i) for i in ids)
