"""The first toy world (format shift, variant 'distinct'): deterministic from its seed, exported in LLaVA
format, read back by the same reader. The second world's tests are in test_domain_world.py."""

import numpy as np

from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.scenes import render
from citkit.data.toy.tasks import CONTINUAL_TASKS, SHARED_INSTRUCTION, answer_words
from citkit.data.toy.world import ToyWorldConfig, draw, export


def test_same_seed_same_world_other_seed_other_world() -> None:
    a = draw(ToyWorldConfig("distinct", seed=1), 0, "train", 20)
    b = draw(ToyWorldConfig("distinct", seed=1), 0, "train", 20)
    c = draw(ToyWorldConfig("distinct", seed=2), 0, "train", 20)
    assert [(q, x) for _, q, x in a] == [(q, x) for _, q, x in b]
    assert np.array_equal(render(a[0][0]), render(b[0][0]))
    assert [x for _, _, x in a] != [x for _, _, x in c]


def test_tasks_answer_in_different_kinds() -> None:
    config = ToyWorldConfig("distinct", train_per_task=50)
    answers = {spec.name: {a for _, _, a in draw(config, i, "train", 50)} for i, spec in enumerate(CONTINUAL_TASKS)}
    assert len(CONTINUAL_TASKS) >= 6
    assert answers["colour"] <= {"red", "green", "blue", "yellow", "purple"}
    assert answers["position"] & {"top left", "middle center", "bottom right"}
    assert all(a.isdigit() for a in answers["count"] | answers["arithmetic"])
    assert any(" and " in a for a in answers["caption"])
    words = set(answer_words())
    assert all(w in words for a in set().union(*answers.values()) for w in a.split())


def test_export_and_read_back(tmp_path) -> None:
    stream_file = export(ToyWorldConfig("distinct", train_per_task=5, test_per_task=3), tmp_path)
    stream = load_stream(StreamConfig(name=str(stream_file)), tmp_path / "cache")
    assert stream.task_names == [spec.name for spec in CONTINUAL_TASKS]
    task = stream.tasks[0]
    assert len(task.train) == 5 and len(task.test) == 3 and task.test[0].answer
    assert task.train[0].images[0].is_file()


def test_shared_instruction_variant_has_one_wording(tmp_path) -> None:
    stream_file = export(ToyWorldConfig("shared-instruction", 4, 2), tmp_path)
    stream = load_stream(StreamConfig(name=str(stream_file)), tmp_path / "cache")
    prompts = {s.prompt.split("\n")[-1] for t in stream.tasks for s in t.train + t.test if True} | set()
    questions = {t.turns[0].text.split("\n")[-1] for task in stream.tasks for t in task.train}
    assert questions == {SHARED_INSTRUCTION}
    assert prompts == {SHARED_INSTRUCTION}
