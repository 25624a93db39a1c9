"""The second toy world: six visual domains, a base mixture that reads them, six continual skills."""

import numpy as np
import pytest

from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.domain_tasks import (
    CLOCK_SHIFT,
    DOMAIN_BASE_TASKS,
    DOMAIN_TASKS,
    SUM_DIGITS,
    world_words,
)
from citkit.data.toy.domains import DOMAINS, PATTERNS, TERRAINS, draw
from citkit.data.toy.scenes import COLOURS
from citkit.data.toy.tasks import SHARED_INSTRUCTION
from citkit.data.toy.world import ToyWorldConfig, export
from citkit.data.toy.world import draw as draw_task
from citkit.errors import ConfigError


def _colour_statistics(image: np.ndarray) -> np.ndarray:
    """Per-channel mean and spread and the mean of each 16 px row band: a crude image descriptor."""
    pixels = image.astype(np.float32) / 255
    bands = [pixels[k * 16:(k + 1) * 16].mean(axis=(0, 1)) for k in range(3)]
    return np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1)), *bands])


def test_domains_are_told_apart_by_their_pixels_alone() -> None:
    """One nearest neighbour on standardised colour statistics names the domain of held-out pictures: the image
    alone carries the task, as UCIT's six datasets do."""
    rng = np.random.default_rng(0)
    train = np.stack([_colour_statistics(draw(d, rng).image) for d in DOMAINS for _ in range(60)])
    labels = np.repeat(np.arange(len(DOMAINS)), 60)
    mean, sd = train.mean(0), train.std(0) + 1e-6
    test = np.stack([_colour_statistics(draw(d, rng).image) for d in DOMAINS for _ in range(40)])
    truth = np.repeat(np.arange(len(DOMAINS)), 40)
    distances = ((((test - mean) / sd)[:, None] - ((train - mean) / sd)[None]) ** 2).sum(-1)
    assert (labels[distances.argmin(1)] == truth).mean() >= 0.95


def test_each_continual_task_answers_from_its_own_space() -> None:
    config = ToyWorldConfig("domains", 60, 10, seed=0)
    answers = {spec.name: [a for _, _, a in draw_task(config, i, "train", 60)] for i, spec in enumerate(DOMAIN_TASKS)}
    assert set(answers["pattern"]) <= set(PATTERNS) and len(set(answers["pattern"])) == len(PATTERNS)
    assert set(answers["chart"]) <= set(COLOURS)
    assert {int(a) for a in answers["clock"]} <= set(range(1, 13))
    assert {int(a) for a in answers["digit-sum"]} <= set(range(2 * min(SUM_DIGITS), 2 * max(SUM_DIGITS) + 1))
    assert {int(a) for a in answers["colour-count"]} <= set(range(0, 6))
    assert set(answers["marker"]) <= set(TERRAINS)


def test_answers_are_what_the_picture_shows() -> None:
    """Spot-check each skill against the drawing it was computed from, through the same seeded draws."""
    rng = np.random.default_rng(5)
    picture = draw("clock", rng)
    hour = picture.facts["hour"]
    from citkit.data.toy.domain_tasks import _later

    assert _later(hour) == (hour + CLOCK_SHIFT - 1) % 12 + 1 and 1 <= _later(hour) <= 12
    assert _later(12) == CLOCK_SHIFT and _later(10) == 1
    bars = draw("bars", rng).facts["bars"]
    assert len(bars) == 3 and all(1 <= h <= 5 for _, h in bars)


def test_continual_instructions_never_occur_in_the_base_mixture() -> None:
    """The base reads every domain but has never been asked a continual task's question."""
    base = ToyWorldConfig("domains-base", 200, 10, seed=0)
    base_questions = {q for i in range(len(DOMAIN_BASE_TASKS)) for _, q, _ in draw_task(base, i, "train", 200)}
    world = ToyWorldConfig("domains", 50, 10, seed=0)
    continual = {q for i in range(len(DOMAIN_TASKS)) for _, q, _ in draw_task(world, i, "train", 50)}
    assert not base_questions & continual
    assert len(base_questions) > 3 * len(DOMAIN_BASE_TASKS)  # paraphrased instructions


def test_base_repetition_reaches_every_world_word_and_non_ascii_text() -> None:
    base = ToyWorldConfig("domains-base", 3000, 10, seed=0)
    index = [spec.name for spec in DOMAIN_BASE_TASKS].index("repeat")
    phrases = [a for _, _, a in draw_task(base, index, "train", 3000)]
    repeated = {w for p in phrases for w in p.split()}
    assert set(world_words()) <= repeated
    text_bytes = {b for p in phrases for b in p.encode()}
    assert any(ord(c) > 0xFFFF for p in phrases for c in p)
    assert len(text_bytes) >= 200  # every lead and continuation byte of valid UTF-8 text, and printable ASCII


def test_same_seed_same_world(tmp_path) -> None:
    a = draw_task(ToyWorldConfig("domains", seed=4), 2, "test", 10)
    b = draw_task(ToyWorldConfig("domains", seed=4), 2, "test", 10)
    c = draw_task(ToyWorldConfig("domains", seed=5), 2, "test", 10)
    assert all(np.array_equal(x[0], y[0]) and x[1:] == y[1:] for x, y in zip(a, b, strict=True))
    assert [x[2] for x in a] != [x[2] for x in c]


def test_export_and_read_back_every_variant(tmp_path) -> None:
    for variant in ("domains", "domains-shared"):
        stream_file = export(ToyWorldConfig(variant, 4, 2), tmp_path / variant)
        stream = load_stream(StreamConfig(name=str(stream_file)), tmp_path / "cache")
        assert len(stream.tasks) == 6 and all(len(t.train) == 4 and len(t.test) == 2 for t in stream.tasks)
    shared = load_stream(StreamConfig(name=str(tmp_path / "domains-shared" / "stream.yaml")), tmp_path / "cache")
    assert {s.turns[0].text.split("\n")[-1] for t in shared.tasks for s in t.train} == {SHARED_INSTRUCTION}


def test_unknown_variant_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="'domains'.*'distinct'"):
        ToyWorldConfig("domain")  # type: ignore[arg-type]


def test_base_mixture_teaches_the_answer_words_without_the_continual_skills() -> None:
    """The base answers one-word shape/colour questions, names a map cell's terrain and a bar's colour by its
    place: the continual tasks' answer words are outputs it has produced, their skills are not."""
    config = ToyWorldConfig("domains-base", 400, 10, seed=0)
    names = [spec.name for spec in DOMAIN_BASE_TASKS]
    one_word = {"read-cell": set(COLOURS) | {"circle", "square", "triangle", "cross", "nothing"} | set(TERRAINS),
                "describe-texture": set(COLOURS)}
    seen = {"one-word": 0, "terrain": 0, "bar-place": 0}
    for task, allowed in one_word.items():
        for _, question, answer in draw_task(config, names.index(task), "train", 400):
            if "answer with one word" in question:
                seen["one-word"] += 1
                assert " " not in answer and answer in allowed, (question, answer)
            if "terrain" in question:
                seen["terrain"] += 1
                assert answer in TERRAINS
    for _, question, answer in draw_task(config, names.index("list-bars"), "train", 200):
        if question.startswith(("what colour is the", "which colour has the")):
            seen["bar-place"] += 1
            assert answer in COLOURS and " " not in answer
    assert min(seen.values()) >= 20, seen


def test_mixed_variant_is_each_domain_as_a_dataset_a_third_of_it_what_the_base_answers(tmp_path) -> None:
    """`domains-mixed`: every task keeps its new skill's instruction and answers for about two thirds of its
    samples; the rest are questions the base mixture asks about the same domain (never another domain's)."""
    from citkit.data.toy.domain_tasks import KNOWN_QUESTIONS, KNOWN_SHARE, MIXED_DOMAIN_TASKS

    assert [t.name for t in MIXED_DOMAIN_TASKS] == [t.name for t in DOMAIN_TASKS]
    base = ToyWorldConfig("domains-base", 300, 10, seed=0)
    base_questions = {q for i in range(len(DOMAIN_BASE_TASKS)) for _, q, _ in draw_task(base, i, "train", 300)}
    plain = ToyWorldConfig("domains", 300, 10, seed=0)
    mixed = ToyWorldConfig("domains-mixed", 300, 10, seed=0)
    for index, spec in enumerate(DOMAIN_TASKS):
        skill = {q for _, q, _ in draw_task(plain, index, "train", 300)}
        drawn = draw_task(mixed, index, "test", 300)
        known = [(q, a) for _, q, a in drawn if q not in skill]
        assert all(q in base_questions for q, _ in known), spec.name
        assert abs(len(known) / len(drawn) - KNOWN_SHARE) < 0.08, (spec.name, len(known))
        rng = np.random.default_rng(1)
        own_domain = {fn(rng)[1] for fn in KNOWN_QUESTIONS[spec.name] for _ in range(400)}
        assert {q for q, _ in known} <= own_domain, spec.name
    stream = load_stream(StreamConfig(name="toy-mixed", test_limit=5, train_limit=5), tmp_path)
    assert [t.name for t in stream.tasks] == [t.name for t in DOMAIN_TASKS]
