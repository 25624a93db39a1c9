"""Task similarity for TIR (He et al. 2023, "Continual Instruction Tuning for Large Multimodal Models").

A task is embedded once per modality (image, instruction, answer) as the L2-normalised mean of a
frozen encoder's feature over up to `max_samples` of its training samples. Across the tasks seen so
far, each modality's cosine matrix is standardised over its upper-triangle entries (z-score over the
pairs) and passed through a sigmoid; the modalities' values are multiplied. TIR then scales each
stored importance entry by (1 - similarity of the task that owns it): similar old tasks are
protected less, leaving room for transfer.

The pure functions (`cosine_matrix`, `standardized_similarity`, `combined_similarity`) take tensors;
`task_embeddings` is the one function that runs the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from citkit.data.llava_format import IMAGE_TOKEN
from citkit.errors import ConfigError, ResumeMismatchError
from citkit.models.families import image_feature_size, input_embeddings, pooled_image_features

if TYPE_CHECKING:
    from citkit.data.samples import Sample
    from citkit.engine.task_data import TaskData

MODALITIES = ("image", "instruction", "answer")
INPUT_EMBEDDINGS = "input-embeddings"


@dataclass(frozen=True)
class TIRConfig:
    """Task-similarity-informed regularisation, on top of EWC or MAS."""

    enabled: bool = field(default=False, metadata={"help": (
        "Scale each stored importance by (1 - similarity of its owner task) before a new task "
        "(He et al. 2023). On by default in the ewc-tir and mas-tir methods.")})
    max_samples: int = field(default=1000, metadata={"help": (
        "Training samples per task averaged into its embeddings (paper: up to 1,000).")})
    modalities: tuple[str, ...] = field(default=MODALITIES, metadata={"help": (
        "Modalities whose similarities are multiplied: image, instruction, answer (paper: all three).")})
    text_features: str = field(default=INPUT_EMBEDDINGS, metadata={"help": (
        "Frozen text encoder for instruction and answer: 'input-embeddings' (the base language "
        "model's token embeddings, mean-pooled; needs no extra model) or the local path / cached hub "
        "id of a text encoder loaded with AutoModel and mean-pooled over its last hidden state (the "
        "paper uses a pretrained sentence encoder).")})
    batch_size: int = field(default=32, metadata={"help": "Samples per encoder forward pass."})
    seed: int = field(default=0, metadata={"help": (
        "Seed of the choice of samples when a task has more than max_samples.")})

    def __post_init__(self) -> None:
        unknown = set(self.modalities) - set(MODALITIES)
        if unknown or not self.modalities:
            raise ConfigError(f"tir.modalities {list(self.modalities)} must be a non-empty subset of "
                              f"{list(MODALITIES)}")
        if self.max_samples < 1 or self.batch_size < 1:
            raise ConfigError(f"tir.max_samples and tir.batch_size must be >= 1, got {self.max_samples}, "
                              f"{self.batch_size}")


# --- pure functions ---------------------------------------------------------------------------------

def cosine_matrix(embeddings: Tensor) -> Tensor:
    """(tasks, tasks) cosine similarities of the rows of `embeddings` (tasks, dim)."""
    unit = nn.functional.normalize(embeddings.float(), dim=-1)
    return unit @ unit.T


def standardized_similarity(cosine: Tensor) -> Tensor:
    """sigmoid of the z-score of each off-diagonal entry among the upper-triangle entries (i < j).

    The z-score uses the population standard deviation (ddof 0). With a single pair, or pairs that are
    all equal, every z-score is 0 and every similarity 0.5. The diagonal is set to 1.
    """
    tasks = cosine.shape[0]
    rows, cols = torch.triu_indices(tasks, tasks, offset=1)
    pairs = cosine[rows, cols]
    if pairs.numel() == 0:
        return torch.ones_like(cosine)
    spread = pairs.std(correction=0) if pairs.numel() > 1 else torch.zeros(())
    z = (cosine - pairs.mean()) / spread if spread > 1e-12 else torch.zeros_like(cosine)
    similarity = torch.sigmoid(z)
    similarity.fill_diagonal_(1.0)
    return similarity


def combined_similarity(embeddings: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """(product over modalities, per modality) similarity matrices from (tasks, dim) embeddings."""
    # modalities in name order, so the float product does not depend on the dict's insertion order
    per_modality = {m: standardized_similarity(cosine_matrix(embeddings[m])) for m in sorted(embeddings)}
    combined = torch.stack(list(per_modality.values())).prod(0)
    return combined, per_modality


# --- embeddings -------------------------------------------------------------------------------------

def _image_feature(model: nn.Module, task: TaskData, samples: Sequence[Sample], batch_size: int) -> Tensor:
    """Mean pooled feature of the vision tower over the samples' images (zeros if there is none)."""
    device = next(model.parameters()).device
    total: Tensor | None = None
    count = 0
    for start in range(0, len(samples), batch_size):
        batch = task.collate([task.encode(s) for s in samples[start:start + batch_size]])
        if "pixel_values" not in batch:
            continue
        features = pooled_image_features(model, {k: v.to(device) for k, v in batch.items()})  # (images, hidden)
        total = features.sum(0).cpu() if total is None else total + features.sum(0).cpu()
        count += features.shape[0]
    if total is None:
        return torch.zeros(image_feature_size(model))
    return total / max(count, 1)


def _texts(samples: Sequence[Sample], role: str) -> list[str]:
    return [" ".join(t.text.replace(IMAGE_TOKEN, " ").strip() for t in s.turns if t.role == role)
            for s in samples]


def _embedding_table_features(model: nn.Module, tokenizer: Any, texts: list[str]) -> Tensor:
    table = input_embeddings(model).weight.detach()  # (vocab, hidden), frozen base weights
    features = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if ids:
            features.append(table[torch.tensor(ids, device=table.device)].float().mean(0))
    return torch.stack(features).mean(0) if features else torch.zeros(table.shape[1])


def _encoder_features(path: str, texts: list[str], batch_size: int, device: torch.device) -> Tensor:
    """Mean over texts of a separate frozen encoder's mask-averaged last hidden state."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # decoder-only encoders: padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    encoder = AutoModel.from_pretrained(path, use_safetensors=True).to(device).eval()
    total = torch.zeros(int(encoder.config.hidden_size))
    for start in range(0, len(texts), batch_size):
        inputs = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                           truncation=True).to(device)
        hidden = encoder(**inputs).last_hidden_state.float()  # (batch, tokens, hidden)
        mask = inputs["attention_mask"].unsqueeze(-1).float()  # (batch, tokens, 1)
        total += ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).sum(0).cpu()  # (hidden,)
    return total / max(len(texts), 1)


@torch.no_grad()
def task_embeddings(model: nn.Module, task: TaskData, config: TIRConfig) -> dict[str, Tensor]:
    """One L2-normalised (dim,) embedding per modality of `config.modalities`, from frozen encoders.

    A modality the task lacks (no image in any sample) gets a zero vector, whose cosine with every
    task is 0."""
    samples = list(task.train)
    if len(samples) > config.max_samples:
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(config.seed))
        samples = [samples[i] for i in order[: config.max_samples].tolist()]
    tokenizer = task.tokenizer
    embeddings: dict[str, Tensor] = {}
    for modality in config.modalities:
        if modality == "image":
            feature = _image_feature(model, task, samples, config.batch_size)
        else:
            texts = _texts(samples, "user" if modality == "instruction" else "assistant")
            if config.text_features == INPUT_EMBEDDINGS:
                feature = _embedding_table_features(model, tokenizer, texts)
            else:
                device = next(model.parameters()).device
                feature = _encoder_features(config.text_features, texts, config.batch_size, device)
        embeddings[modality] = nn.functional.normalize(feature.float().cpu(), dim=0)
    return embeddings


class SimilarityTracker:
    """Embeddings of the tasks seen so far and their latest similarity matrices (TIR's state).

    Row k of each modality's embedding matrix is the task at stream index k, so a row index is also
    the owner index stored with importances. The matrices are computed once per task, when the task
    is added, and kept as JSON in `extra_state()`, hence in each task's checkpoint (method.json)."""

    def __init__(self, config: TIRConfig) -> None:
        self.config = config
        self.task_names: list[str] = []
        self.embeddings: dict[str, Tensor] = {}  # modality -> (tasks, dim)
        self.latest: dict[str, Any] = {}

    def add(self, task: TaskData, model: nn.Module) -> Tensor:
        """Embed `task`; return its similarity to each earlier task, shape (task.index,)."""
        if task.index < len(self.task_names) and self.task_names[task.index] == task.name:  # called again
            self.task_names = self.task_names[: task.index]
            self.embeddings = {m: e[: task.index] for m, e in self.embeddings.items()}
        if task.index != len(self.task_names):
            raise ResumeMismatchError(f"TIR holds embeddings of {len(self.task_names)} tasks "
                                      f"({self.task_names}) but task {task.name!r} is at stream index "
                                      f"{task.index}")
        for modality, vector in task_embeddings(model, task, self.config).items():
            rows = self.embeddings.get(modality, vector.new_zeros((0, vector.shape[0])))
            self.embeddings[modality] = torch.cat([rows, vector[None]])  # (tasks, dim)
        self.task_names.append(task.name)
        combined, per_modality = combined_similarity(self.embeddings)
        self.latest = {"tasks": list(self.task_names), "combined": combined.tolist(),
                       **{m: s.tolist() for m, s in per_modality.items()}}
        return combined[task.index, : task.index]

    def state_dict(self) -> dict[str, Tensor]:
        return {f"tir.embedding.{m}": e for m, e in self.embeddings.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.embeddings = {m: state[f"tir.embedding.{m}"] for m in self.config.modalities
                           if f"tir.embedding.{m}" in state}

    def extra_state(self) -> dict[str, Any]:
        return {"tasks": list(self.task_names), "similarity": self.latest}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.task_names = list(state.get("tasks", []))
        self.latest = dict(state.get("similarity", {}))
