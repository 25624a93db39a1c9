"""Instruction tasks of the second-generation toy world (the default): a base mixture and six continual tasks.

The base mixture makes the tiny model an instruction follower before continual tuning starts, as
LLaVA-1.5 is: over all six visual domains it reads what is there (what is in a cell, how tall a bar
is, which digits are written, which hour a clock shows, what a pattern looks like, where the map's
marker is, what kind of image it is) under several paraphrased instructions, and it repeats any text,
so that every token of the open vocabulary has been an output.

The six continual tasks, one per domain like UCIT's six datasets, ask for a skill the base does not
have, composed from what it reads (the argmax of a chart, a clock's hour plus three, the sum of two
digits, a count of one colour, the terrain under the marker, a pattern's name alone). Zero-shot is low
but not zero where a task is near a base skill (the base counts the objects of one shape, and names a
pattern inside a description). `SHARED_DOMAIN_TASKS` asks all six with one sentence, so
only the image tells the task. `MIXED_DOMAIN_TASKS` are the six as datasets of their domain: a third
of each task's questions are ones the base already answers about that domain (a clock dataset also
asks which hour is shown), the rest the new skill, as in real instruction datasets.
"""

from __future__ import annotations

import numpy as np

from citkit.data.toy.domains import (
    BAR_COLOURS,
    DOMAINS,
    PATTERNS,
    TERRAINS,
    Picture,
    draw,
    draw_bars,
    draw_clock,
    draw_digits,
    draw_map,
    draw_shapes,
    draw_texture,
)
from citkit.data.toy.scenes import COLOURS, POSITIONS, SHAPES
from citkit.data.toy.tasks import SHARED_INSTRUCTION, TaskSpec

Drawn = tuple[np.ndarray, str, str]
KIND_NAMES = {"shapes": "some shapes", "bars": "a bar chart", "digits": "handwritten digits", "clock": "a clock",
              "texture": "a pattern", "map": "a map"}
CLOCK_SHIFT = 3
SUM_DIGITS = (1, 2, 3, 4, 5)  # digits of the sum task: 25 pairs, sums 2-10


def _ask(rng: np.random.Generator, wordings: tuple[str, ...], **slots: str) -> str:
    return str(rng.choice(wordings)).format(**slots)


# --- the base mixture: reading each domain, under paraphrased instructions ---

def read_cell(rng: np.random.Generator, background: int = 0) -> Drawn:
    """Shapes or map: what is in one named cell; for shapes also its shape or colour alone, in one word."""
    cell = int(rng.integers(9))
    if rng.random() < 0.5:
        picture = draw_shapes(rng)
        obj = next((o for o in picture.facts["objects"] if o[2] == POSITIONS[cell]), None)
        part = rng.random()
        if part < 0.5:
            question = _ask(rng, ("what is in the {pos} cell ?", "what do you see in the {pos} cell ?",
                                  "name what is in the {pos} cell ."), pos=POSITIONS[cell])
            return picture.image, question, f"a {obj[0]} {obj[1]}" if obj else "nothing"
        if part < 0.75:
            question = _ask(rng, ("what shape is in the {pos} cell ? answer with one word .",
                                  "which shape do you see in the {pos} cell ? answer with one word ."),
                            pos=POSITIONS[cell])
            return picture.image, question, obj[1] if obj else "nothing"
        question = _ask(rng, ("what colour is the shape in the {pos} cell ? answer with one word .",
                              "which colour does the {pos} cell hold ? answer with one word ."), pos=POSITIONS[cell])
        return picture.image, question, obj[0] if obj else "nothing"
    picture = draw_map(rng)
    question = _ask(rng, ("what is in the {pos} cell ?", "what do you see in the {pos} cell ?",
                          "what terrain is in the {pos} cell ?", "name the terrain of the {pos} cell ."),
                    pos=POSITIONS[cell])
    return picture.image, question, picture.facts["tiles"][cell]


PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "cross": "crosses"}


def count_objects(rng: np.random.Generator, background: int = 0) -> Drawn:
    """All objects, or those of one shape (counting one colour is left to the continual task)."""
    picture = draw_shapes(rng)
    if rng.random() < 0.5:
        question = _ask(rng, ("how many objects are there ?", "count the objects .", "how many shapes do you see ?"))
        return picture.image, question, str(len(picture.facts["objects"]))
    shape = str(rng.choice(SHAPES))
    question = _ask(rng, ("how many {shapes} are there ?", "count the {shapes} ."), shapes=PLURALS[shape])
    return picture.image, question, str(sum(o[1] == shape for o in picture.facts["objects"]))


def bar_height(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_bars(rng)
    colour, height = picture.facts["bars"][int(rng.integers(3))]
    question = _ask(rng, ("how tall is the {colour} bar ?", "what is the height of the {colour} bar ?",
                          "read the value of the {colour} bar ."), colour=colour)
    return picture.image, question, str(height)


BAR_PLACES = ("left", "middle", "right")


def list_bars(rng: np.random.Generator, background: int = 0) -> Drawn:
    """The bars' colours, all of them or one named by its place."""
    picture = draw_bars(rng)
    colours = [c for c, _ in picture.facts["bars"]]
    if rng.random() < 0.5:
        place = int(rng.integers(3))
        question = _ask(rng, ("what colour is the {place} bar ?", "which colour has the {place} bar ?"),
                        place=BAR_PLACES[place])
        return picture.image, question, colours[place]
    question = _ask(rng, ("list the bars from left to right .", "which bars does the chart show ?"))
    return picture.image, question, f"{colours[0]} , {colours[1]} and {colours[2]}"


def read_digits(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_digits(rng)
    question = _ask(rng, ("what is written ?", "read the digits .", "which number is written on the paper ?"))
    return picture.image, question, "".join(picture.facts["digits"])


def read_clock(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_clock(rng)
    question = _ask(rng, ("what hour does the clock show ?", "read the clock .",
                          "which hour is the hand pointing at ?"))
    return picture.image, question, str(picture.facts["hour"])


def describe_texture(rng: np.random.Generator, background: int = 0) -> Drawn:
    """'red stripes on blue', or one of its colours in one word: naming the pattern alone is the continual task."""
    picture = draw_texture(rng)
    fg, bg = picture.facts["colours"]
    part = rng.random()
    if part < 0.6:
        question = _ask(rng, ("describe the pattern .", "what does the pattern look like ?"))
        return picture.image, question, f"{fg} {picture.facts['pattern']} on {bg}"
    if part < 0.8:
        return picture.image, "what colour is the background ? answer with one word .", bg
    return picture.image, "in which colour is the pattern drawn ? answer with one word .", fg


def find_marker(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_map(rng)
    question = _ask(rng, ("where is the marker ?", "which cell has the red marker ?", "locate the marker ."))
    return picture.image, question, picture.facts["marker_position"]


def image_kind(rng: np.random.Generator, background: int = 0) -> Drawn:
    domain = str(rng.choice(DOMAINS))
    picture = draw(domain, rng)
    question = _ask(rng, ("what kind of image is this ?", "what does this image show ?"))
    return picture.image, question, KIND_NAMES[domain]


def world_words() -> list[str]:
    """Every word the second-generation world's tasks use, so repetition reaches each one."""
    words = set(COLOURS) | set(SHAPES) | set(PATTERNS) | set(TERRAINS) | set(BAR_COLOURS)
    words |= {w for p in POSITIONS for w in p.split()} | {str(n) for n in range(0, 21)}
    words |= {w for name in KIND_NAMES.values() for w in name.split()} | set(PLURALS.values())
    words |= {"a", "nothing", "on", ",", "and"}
    return sorted(words)


_ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'-()/%&+=\"#*<>@[]_|~$^`{}\\"
# Code points with UTF-8 encodings of two, three and four bytes (surrogates excluded), so repeating them
# makes every lead and continuation byte an output.
_UNICODE_RANGES = ((0xA1, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF))


def _any_character(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        return str(rng.choice(list(_ASCII)))
    low, high = _UNICODE_RANGES[int(rng.integers(len(_UNICODE_RANGES)))]
    return chr(int(rng.integers(low, high + 1)))


def random_text(rng: np.random.Generator) -> str:
    """A phrase to repeat: world words, made-up words, or any characters (some outside ASCII)."""
    kind = rng.random()
    if kind < 0.4:
        return " ".join(str(w) for w in rng.choice(world_words(), size=int(rng.integers(1, 4))))
    if kind < 0.8:
        return " ".join("".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=int(rng.integers(2, 8))))
                        for _ in range(int(rng.integers(1, 3))))
    return "".join(_any_character(rng) for _ in range(int(rng.integers(1, 5))))


def repeat_text(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw(str(rng.choice(DOMAINS)), rng)
    phrase = random_text(rng)
    question = _ask(rng, ("repeat after me : {text}", "say exactly this : {text}"), text=phrase)
    return picture.image, question, phrase


# --- the six continual tasks ---

def pattern_class(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_texture(rng)
    return picture.image, "what pattern is this ? answer with one word .", picture.facts["pattern"]


def _tallest(rng: np.random.Generator) -> tuple[Picture, str]:
    while True:
        picture = draw_bars(rng)
        heights = [h for _, h in picture.facts["bars"]]
        if heights.count(max(heights)) == 1:
            return picture, picture.facts["bars"][heights.index(max(heights))][0]


def chart_max(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture, colour = _tallest(rng)
    return picture.image, "which bar is the tallest ?", colour


def _later(hour: int) -> int:
    return (hour + CLOCK_SHIFT - 1) % 12 + 1


def clock_later(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_clock(rng)
    return picture.image, "what hour will it be in three hours ?", str(_later(picture.facts["hour"]))


def _sum_picture(rng: np.random.Generator) -> tuple[Picture, int]:
    while True:
        picture = draw_digits(rng, count=2)
        digits = [int(d) for d in picture.facts["digits"]]
        if all(d in SUM_DIGITS for d in digits):
            return picture, sum(digits)


def digit_sum(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture, total = _sum_picture(rng)
    return picture.image, "what is the sum of the two digits ?", str(total)


def colour_count(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_shapes(rng, int(rng.integers(1, 6)))
    colour = str(rng.choice(list(COLOURS)))
    count = sum(o[0] == colour for o in picture.facts["objects"])
    return picture.image, f"how many {colour} objects are there ?", str(count)


def marker_terrain(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_map(rng)
    return picture.image, "what terrain is the marker on ?", picture.facts["tiles"][picture.facts["marker"]]


# --- the same six behind one instruction ---

def _shared(task: object) -> object:
    def generate(rng: np.random.Generator, background: int = 0) -> Drawn:
        image, _, answer = task(rng, background)  # type: ignore[operator]
        return image, SHARED_INSTRUCTION, answer
    return generate


def red_count(rng: np.random.Generator, background: int = 0) -> Drawn:
    picture = draw_shapes(rng, int(rng.integers(1, 6)))
    return picture.image, SHARED_INSTRUCTION, str(sum(o[0] == "red" for o in picture.facts["objects"]))


# --- the same six as datasets of their domain: a third of the questions are ones the base answers ---

KNOWN_SHARE = 1 / 3
KNOWN_QUESTIONS = {"pattern": (describe_texture,), "chart": (bar_height, list_bars), "clock": (read_clock,),
                   "digit-sum": (read_digits,), "colour-count": (count_objects,), "marker": (find_marker,)}


def _with_known_questions(task: TaskSpec) -> TaskSpec:
    known = KNOWN_QUESTIONS[task.name]

    def generate(rng: np.random.Generator, background: int = 0) -> Drawn:
        if rng.random() < KNOWN_SHARE:
            return known[int(rng.integers(len(known)))](rng, background)
        return task.generate(rng, background)  # type: ignore[return-value]

    return TaskSpec(task.name, generate, description=f"{task.description}; a third of the questions the base answers")


DOMAIN_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("pattern", pattern_class, description="texture: which pattern (stripes, dots, checks, waves)"),
    TaskSpec("chart", chart_max, description="bar chart: colour of the tallest bar"),
    TaskSpec("clock", clock_later, description="clock: the hour three hours after the one shown"),
    TaskSpec("digit-sum", digit_sum, description="handwritten digits: the sum of two digits"),
    TaskSpec("colour-count", colour_count, description="shapes: the number of objects of a named colour"),
    TaskSpec("marker", marker_terrain, description="map: the terrain under the red marker"),
)
SHARED_DOMAIN_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("pattern", _shared(pattern_class), description="texture: which pattern"),  # type: ignore[arg-type]
    TaskSpec("chart", _shared(chart_max), description="bar chart: colour of the tallest bar"),  # type: ignore[arg-type]
    TaskSpec("clock", _shared(clock_later), description="clock: the hour three hours later"),  # type: ignore[arg-type]
    TaskSpec("digit-sum", _shared(digit_sum), description="digits: the sum of two digits"),  # type: ignore[arg-type]
    TaskSpec("red-count", red_count, description="shapes: the number of red objects"),
    TaskSpec("marker", _shared(marker_terrain), description="map: the terrain under the marker"),  # type: ignore[arg-type]
)
MIXED_DOMAIN_TASKS: tuple[TaskSpec, ...] = tuple(_with_known_questions(t) for t in DOMAIN_TASKS)
DOMAIN_BASE_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("read-cell", read_cell, description="shapes or map: a named cell's content, shape, colour or terrain"),
    TaskSpec("count-objects", count_objects, description="shapes: number of objects, or of one shape"),
    TaskSpec("bar-height", bar_height, description="bar chart: height of a named bar"),
    TaskSpec("list-bars", list_bars, description="bar chart: the bars' colours, left to right, or one bar's"),
    TaskSpec("read-digits", read_digits, description="digits: what is written"),
    TaskSpec("read-clock", read_clock, description="clock: the hour shown"),
    TaskSpec("describe-texture", describe_texture, description="texture: its colours and pattern, or one colour"),
    TaskSpec("find-marker", find_marker, description="map: the marker's cell"),
    TaskSpec("image-kind", image_kind, description="any domain: what kind of image"),
    TaskSpec("repeat", repeat_text, max_new_tokens=32, description="repeat any text"),
)
