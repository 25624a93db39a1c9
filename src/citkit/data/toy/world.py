"""The toy world as data: draw each task's samples from a seed and export them in LLaVA format.

The continual run never reads the toy world from memory: it exports it once (PNG images plus LLaVA
JSON files plus a stream file) and reads it back through the same reader as real data, so the toy
default exercises the real data path end to end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from citkit.data.toy.domain_tasks import DOMAIN_BASE_TASKS, DOMAIN_TASKS, MIXED_DOMAIN_TASKS, SHARED_DOMAIN_TASKS
from citkit.data.toy.scenes import BACKGROUNDS, render
from citkit.data.toy.tasks import BASE_TASKS, CONTINUAL_TASKS, SHARED_INSTRUCTION_TASKS, TaskSpec
from citkit.errors import ConfigError
from citkit.io import atomic_write, read_json, write_json, write_text

Variant = Literal["domains", "domains-shared", "domains-mixed", "domains-base", "distinct", "shared-instruction",
                  "base"]
VARIANTS: dict[str, tuple[TaskSpec, ...]] = {
    "domains": DOMAIN_TASKS, "domains-shared": SHARED_DOMAIN_TASKS, "domains-mixed": MIXED_DOMAIN_TASKS,
    "domains-base": DOMAIN_BASE_TASKS,
    "distinct": CONTINUAL_TASKS, "shared-instruction": SHARED_INSTRUCTION_TASKS, "base": BASE_TASKS,
}
# Built-in stream names and the variant each exports; the *-base ones are pretraining mixtures (export only).
TOY_STREAMS = {"toy": "domains", "toy-shared": "domains-shared", "toy-mixed": "domains-mixed",
               "toy-base": "domains-base", "toy-format": "distinct", "toy-format-shared": "shared-instruction",
               "toy-format-base": "base"}
SPLIT_SEEDS = {"train": 0, "test": 1}
# Bump when a task generator or the renderer changes, so cached exports are redrawn.
WORLD_VERSION = 5


TRAIN_HELP = "Training samples drawn per task."
TEST_HELP = "Test samples drawn per task."
SEED_HELP = "Seed of the world; the same seed gives the same files."


@dataclass(frozen=True)
class ToyDraw:
    """How much of a built-in toy stream to draw, and from which seed; the stream's name picks the variant."""

    train_per_task: int = field(default=1000, metadata={"help": TRAIN_HELP})
    test_per_task: int = field(default=200, metadata={"help": TEST_HELP})
    seed: int = field(default=0, metadata={"help": SEED_HELP})

    def world(self, variant: Variant) -> ToyWorldConfig:
        return ToyWorldConfig(variant, self.train_per_task, self.test_per_task, self.seed)


@dataclass(frozen=True)
class ToyWorldConfig:
    """Which toy world variant to draw, how much of it, and from which seed."""

    variant: Variant = field(default="domains", metadata={"help": (
        "'domains': six tasks from six visual domains (pattern, chart, clock, digit sum, colour "
        "count, map marker), each a new skill over what the base model reads; 'domains-shared': the same six "
        "behind one instruction, the task shows only in the image; 'domains-mixed': the same six as "
        "datasets of their domain, a third of each task's questions ones the base already answers; "
        "'domains-base': the tiny model's pretraining mixture. The first world, a format-shift stress test on "
        "one image distribution: "
        "'distinct' (six answer formats), 'shared-instruction' (the task shows only in a background tint), "
        "'base' (the first tiny model's mixture).")})
    train_per_task: int = field(default=1000, metadata={"help": TRAIN_HELP})
    test_per_task: int = field(default=200, metadata={"help": TEST_HELP})
    seed: int = field(default=0, metadata={"help": SEED_HELP})

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"toy world variant {self.variant!r} is unknown; use one of "
                              f"{', '.join(map(repr, VARIANTS))}")
        if self.train_per_task < 1 or self.test_per_task < 1:
            raise ConfigError(f"toy world sizes must be >= 1, got train_per_task={self.train_per_task}, "
                              f"test_per_task={self.test_per_task}")


def task_specs(variant: Variant) -> tuple[TaskSpec, ...]:
    return VARIANTS[variant]


def background_for(variant: Variant, task_index: int, rng: np.random.Generator) -> int:
    """Background tint: task-specific in the shared-instruction stream, random in the base mixture."""
    if variant == "shared-instruction":
        return 1 + task_index % (len(BACKGROUNDS) - 1)
    if variant == "base":
        return int(rng.integers(len(BACKGROUNDS)))
    return 0


def draw(config: ToyWorldConfig, task_index: int, split: str, count: int) -> list[tuple[object, str, str]]:
    """Draw `count` (scene or image, question, answer) triples of one task and split, deterministically."""
    spec = task_specs(config.variant)[task_index]
    rng = np.random.default_rng([config.seed, task_index, SPLIT_SEEDS[split]])
    return [spec.generate(rng, background_for(config.variant, task_index, rng)) for _ in range(count)]


def export(config: ToyWorldConfig, directory: str | Path) -> Path:
    """Write the toy stream as LLaVA-format files under `directory`; return the stream file's path.

    Layout: `<task>/train.json`, `<task>/test.json`, `<task>/images/*.png` and `stream.yaml`. An
    export that already finished (its `stream.yaml` and `world.json` match the config) is reused.
    """
    directory = Path(directory)
    stream_file = directory / "stream.yaml"
    marker = directory / "world.json"
    wanted = {"version": WORLD_VERSION, "variant": config.variant, "train_per_task": config.train_per_task,
              "test_per_task": config.test_per_task, "seed": config.seed}
    if stream_file.exists() and marker.exists() and read_json(marker) == wanted:
        return stream_file
    lines = [f"name: toy-{config.variant}", f"description: citkit toy world, variant {config.variant}, "
             f"seed {config.seed}", "tasks:"]
    for index, spec in enumerate(task_specs(config.variant)):
        task_dir = directory / spec.name
        for split, count in (("train", config.train_per_task), ("test", config.test_per_task)):
            records = []
            for i, (scene, question, answer) in enumerate(draw(config, index, split, count)):
                rel = f"images/{split}_{i:05d}.png"
                image = Image.fromarray(scene if isinstance(scene, np.ndarray) else render(scene))
                atomic_write(task_dir / rel, lambda p, im=image: im.save(p, format="PNG"))
                sample_id = f"{spec.name}-{split}-{i:05d}"
                if split == "train":
                    records.append({"id": sample_id, "image": rel, "conversations": [
                        {"from": "human", "value": f"<image>\n{question}"},
                        {"from": "gpt", "value": answer}]})
                else:
                    records.append({"question_id": sample_id, "image": rel, "text": question,
                                    "answer": answer})
            write_json(task_dir / f"{split}.json", records)
        lines += [f"  - name: {spec.name}", f"    train: {spec.name}/train.json",
                  f"    test: {spec.name}/test.json", f"    image_root: {spec.name}",
                  f"    scorer: {spec.scorer}", f"    max_new_tokens: {spec.max_new_tokens}",
                  f"    description: {json.dumps(spec.description)}"]  # JSON strings are YAML
    write_text(stream_file, "\n".join(lines) + "\n")
    write_json(marker, wanted)
    return stream_file
