"""Which decoder blocks can share one fused adapter? Fuse or drop one block at a time under oracle routing.

HiDe-LLaVA's premise (Guo et al., ACL 2025, Sec. 3) is that the lower blocks are task-general and only
the top one task-specific; the paper argues it with CKA between task models (`citkit analyze cka`).
This test asks the question of the adapters themselves. It takes a finished `hide-llava` run whose every
block kept every task's expert (`layout=expand-all`, or `fusion=paper`), routes every block by an
oracle (each test sample gets its own task's expert), and scores every trained task:

- *all blocks routed*: the upper bound the layout could reach with a perfect router;
- *fuse block b*: block b adds the fusion of all experts (code or paper form) instead of the sample's
  own expert, every other block stays routed. A small loss means block b is task-general;
- *drop block b*: block b adds no adapter at all; how much the block's adaptation matters;
- *top block only* (every block but the top one dropped) and *all blocks fused* (merge-all).

The mean over the trained tasks is the final row's mean accuracy (MFN) of that configuration. Beside
it, each configuration's answer loss (`citkit.eval.answer_loss`: teacher-forced cross-entropy per answer
token on the same test samples): a block can change how sure the model is of its answers without
changing which answer greedy decoding picks, and accuracy alone cannot see that.

Without generating anything, it also measures the size of each task's update block by block (the
Frobenius norm of s B_c A_c over the block's adapted layers): where training put the change, to set
beside what dropping the block costs. (How alike two tasks' updates are is not measured this way: with
independently drawn A's, two experts' updates are orthogonal by construction; `citkit analyze cka`
compares what the task models compute instead.)
Outputs: `blocks.md`, `blocks.csv`, `blocks.json` in the output folder (default `<run>/blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from accelerate import PartialState
from accelerate.logging import get_logger

from citkit.data.encoding import SampleEncoder
from citkit.data.streams import load_stream
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.errors import ConfigError
from citkit.eval.answer_loss import answer_loss
from citkit.eval.evaluator import EvalConfig, evaluate_task
from citkit.eval.matrix import AccuracyMatrix
from citkit.io import write_json, write_text
from citkit.methods.hide_llava import HiDeLinear, HiDeLLaVA
from citkit.models.families import decoder_layers
from citkit.models.loading import load_model, load_processor
from citkit.models.registry import resolve_model_path
from citkit.rundir import RunDirectory, saved_settings

logger = get_logger(__name__)
Mode = Literal["routed", "fused", "dropped"]


@dataclass(frozen=True)
class BlockTestConfig:
    """Which run to test and how much of its test sets to score."""

    run_dir: str = field(default="", metadata={"help": (
        "A hide-llava run directory whose blocks kept every task's expert: layout=expand-all, or fusion=paper "
        "(code fusion folds the lower blocks' experts into one sum, which cannot be routed again).")})
    samples_per_task: int | None = field(default=50, metadata={"help": (
        "Test samples scored per task and configuration (the first N of each test set); None: all.")})
    fusion: Literal["code", "paper"] = field(default="code", metadata={"help": (
        "How a fused block combines the experts: 'code' = s (sum_c B_c)(sum_c A_c) as the authors' code, "
        "'paper' = s sum_c B_c A_c as the paper writes it.")})
    batch_size: int = field(default=64, metadata={"help": "Prompts generated together."})
    out_dir: str = field(default="", metadata={"help": "Where blocks.md/.csv/.json go (default: <run_dir>/blocks)."})
    updates_only: bool = field(default=False, metadata={"help": (
        "Measure the experts' updates per block only (seconds, nothing generated): no configuration is scored.")})
    modules: tuple[str, ...] = field(default=(), metadata={"help": (
        "Fuse or drop only these adapted layers of a block (names inside the block, e.g. q_proj, k_proj, v_proj, "
        "o_proj for attention); the block's other layers stay routed. Empty: every adapted layer.")})

    def __post_init__(self) -> None:
        if not self.run_dir:
            raise ConfigError("analyze blocks: name a hide-llava run directory")
        if self.samples_per_task is not None and self.samples_per_task < 1:
            raise ConfigError(f"analyze blocks: samples_per_task must be >= 1, got {self.samples_per_task}")
        if self.fusion not in ("code", "paper"):
            raise ConfigError(f"analyze blocks: fusion {self.fusion!r} is unknown; use 'code' or 'paper'")
        if self.batch_size < 1:
            raise ConfigError(f"analyze blocks: batch_size must be >= 1, got {self.batch_size}")
        if len(set(self.modules)) != len(self.modules) or any(not m for m in self.modules):
            raise ConfigError(f"analyze blocks: modules must be distinct non-empty layer names, got {self.modules}")


@dataclass
class BlockRow:
    """One configuration: what each block does, and the scores it reaches."""

    name: str
    modes: dict[int, str]
    scores: dict[str, float]
    losses: dict[str, float]  # answer loss per task (nats per answer token)

    @property
    def mean(self) -> float:
        return sum(self.scores.values()) / len(self.scores)

    @property
    def mean_loss(self) -> float:
        return sum(self.losses.values()) / len(self.losses)


@dataclass
class BlockUpdates:
    """The size of each expert's update s B_c A_c, block by block."""

    norms: list[list[float]]    # [block][task]: Frobenius norm of the task's update over the block's layers


def block_updates(blocks: list[list[HiDeLinear]], experts: int) -> BlockUpdates:
    """Each block's update per expert: the norm of its layers' s B_c A_c taken together."""
    def size(layers: list[HiDeLinear], c: int) -> float:
        return float(torch.stack([(layer.scaling * layer.experts_B[c].detach().float()
                                   @ layer.experts_A[c].detach().float()).norm() for layer in layers]).norm())

    return BlockUpdates([[size(layers, c) for c in range(experts)] for layers in blocks])


@dataclass
class BlockTest:
    """Every configuration's scores; the first row routes every block (the reference)."""

    tasks: list[str]
    blocks: int
    samples_per_task: int
    rows: list[BlockRow]
    updates: BlockUpdates | None = None
    modules: tuple[str, ...] = ()  # the layers a row fuses or drops (empty: all of the block's)

    def row(self, name: str) -> BlockRow:
        return next(r for r in self.rows if r.name == name)

    def to_markdown(self) -> str:
        parts = []
        if self.rows:
            reference, loss_reference = self.rows[0].mean, self.rows[0].mean_loss
            head = ["configuration", *self.tasks, "mean (MFN)", "vs all routed", "answer loss", "vs all routed"]
            lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
            for r in self.rows:
                cells = [f"{r.scores[t]:.1f}" for t in self.tasks]
                lines.append(f"| {r.name} | " + " | ".join(cells) + f" | {r.mean:.1f} | {r.mean - reference:+.1f} | "
                             f"{r.mean_loss:.3f} | {r.mean_loss - loss_reference:+.3f} |")
            parts.append(f"Per-block test under oracle routing ({self.blocks} decoder blocks, {self.samples_per_task} "
                         "test samples per task): every block adds the sample's own task's expert unless the row says "
                         "it adds the fusion of all experts (fuse) or nothing (drop)"
                         + (f", in its {', '.join(self.modules)} layers only (the others stay routed)" if self.modules
                            else "") + ". Scores per task; answer loss: "
                         "mean over tasks of the cross-entropy per reference answer token (nats).\n\n"
                         + "\n".join(lines) + "\n")
        if self.updates is not None:
            head = ["block", *self.tasks, "mean"]
            lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
            for b, norms in enumerate(self.updates.norms):
                cells = " | ".join(f"{n:.3f}" for n in norms)
                lines.append(f"| {b} | {cells} | {sum(norms) / len(norms):.3f} |")
            parts.append(f"Size of each task's update s B_c A_c per decoder block ({self.blocks} blocks; Frobenius "
                         "norm over the block's adapted layers):\n\n" + "\n".join(lines) + "\n")
        return "\n".join(parts)


def configurations(blocks: int) -> list[tuple[str, dict[int, str]]]:
    """(name, block -> mode) for every row of the test; blocks not named are routed."""
    rows: list[tuple[str, dict[int, str]]] = [("all blocks routed", {})]
    rows += [(f"fuse block {b}", {b: "fused"}) for b in range(blocks)]
    rows += [(f"drop block {b}", {b: "dropped"}) for b in range(blocks)]
    rows += [("top block only", {b: "dropped" for b in range(blocks - 1)}),
             ("all blocks fused", {b: "fused" for b in range(blocks)})]
    return rows


def set_mode(layers: list[HiDeLinear], mode: str, experts: int, fusion: str) -> None:
    """Make `layers` route their experts (per sample), add their fusion, or add nothing."""
    for layer in layers:
        layer.expanded = mode == "routed"
        if mode == "dropped":
            layer.combined_A = layer.combined_B = None
        else:
            layer.materialise(experts, fusion)


def restore(run_dir: Path, device: torch.device,
            oracle: bool = True) -> tuple[HiDeLLaVA, torch.nn.Module, list[TaskData], int]:
    """The run's model after its last finished task, with a HiDe-LLaVA (oracle-routing unless `oracle` is
    False) over its experts."""
    from citkit.run_config import build_run_config

    if not (run_dir / "config.json").is_file() or not (run_dir / "matrix.json").is_file():
        raise ConfigError(f"analyze blocks: {run_dir} is not a run directory with a finished task (no config.json "
                          "or matrix.json)")
    config = build_run_config(saved_settings(run_dir))
    if config.method != "hide-llava":
        raise ConfigError(f"analyze blocks: {run_dir} is a {config.method} run; the test needs a hide-llava run "
                          "with method.layout=expand-all")
    done = AccuracyMatrix.load(run_dir).finished_rows - 1
    if done < 1:
        raise ConfigError(f"analyze blocks: {run_dir} has no finished task yet")
    model_path = resolve_model_path(config.model, Path(config.runs_dir))
    stream = load_stream(replace(config.stream, allow_unknown_tokens=True), Path(config.runs_dir) / "_data")
    cache = EncodingCache(SampleEncoder(load_processor(model_path, config.model.trust_remote_code)))
    tasks = [TaskData(task, i, cache) for i, task in enumerate(stream.tasks)][:done]
    model = load_model(model_path, config.model.dtype, config.model.trust_remote_code).requires_grad_(False)
    method = HiDeLLaVA(replace(config.method_config(), oracle_routing=oracle), config.adapter)
    method.remember_base(model)
    model = method.resume(method.attach(model), [t.name for t in tasks])
    trainable, tensors, extra = RunDirectory(run_dir).load_checkpoint(done - 1)
    method.load_trainable_state(model, trainable, str(RunDirectory(run_dir).checkpoint_dir(done - 1)))
    method.load_state_dict(tensors)
    method.load_extra_state(extra)
    folded = [layer for layer in method._layers if layer.num_experts != done]
    if folded:
        raise ConfigError(f"analyze blocks: {len(folded)} layers of {run_dir} hold {folded[0].num_experts} expert(s) "
                          f"for {done} tasks (code fusion folds the experts of the non-expanded blocks into one sum); "
                          "run hide-llava with method.layout=expand-all (or method.fusion=paper)")
    method._materialise()
    return method, model.to(device), tasks, done


def varied_layers(blocks: list[torch.nn.Module], modules: tuple[str, ...]) -> list[list[HiDeLinear]]:
    """Per block, the expert layers a configuration fuses or drops: every one, or those whose name inside the
    block ends with one of `modules` (each name must match in every block)."""
    named = [[(n, m) for n, m in block.named_modules() if isinstance(m, HiDeLinear)] for block in blocks]
    if not modules:
        return [[m for _, m in block] for block in named]
    varied = []
    for b, block in enumerate(named):
        chosen = [m for n, m in block if n.split(".")[-1] in modules]
        found = {n.split(".")[-1] for n, _ in block}
        missing = [m for m in modules if m not in found]
        if missing:
            raise ConfigError(f"analyze blocks: block {b} has no expert layer named {', '.join(missing)} (it has "
                              f"{', '.join(sorted(found))})")
        varied.append(chosen)
    return varied


@torch.no_grad()
def analyze_blocks(config: BlockTestConfig) -> BlockTest:
    """Score the run's trained tasks under every configuration (unless `updates_only`) and measure the experts'
    updates; write blocks.md/.csv/.json."""
    device = PartialState().device  # also what accelerate's logger needs
    run_dir = Path(config.run_dir)
    method, model, tasks, experts = restore(run_dir, device)
    for task in tasks:
        task.task = replace(task.task, test=task.test[: config.samples_per_task])
    blocks = decoder_layers(model)
    layers = [[m for m in block.modules() if isinstance(m, HiDeLinear)] for block in blocks]
    varied = varied_layers(blocks, config.modules)
    eval_config = EvalConfig(batch_size=config.batch_size)
    rows = []
    for name, modes in [] if config.updates_only else configurations(len(layers)):
        for block, block_layers in enumerate(layers):
            set_mode([m for m in block_layers if m not in varied[block]], "routed", experts, config.fusion)
            set_mode(varied[block], modes.get(block, "routed"), experts, config.fusion)
        scores = {t.name: evaluate_task(model, t, eval_config, method).score for t in tasks}
        losses = {t.name: answer_loss(model, t, config.batch_size, method) for t in tasks}
        rows.append(BlockRow(name, {b: modes.get(b, "routed") for b in range(len(layers))}, scores, losses))
        logger.info(f"{name}: mean {rows[-1].mean:.1f}, answer loss {rows[-1].mean_loss:.3f}")
    result = BlockTest([t.name for t in tasks], len(layers), len(tasks[0].test), rows, block_updates(layers, experts),
                       config.modules)
    out = Path(config.out_dir) if config.out_dir else run_dir / "blocks"
    write_text(out / "blocks.md", result.to_markdown())
    write_text(out / "blocks.csv", "configuration," + ",".join(result.tasks) + ",mean,answer_loss\n" + "".join(
        f"{r.name}," + ",".join(f"{r.scores[t]:.2f}" for t in result.tasks) + f",{r.mean:.2f},{r.mean_loss:.4f}\n"
        for r in rows))
    write_json(out / "blocks.json", {"run": str(run_dir), "fusion": config.fusion, "blocks": result.blocks,
                                     "modules": list(config.modules) or "all",
                                     "samples_per_task": result.samples_per_task, "tasks": result.tasks,
                                     "rows": [{"name": r.name, "modes": {str(b): m for b, m in r.modes.items()},
                                               "scores": r.scores, "mean": r.mean, "answer_losses": r.losses,
                                               "mean_answer_loss": r.mean_loss} for r in rows],
                                     "update_norms": result.updates.norms})
    return result
