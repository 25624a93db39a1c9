"""Where does a model become task-specific? CKA between task-specific models, layer by layer.

HiDe-LLaVA (Guo et al., ACL 2025, Sec. 3) fine-tunes one base model separately on each task, feeds
every fine-tuned model the same inputs (50 samples per dataset), takes each decoder layer's MLP
output (down_proj) mean-pooled over tokens, and compares the task models pairwise with CKA. High
similarity in a layer means the tasks changed it alike (task-general); a drop means the layer went
task-specific. The paper finds the drop only at the top layer; this analysis lets a user check that
on their own model and stream instead of trusting "the last layer".

Each task model is the base plus one LoRA trained with the engine's `fit_task` (the `lora-ft`
method, same seed and so the same initialisation for every task), or a checkpoint the user already
has. Outputs: `cka.csv` (one row per layer and task pair), `cka.md`, `cka.json` and `cka.png`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import torch
from accelerate.logging import get_logger
from transformers import set_seed

from citkit.analysis.cka import linear_cka, rbf_cka
from citkit.data.encoding import SampleEncoder, collate
from citkit.data.samples import Sample
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.config import TrainConfig
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.errors import ConfigError
from citkit.io import atomic_write, write_json, write_text
from citkit.models.families import family_of
from citkit.models.loading import ModelConfig, load_model, load_processor
from citkit.models.lora import AdapterConfig
from citkit.models.registry import resolve_model_path

logger = get_logger(__name__)
BASE = "base"  # name of the base model among the compared models (include_base=True)


@dataclass(frozen=True)
class LayerSimilarityConfig:
    """What to compare, and how the task models are made."""

    stream: StreamConfig = field(default_factory=StreamConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(progress=False))
    samples_per_task: int = field(default=50, metadata={"help": (
        "Probe inputs taken from each task's test set (the first N); every model sees the union (paper: 50).")})
    module: str = field(default="mlp.down_proj", metadata={"help": (
        "Module inside each decoder block whose output is compared (paper: the MLP's down_proj).")})
    checkpoints: dict[str, str] = field(default_factory=dict, metadata={"help": (
        "task -> folder of an existing task model (save_pretrained folder or peft adapter folder); "
        "tasks not listed are fine-tuned here.")})
    include_base: bool = field(default=False, metadata={"help": "Also compare every task model with the base model."})
    rbf_bandwidth: float = field(default=1.0, metadata={"help": "RBF bandwidth as a multiple of the median distance."})
    batch_size: int = field(default=32, metadata={"help": "Probe inputs per forward pass."})
    seed: int = field(default=0, metadata={"help": "Seed of the LoRA initialisation (the same for every task)."})
    out_dir: str = field(default="runs/cka", metadata={"help": "Where cka.csv, cka.md, cka.json, cka.png go."})
    runs_dir: str = field(default="runs", metadata={"help": "Cache folder for exported toy data and models."})

    def __post_init__(self) -> None:
        if self.samples_per_task < 1:
            raise ConfigError(f"samples_per_task must be >= 1, got {self.samples_per_task}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class LayerSimilarity:
    """CKA of every pair of models at every layer: `linear[pair][k]` is layer `layers[k]`'s value."""

    layers: list[int]
    models: list[str]
    linear: dict[tuple[str, str], list[float]]
    rbf: dict[tuple[str, str], list[float]]
    samples: int

    def mean_by_layer(self, kind: str = "linear") -> list[float]:
        """Mean over the pairs of task models (pairs with the base model are left out when others exist)."""
        table = self.linear if kind == "linear" else self.rbf
        tasks_only = [v for pair, v in table.items() if BASE not in pair] or list(table.values())
        return [sum(v[k] for v in tasks_only) / len(tasks_only) for k in range(len(self.layers))]

    def largest_drop(self, kind: str = "linear") -> tuple[int, float]:
        """(layer, fall of the mean CKA from the layer below it): where the models part ways most."""
        means = self.mean_by_layer(kind)
        if len(means) < 2:
            return self.layers[0], 0.0
        k = max(range(1, len(means)), key=lambda i: means[i - 1] - means[i])
        return self.layers[k], means[k - 1] - means[k]

    def rows(self) -> list[dict[str, object]]:
        return [{"layer": layer, "model_a": a, "model_b": b, "linear_cka": self.linear[(a, b)][k],
                 "rbf_cka": self.rbf[(a, b)][k]} for k, layer in enumerate(self.layers) for (a, b) in self.linear]

    def to_markdown(self) -> str:
        """Rows: pairs of models, then their mean; columns: layers; cells: linear / RBF CKA."""
        head = ["models", *(f"layer {layer}" for layer in self.layers)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for (a, b), values in self.linear.items():
            cells = [f"{v:.3f} / {r:.3f}" for v, r in zip(values, self.rbf[(a, b)], strict=True)]
            lines.append(f"| {a} / {b} | " + " | ".join(cells) + " |")
        means = zip(self.mean_by_layer("linear"), self.mean_by_layer("rbf"), strict=True)
        lines.append("| **mean of task pairs** | " + " | ".join(f"**{v:.3f} / {r:.3f}**" for v, r in means) + " |")
        drop, fall = self.largest_drop("linear")
        return (f"CKA (linear / RBF) between models, per decoder layer, on {self.samples} probe inputs.\n\n"
                + "\n".join(lines) + f"\n\nLargest fall of the mean linear CKA from one layer to the next: "
                f"into layer {drop} (-{fall:.3f}).\n")


def decoder_modules(model: torch.nn.Module, module: str = "mlp.down_proj") -> dict[int, torch.nn.Module]:
    """Decoder layer index -> the `module` of that layer inside the language model (adapter wrappers included)."""
    prefix = family_of(model).language_model_regex
    pattern = re.compile(rf"{prefix}\.layers\.(\d+)\.{re.escape(module)}$")
    found = {int(m.group(1)): mod for name, mod in model.named_modules() if (m := pattern.search(name))}
    if not found:
        raise ConfigError(f"no module matches {pattern.pattern!r}; check `module` ({module!r})")
    return dict(sorted(found.items()))


@contextmanager
def capture_pooled(modules: dict[int, torch.nn.Module], mask: dict[str, torch.Tensor]) -> Iterator[dict[int, list]]:
    """Forward hooks storing each module's output mean-pooled over the non-padding tokens of `mask['mask']`."""
    store: dict[int, list[torch.Tensor]] = {k: [] for k in modules}

    def hook(index: int):  # type: ignore[no-untyped-def]
        def save(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
            weights = mask["mask"].to(output.dtype).unsqueeze(-1)  # (batch, seq, 1)
            store[index].append(((output * weights).sum(1) / weights.sum(1)).detach().to("cpu", torch.float64))

        return save

    handles = [m.register_forward_hook(hook(k)) for k, m in modules.items()]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def layer_features(model: torch.nn.Module, cache: EncodingCache, samples: list[Sample], batch_size: int,
                   module: str = "mlp.down_proj") -> dict[int, torch.Tensor]:
    """Layer index -> (n_samples, hidden) mean-pooled outputs of `module` for the prompts of `samples`."""
    model.eval()
    device = next(model.parameters()).device
    mask: dict[str, torch.Tensor] = {}
    with capture_pooled(decoder_modules(model, module), mask) as store:
        for start in range(0, len(samples), batch_size):
            batch = collate([cache.prompt(s) for s in samples[start:start + batch_size]], cache.pad_id, "right")
            batch = {k: v.to(device) for k, v in batch.items()}
            mask["mask"] = batch["attention_mask"]
            model(**batch)
    return {k: torch.cat(v) for k, v in store.items()}


def _fine_tuned(base_path: str, task: TaskData, config: LayerSimilarityConfig, engine: Engine) -> torch.nn.Module:
    from citkit.methods.lora_ft import LoRAFineTuning

    model = load_model(base_path, config.model.dtype, config.model.trust_remote_code)
    set_seed(config.seed)  # same LoRA initialisation for every task: only the data differs
    method = LoRAFineTuning(adapter=config.adapter)
    model = engine.attach(method, model)
    model, _ = engine.fit_task(model, method, task, seed=config.seed)
    return model


def _from_checkpoint(base_path: str, path: str, config: LayerSimilarityConfig) -> torch.nn.Module:
    if (Path(path) / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(base_path, config.model.dtype, config.model.trust_remote_code)
        return PeftModel.from_pretrained(base, path)
    return load_model(path, config.model.dtype, config.model.trust_remote_code)


def pairwise_similarity(features: dict[str, dict[int, torch.Tensor]], rbf_bandwidth: float = 1.0,
                        pairs: Iterable[tuple[str, str]] | None = None) -> LayerSimilarity:
    """CKA of every pair of models (or the given pairs) at every layer they share."""
    names = list(features)
    layers = sorted(set.intersection(*(set(f) for f in features.values())))
    pairs = list(pairs) if pairs is not None else list(combinations(names, 2))
    linear = {(a, b): [linear_cka(features[a][k], features[b][k]) for k in layers] for a, b in pairs}
    rbf = {(a, b): [rbf_cka(features[a][k], features[b][k], rbf_bandwidth) for k in layers] for a, b in pairs}
    samples = len(next(iter(features[names[0]].values())))
    return LayerSimilarity(layers, names, linear, rbf, samples)


def plot_similarity(result: LayerSimilarity, path: str | Path, title: str = "") -> Path:
    """CKA by layer: one thin line per pair, the mean in bold, for the linear and RBF kernels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("linear", "rbf"), strict=True):
        table = result.linear if kind == "linear" else result.rbf
        for values in table.values():
            ax.plot(result.layers, values, color="grey", alpha=0.35, linewidth=1)
        ax.plot(result.layers, result.mean_by_layer(kind), color="C0", linewidth=2.5, marker="o", label="mean of pairs")
        ax.set_xlabel("decoder layer")
        ax.set_xticks(result.layers)
        ax.set_title(f"{kind} CKA")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("CKA between task models")
    axes[0].set_ylim(0, 1.02)
    axes[0].legend(loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return Path(path)


def write_outputs(result: LayerSimilarity, out_dir: str | Path, title: str = "") -> Path:
    """cka.csv, cka.md, cka.json and cka.png in `out_dir`."""
    out = Path(out_dir)
    rows = result.rows()
    csv = "layer,model_a,model_b,linear_cka,rbf_cka\n" + "".join(
        f"{r['layer']},{r['model_a']},{r['model_b']},{r['linear_cka']:.6f},{r['rbf_cka']:.6f}\n" for r in rows)
    write_text(out / "cka.csv", csv)
    write_text(out / "cka.md", result.to_markdown())
    write_json(out / "cka.json", {"layers": result.layers, "models": result.models, "samples": result.samples,
                                  "rows": rows, "mean_linear": result.mean_by_layer("linear"),
                                  "mean_rbf": result.mean_by_layer("rbf")})
    plot_similarity(result, out / "cka.png", title)
    return out


def analyze_layer_similarity(config: LayerSimilarityConfig) -> LayerSimilarity:
    """Fine-tune (or load) one model per task, probe them all on the same inputs, compare layer by layer."""
    engine = Engine(config.train)
    accelerator = engine.accelerator
    stream = load_stream(config.stream, Path(config.runs_dir) / "_data")
    unknown = set(config.checkpoints) - set(stream.task_names)
    if unknown:
        raise ConfigError(f"checkpoints name tasks not in the stream: {', '.join(sorted(unknown))}; "
                          f"tasks: {', '.join(stream.task_names)}")
    base_path = resolve_model_path(config.model, Path(config.runs_dir))
    cache = EncodingCache(SampleEncoder(load_processor(base_path, config.model.trust_remote_code)))
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)]
    probes = [s for t in tasks for s in t.test[: config.samples_per_task]]
    features: dict[str, dict[int, torch.Tensor]] = {}
    if config.include_base:
        base = load_model(base_path, config.model.dtype, config.model.trust_remote_code).to(accelerator.device)
        features[BASE] = layer_features(base, cache, probes, config.batch_size, config.module)
    for task in tasks:
        if task.name in config.checkpoints:
            model = _from_checkpoint(base_path, config.checkpoints[task.name], config).to(accelerator.device)
        else:
            logger.info(f"fine-tuning a LoRA on {task.name} alone")
            model = _fine_tuned(base_path, task, config, engine)
        features[task.name] = layer_features(model, cache, probes, config.batch_size, config.module)
    names = [t.name for t in tasks]
    pairs = list(combinations(names, 2)) + ([(BASE, n) for n in names] if config.include_base else [])
    result = pairwise_similarity(features, config.rbf_bandwidth, pairs)
    write_outputs(result, config.out_dir, f"{stream.name}: task-model similarity by layer")
    return result
