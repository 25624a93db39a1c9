"""The instruction tasks of the toy world: what is asked about a scene and what the answer is.

Each generator draws a scene and returns `(scene, question, answer)`. The six continual tasks ask
for answers of different kinds (a colour, a shape, a position, a count, a short caption, a sum), so
that a model tuned on one task visibly loses the others' answer format. The base mixture teaches
the tiny model to see: what is in each cell, what every cell holds, how many objects there are,
and to repeat any answer word, so that every word a task answers with has been a training
target before continual tuning starts (LoRA on attention cannot lift a word the base never emits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from citkit.data.toy.scenes import COLOURS, POSITIONS, SHAPES, Scene, random_scene

Question = tuple[Scene, str, str]
Generator = Callable[[np.random.Generator, int], Question]

MAX_ADDEND = 5
SHARED_INSTRUCTION = "answer the question for this kind of image ."


def _any_object(rng: np.random.Generator, background: int) -> tuple[Scene, int]:
    scene = random_scene(rng, int(rng.integers(1, 5)), background)
    return scene, int(rng.integers(len(scene.objects)))


def colour_task(rng: np.random.Generator, background: int = 0) -> Question:
    scene, i = _any_object(rng, background)
    return scene, f"what colour is the shape in the {scene.objects[i].position} cell ?", scene.objects[i].colour


def shape_task(rng: np.random.Generator, background: int = 0) -> Question:
    scene, i = _any_object(rng, background)
    return scene, f"which shape is in the {scene.objects[i].position} cell ?", scene.objects[i].shape


def position_task(rng: np.random.Generator, background: int = 0) -> Question:
    while True:
        scene = random_scene(rng, int(rng.integers(1, 4)), background)
        colours = [o.colour for o in scene.objects]
        unique = [i for i, c in enumerate(colours) if colours.count(c) == 1]
        if unique:
            obj = scene.objects[int(rng.choice(unique))]
            return scene, f"where is the {obj.colour} shape ?", obj.position


def count_task(rng: np.random.Generator, background: int = 0) -> Question:
    colour = str(rng.choice(list(COLOURS)))
    scene = random_scene(rng, int(rng.integers(1, 6)), background)
    count = sum(o.colour == colour for o in scene.objects)
    return scene, f"how many {colour} objects are in the image ?", str(count)


def caption(scene: Scene) -> str:
    """'a red circle , a blue square and a green cross' in reading order."""
    labels = [f"a {o.label}" for o in scene.objects]
    if len(labels) == 1:
        return labels[0]
    return " , ".join(labels[:-1]) + " and " + labels[-1]


def caption_task(rng: np.random.Generator, background: int = 0) -> Question:
    scene = random_scene(rng, int(rng.integers(1, 4)), background)
    return scene, "describe the image in a short sentence .", caption(scene)


def arithmetic_task(rng: np.random.Generator, background: int = 0) -> Question:
    scene = random_scene(rng, int(rng.integers(1, 6)), background)
    addend = int(rng.integers(1, MAX_ADDEND + 1))
    return scene, f"what is the number of objects plus {addend} ?", str(len(scene.objects) + addend)


# --- the shared-instruction variant: one wording for every task, the task shows in the image ---

def _single_object(rng: np.random.Generator, background: int) -> Scene:
    return random_scene(rng, 1, background)


def shared_colour(rng: np.random.Generator, background: int) -> Question:
    scene = _single_object(rng, background)
    return scene, SHARED_INSTRUCTION, scene.objects[0].colour


def shared_shape(rng: np.random.Generator, background: int) -> Question:
    scene = _single_object(rng, background)
    return scene, SHARED_INSTRUCTION, scene.objects[0].shape


def shared_position(rng: np.random.Generator, background: int) -> Question:
    scene = _single_object(rng, background)
    return scene, SHARED_INSTRUCTION, scene.objects[0].position


def shared_count(rng: np.random.Generator, background: int) -> Question:
    scene = random_scene(rng, int(rng.integers(1, 7)), background)
    return scene, SHARED_INSTRUCTION, str(len(scene.objects))


def shared_caption(rng: np.random.Generator, background: int) -> Question:
    scene = random_scene(rng, int(rng.integers(1, 4)), background)
    return scene, SHARED_INSTRUCTION, caption(scene)


def shared_double(rng: np.random.Generator, background: int) -> Question:
    scene = random_scene(rng, int(rng.integers(1, 6)), background)
    return scene, SHARED_INSTRUCTION, str(2 * len(scene.objects))


# --- the base mixture (pretraining of the tiny model only) ---

def cell_task(rng: np.random.Generator, background: int) -> Question:
    scene = random_scene(rng, int(rng.integers(0, 6)), background)
    cell = int(rng.integers(9))
    obj = scene.at(cell)
    return scene, f"what is in the {POSITIONS[cell]} cell ?", f"a {obj.label}" if obj else "nothing"


def list_cells_task(rng: np.random.Generator, background: int) -> Question:
    scene = random_scene(rng, int(rng.integers(0, 6)), background)
    cells = [scene.at(c) for c in range(9)]
    return scene, "list the cells .", " . ".join(o.label if o else "nothing" for o in cells)


def total_count_task(rng: np.random.Generator, background: int) -> Question:
    scene = random_scene(rng, int(rng.integers(0, 7)), background)
    return scene, "how many objects are there ?", str(len(scene.objects))


def answer_words() -> list[str]:
    """Every word a continual task can answer with."""
    numbers = [str(n) for n in range(0, 6 + 2 * MAX_ADDEND + 1)]
    positions = sorted({w for p in POSITIONS for w in p.split()})
    return list(COLOURS) + list(SHAPES) + positions + numbers + ["a", ",", "and", "nothing", "."]


def repeat_task(rng: np.random.Generator, background: int) -> Question:
    words = answer_words()
    phrase = " ".join(str(w) for w in rng.choice(words, size=int(rng.integers(1, 4))))
    scene = random_scene(rng, int(rng.integers(0, 4)), background)
    return scene, f"repeat after me : {phrase}", phrase


@dataclass(frozen=True)
class TaskSpec:
    """A task of the toy world: its generator, how it is scored and how long answers are."""

    name: str
    generate: Generator
    scorer: str = "exact"
    max_new_tokens: int = 8
    description: str = ""


CONTINUAL_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("colour", colour_task, description="colour of the object in a named cell"),
    TaskSpec("shape", shape_task, description="shape of the object in a named cell"),
    TaskSpec("position", position_task, description="grid position of the object of a named colour"),
    TaskSpec("count", count_task, description="number of objects of a named colour"),
    TaskSpec("caption", caption_task, max_new_tokens=16, description="short sentence listing the objects"),
    TaskSpec("arithmetic", arithmetic_task, description="number of objects plus a given number"),
)
SHARED_INSTRUCTION_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("colour", shared_colour, description="colour of the single object"),
    TaskSpec("shape", shared_shape, description="shape of the single object"),
    TaskSpec("position", shared_position, description="position of the single object"),
    TaskSpec("count", shared_count, description="number of objects"),
    TaskSpec("caption", shared_caption, max_new_tokens=16, description="short sentence listing the objects"),
    TaskSpec("double", shared_double, description="twice the number of objects"),
)
BASE_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("cell", cell_task, description="what is in a named cell"),
    TaskSpec("list_cells", list_cells_task, max_new_tokens=40, description="every cell in reading order"),
    TaskSpec("total_count", total_count_task, description="number of objects"),
    TaskSpec("repeat", repeat_task, max_new_tokens=8, description="repeat a phrase of answer words"),
)
