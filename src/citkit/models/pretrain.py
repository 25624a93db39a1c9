"""Build and pretrain the tiny base model on the toy world's base mixture, then check its quality.

Continual tuning should start from an instruction follower that reads every domain of the world (what
is in a cell, how tall a bar is, which digits are written, which hour a clock shows, ...) under
paraphrased instructions and can emit any token (it repeats arbitrary text), but has never seen the
continual tasks' instructions. The recipe: a supervised warm-up of the vision tower, then a full
fine-tune of the freshly initialised tiny LLaVA on the base mixture with the same engine every method
uses. The result must score at least `quality_gate` on the base mixture's own test sets, or the build
fails and nothing is saved. `world="format-shift"` builds the first tiny model's kind instead (word-level
tokenizer, the first world's base mixture, shape scenes only).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.logging import get_logger
from transformers import set_seed

from citkit.data.encoding import SampleEncoder
from citkit.data.llava_format import read_test, read_train
from citkit.data.samples import Task
from citkit.data.streams import read_stream_file
from citkit.data.toy.domains import DOMAINS
from citkit.data.toy.world import ToyWorldConfig, export
from citkit.engine.config import TrainConfig, per_process_batch
from citkit.engine.engine import Engine
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.errors import CitkitError
from citkit.eval.evaluator import EvalConfig, evaluate_task
from citkit.io import write_json
from citkit.methods.full_finetune import FullFineTune
from citkit.models.tiny import (
    TinyModelConfig,
    build_model,
    build_processor,
    build_tokenizer,
    parameter_count,
    toy_vocabulary,
)
from citkit.models.tiny_tokenizer import train_byte_tokenizer, world_corpus
from citkit.models.vision_warmup import warm_up_vision

logger = get_logger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Recipe of the tiny base model."""

    model: TinyModelConfig = field(default_factory=TinyModelConfig)
    world: str = field(default="domains", metadata={"help": (
        "'domains': byte-level tokenizer, the second world's base mixture over six domains; 'format-shift': "
        "word-level tokenizer and the first world's base mixture (shape scenes), as the first tiny model.")})
    vocab_size: int = field(default=768, metadata={"help": "Byte-level BPE vocabulary size ('domains' only)."})
    train_per_task: int = field(default=3000, metadata={"help": "Training samples per base task."})
    test_per_task: int = field(default=200, metadata={"help": "Test samples per base task (quality gate)."})
    vision_steps: int = field(default=600, metadata={"help": "Steps of the supervised vision warm-up (stage 1)."})
    steps: int = field(default=5000, metadata={"help": "Optimizer steps of the full fine-tune (stage 2)."})
    batch_size: int = field(default=32, metadata={"help": "Samples per step."})
    group_by_length: bool = field(default=False, metadata={"help": (
        "Batch like-length samples together (train.group_by_length): a third less time per step, but batches "
        "of fewer base tasks; at the packaged recipe's other settings such builds fell under the gate.")})
    lr: float = field(default=1.5e-3, metadata={"help": "Peak learning rate (cosine schedule)."})
    seed: int = field(default=0, metadata={"help": "Seed of the initialisation, the data and the order."})
    quality_gate: float = field(default=80.0, metadata={"help": (
        "Minimum mean score on the base tasks (the packaged model: 81.0, held down by repeating random "
        "Unicode text, 22.5; every reading task scores 56-100).")})

    def __post_init__(self) -> None:
        if self.world not in WORLDS:
            raise CitkitError(f"pretrain world {self.world!r} is unknown; use one of {', '.join(WORLDS)}")


# world -> (base mixture variant, vision warm-up domains)
WORLDS = {"domains": ("domains-base", DOMAINS), "format-shift": ("base", ("shapes",))}


class QualityGateError(CitkitError):
    """The pretrained tiny model does not see the world well enough."""


BUILD_THREADS = 1  # torch threads of the packaged build: the bits depend on it, so every rebuild uses it


def pretrain_tiny(config: PretrainConfig, output_dir: str | Path, progress: bool = True,
                  threads: int = BUILD_THREADS) -> dict[str, Any]:
    """Build, pretrain, check and save the tiny model to `output_dir` (model + processor + quality.json).

    The build runs on `threads` torch threads whatever the caller's setting (restored after); the
    default is `BUILD_THREADS`, as the packaged model was built: with another thread count the same seed
    gives other bits. Launched on P processes (`python -m torch.distributed.run --nproc_per_node P`, gloo
    on CPU), each process trains on 1/P of every step's samples (the same global batches as one process,
    other bits: gradients summed over processes round differently), the gate is evaluated on shards and
    the main process saves."""
    if threads < 1:
        raise CitkitError(f"pretrain: threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _pretrain(config, Path(output_dir), progress)
    finally:
        torch.set_num_threads(before)


def _pretrain(config: PretrainConfig, output_dir: Path, progress: bool) -> dict[str, Any]:
    torch.use_deterministic_algorithms(True)
    set_seed(config.seed)
    variant, domains = WORLDS[config.world]
    if config.world == "domains":
        tokenizer = train_byte_tokenizer(world_corpus(config.seed), config.vocab_size)
    else:
        tokenizer = build_tokenizer(toy_vocabulary())
    processor = build_processor(tokenizer)
    model = build_model(config.model, tokenizer)
    launch = PartialState(cpu=True)  # the launch's processes (one without a launcher), as the engine sees them
    processes = launch.num_processes
    vision_accuracy = warm_up_vision(model.model.vision_tower, config.model.vision_hidden, config.vision_steps,
                                     batch_size=64, lr=3e-3, seed=config.seed, domains=domains)
    with tempfile.TemporaryDirectory(prefix="citkit-base-") as tmp:
        stream_file = export(ToyWorldConfig(variant, config.train_per_task, config.test_per_task, config.seed), tmp)
        spec = read_stream_file(stream_file)
        cache = EncodingCache(SampleEncoder(processor), max_items=None)  # every base sample is revisited
        tasks = [TaskData(Task(e["name"], read_train(Path(tmp) / e["train"], Path(tmp) / e["image_root"], e["name"]),
                               read_test(Path(tmp) / e["test"], Path(tmp) / e["image_root"], e["name"]),
                               e["scorer"], int(e["max_new_tokens"])), i, cache)
                 for i, e in enumerate(spec["tasks"])]
        mixture = TaskData(Task("base-mixture", [s for t in tasks for s in t.train], [], "exact", 1), 0, cache)
        engine = Engine(TrainConfig(max_steps=config.steps, batch_size=per_process_batch(config.batch_size, processes),
                                    lr=config.lr, warmup_ratio=0.02, weight_decay=0.01,
                                    progress=progress and launch.is_main_process,
                                    group_by_length=config.group_by_length), cpu=True)
        method = FullFineTune(frozen=("vision_tower",))  # already warmed up in stage 1
        model = engine.attach(method, model)
        model, result = engine.fit_task(model, method, mixture, seed=config.seed)
        scores = {t.name: evaluate_task(model, t, EvalConfig(batch_size=128), accelerator=engine.accelerator).score
                  for t in tasks}
    mean = sum(scores.values()) / len(scores)
    quality = {"scores": scores, "vision_accuracy": {k: 100 * v for k, v in vision_accuracy.items()}, "mean": mean,
               "quality_gate": config.quality_gate, "steps": result.steps, "torch": torch.__version__,
               "threads": torch.get_num_threads(), "processes": processes, "train_seconds": result.seconds,
               "parameters": parameter_count(model), "recipe": asdict(config)}
    if mean < config.quality_gate:
        raise QualityGateError(f"tiny base model scored {mean:.1f} on its base tasks ({scores}), below the quality "
                               f"gate {config.quality_gate}; nothing was saved. Try more steps or another seed.")
    if launch.is_main_process:
        staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=output_dir.parent if output_dir.parent.exists() else None))
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        write_json(staging / "quality.json", quality)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    launch.wait_for_everyone()
    return quality
