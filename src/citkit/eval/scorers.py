"""Scorers: how a task's answers are judged. Each joins predictions to references by sample id.

A scorer takes `{id: prediction}` and `{id: references}` and returns per-sample scores in [0, 1];
the task score is their mean times 100. A prediction id with no reference, or a reference with no
prediction, is an error: answers are never matched by output order.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from citkit.data.samples import TestPart
from citkit.errors import DataFormatError
from citkit.registry import Registry

SampleScorer = Callable[[str, Sequence[str]], float]
SCORERS: Registry[Callable[..., "TaskScores"]] = Registry("scorer")


@dataclass
class TaskScores:
    """Score of one task (0-100) and each sample's score (0-1), by id."""

    score: float
    per_sample: dict[str, float]


def join_by_id(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], task: str = "") -> list[str]:
    """The ids to score; raises if the two sides do not hold the same ids."""
    missing = [i for i in references if i not in predictions]
    extra = [i for i in predictions if i not in references]
    where = f" of task {task!r}" if task else ""
    if missing:
        raise DataFormatError(f"{len(missing)} test sample(s){where} have no prediction, e.g. id {missing[0]!r}")
    if extra:
        raise DataFormatError(f"{len(extra)} prediction(s){where} have no reference, e.g. id {extra[0]!r}")
    return list(references)


def per_sample_scorer(name: str) -> Callable[[SampleScorer], SampleScorer]:
    """Register a scorer defined by a per-sample function `(prediction, references) -> [0, 1]`."""

    def decorator(fn: SampleScorer) -> SampleScorer:
        def score(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
                  task: str = "") -> TaskScores:
            ids = join_by_id(predictions, references, task)
            per_sample = {i: float(fn(predictions[i], references[i])) for i in ids}
            return TaskScores(100.0 * sum(per_sample.values()) / max(1, len(per_sample)), per_sample)

        SCORERS.register(name)(score)
        return fn

    return decorator


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the SQuAD/VQA-style normalisation)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCT)).split())


@per_sample_scorer("exact")
def exact(prediction: str, references: Sequence[str]) -> float:
    """Case-insensitive equality after stripping whitespace (what the benchmarks' code does)."""
    return float(any(prediction.strip().lower() == r.strip().lower() for r in references))


@per_sample_scorer("exact-normalized")
def exact_normalized(prediction: str, references: Sequence[str]) -> float:
    """Equality after `normalize_answer` on both sides (not paper-faithful; off by default)."""
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references))


@per_sample_scorer("contains")
def contains(prediction: str, references: Sequence[str]) -> float:
    """The (non-empty) prediction is a substring of a reference, case-insensitive (FCIT's DVQA/FigureQA rule)."""
    p = prediction.strip().lower()
    return float(bool(p) and any(p in r.strip().lower() for r in references))


def score_task(scorer: str, predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
               task: str = "", parts: Sequence[TestPart] = ()) -> TaskScores:
    """Score a task with `scorer`; with `parts`, each part with its own scorer, then the mean of the parts."""
    if not parts:
        return SCORERS.get(scorer)(predictions, references, task)
    join_by_id(predictions, references, task)
    per_sample: dict[str, float] = {}
    part_scores = []
    for part in parts:
        result = SCORERS.get(part.scorer)({i: predictions[i] for i in part.ids}, {i: references[i] for i in part.ids},
                                          f"{task}/{part.name}")
        part_scores.append(result.score)
        per_sample.update(result.per_sample)
    return TaskScores(sum(part_scores) / len(part_scores), per_sample)
