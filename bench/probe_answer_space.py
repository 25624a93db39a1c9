"""A probe world: six continual tasks that each ask for a new answer space over a reading the base has.

The base model already reads each of these (a pattern's name, a clock's hour, the digits written, a
bar's height, the number of objects, the marker's cell); each task asks for it in words the base
has never answered with (a code word per pattern, the hour in words, the digits spelled, low /
medium / high, the count in words, a grid code). It asks one question of the per-block test: do
new answer spaces over shared readings make the top block the task-specific one, as HiDe-LLaVA's
premise says of real MCIT? (Measured: no; README, "Results on the default world".)

    python bench/probe_answer_space.py runs/_data/probe-answer-space    # writes the stream, prints its file
    citkit run --stream runs/_data/probe-answer-space/stream.yaml --method lora-ft --name probe-lora-ft-seed0
    citkit run --stream runs/_data/probe-answer-space/stream.yaml --method hide-llava \
        --set method.layout=expand-all --set method.oracle_routing=true --name probe-expand-all-seed0
    citkit analyze blocks runs/probe-expand-all-seed0 --samples-per-task 0

Not a built-in stream: it registers its tasks as a toy variant for this process only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from citkit.data.toy import world
from citkit.data.toy.domains import draw_bars, draw_clock, draw_digits, draw_map, draw_shapes, draw_texture
from citkit.data.toy.scenes import POSITIONS
from citkit.data.toy.tasks import TaskSpec

Drawn = tuple[np.ndarray, str, str]
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")
CODES = {"stripes": "zebra", "dots": "pox", "checks": "chess", "waves": "sea"}


def pattern_code(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_texture(rng)
    return picture.image, "give the code word of the pattern .", CODES[picture.facts["pattern"]]


def clock_words(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_clock(rng)
    return picture.image, "say the hour in words .", WORDS[picture.facts["hour"]]


def digits_spelled(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_digits(rng)
    return picture.image, "spell the number digit by digit .", " ".join(WORDS[int(d)] for d in picture.facts["digits"])


def bar_level(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_bars(rng)
    colour, height = picture.facts["bars"][int(rng.integers(3))]
    level = "low" if height <= 2 else "medium" if height == 3 else "high"
    return picture.image, f"is the {colour} bar low , medium or high ?", level


def count_words(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_shapes(rng)
    return picture.image, "how many objects are there ? answer in words .", WORDS[len(picture.facts["objects"])]


def marker_code(rng: np.random.Generator, background: int = 0) -> Drawn:
    cell = POSITIONS.index((picture := draw_map(rng)).facts["marker_position"])
    return picture.image, "give the grid code of the marker .", f"{'abc'[cell // 3]}{cell % 3 + 1}"


TASKS = tuple(TaskSpec(name, generate, description=description, max_new_tokens=24) for name, generate, description in (
    ("pattern-code", pattern_code, "texture: a code word per pattern"),
    ("clock-words", clock_words, "clock: the hour in words"),
    ("digits-spelled", digits_spelled, "digits: each digit spelled"),
    ("bar-level", bar_level, "bar chart: a named bar low, medium or high"),
    ("count-words", count_words, "shapes: the number of objects in words"),
    ("marker-code", marker_code, "map: the marker's grid code"),
))


def main() -> None:
    world.VARIANTS["probe-answer-space"] = TASKS
    config = world.ToyWorldConfig("probe-answer-space", train_per_task=1000, test_per_task=200, seed=0)  # type: ignore[arg-type]
    print(world.export(config, Path(sys.argv[1] if len(sys.argv) > 1 else "runs/_data/probe-answer-space")))


if __name__ == "__main__":
    main()
