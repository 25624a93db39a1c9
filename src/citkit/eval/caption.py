"""The caption scorer: BLEU-1..4, METEOR, ROUGE-L and CIDEr from pycocoevalcap, joined by sample id.

This is the COCO caption evaluation that UCIT (VizWiz-Caption, Flickr30k) and FCIT (Flickr30k) use:
both sides go through the PTB tokenizer, then each metric is computed on the whole test set. The
task score is 100 x the mean of the seven corpus-level metrics; each sample's score is the mean of
its own seven per-sample values (CIDEr is not bounded by 1, so a caption's per-sample score may be).

pycocoevalcap runs Java for the PTB tokenizer and METEOR. It is an optional dependency
(`pip install citkit[benchmarks]`); it is imported only when a caption task is scored.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from citkit.errors import CitkitError
from citkit.eval.scorers import SCORERS, TaskScores, join_by_id

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


@dataclass
class CaptionScores(TaskScores):
    """A caption task's score plus each corpus-level metric (0-1 scale, CIDEr may exceed 1)."""

    metrics: dict[str, float] = field(default_factory=dict)


def _require_backend() -> Any:
    """Import pycocoevalcap and check for Java, or say how to get them."""
    try:
        import pycocoevalcap  # noqa: F401
    except ImportError:
        raise CitkitError("the caption scorer needs pycocoevalcap: pip install 'citkit[benchmarks]' "
                          "(or pip install pycocoevalcap)") from None
    if shutil.which("java") is None:
        raise CitkitError("the caption scorer needs Java (pycocoevalcap runs the PTB tokenizer and METEOR "
                          "with it) and no `java` is on PATH: install a JRE, e.g. `apt-get install "
                          "default-jre-headless` or `conda install openjdk`, then retry")
    return pycocoevalcap


def coco_caption_metrics(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
                         ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Corpus metrics and per-sample metrics, by id, as the COCO caption evaluation computes them.

    Both dicts must hold the same ids (see `join_by_id`); every id needs at least one reference."""
    _require_backend()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": r} for r in references[i]] for i in references})
    res = tokenizer.tokenize({i: [{"caption": predictions[i]}] for i in references})
    ids = list(gts)
    corpus: dict[str, float] = {}
    per_sample: dict[str, dict[str, float]] = {i: {} for i in ids}
    for scorer, names in ((Bleu(4), METRICS[:4]), (Meteor(), ("METEOR",)), (Rouge(), ("ROUGE_L",)),
                          (Cider(), ("CIDEr",))):
        score, scores = scorer.compute_score(gts, res)
        if len(names) == 1:
            score, scores = [score], [scores]
        for name, value, values in zip(names, score, scores, strict=True):
            corpus[name] = float(value)
            # pycocoevalcap returns per-sample values in the order of gts' keys
            for i, v in zip(ids, values, strict=True):
                per_sample[i][name] = float(v)
    return corpus, per_sample


@SCORERS.register("caption")
def caption(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], task: str = "") -> CaptionScores:
    """Mean of BLEU-1..4, METEOR, ROUGE-L and CIDEr (x100), predictions joined to references by id."""
    ids = join_by_id(predictions, references, task)
    refs = {i: [str(r) for r in references[i]] for i in ids}
    empty = [i for i in ids if not refs[i]]
    if empty:
        raise CitkitError(f"caption task {task!r}: sample {empty[0]!r} has no reference caption")
    if not ids:
        return CaptionScores(0.0, {}, {m: 0.0 for m in METRICS})
    corpus, per_sample = coco_caption_metrics({i: predictions[i] for i in ids}, refs)
    mean = sum(corpus[m] for m in METRICS) / len(METRICS)
    samples = {i: sum(per_sample[i][m] for m in METRICS) / len(METRICS) for i in ids}
    return CaptionScores(100.0 * mean, samples, corpus)
