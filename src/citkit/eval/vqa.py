"""The VQA accuracy scorer: min(#annotators who gave the predicted answer / 3, 1).

For datasets that give ten human answers per question (VQAv2, VizWiz QA): an answer that three or
more annotators gave is fully right, one that one annotator gave is a third right. The references
list is the annotators' answers, duplicates included (they are the votes). Answers compare after
lower-casing and stripping whitespace; the official VQA script's extra normalisation (punctuation,
number words, articles) and its averaging over the ten leave-one-out subsets are not applied, so
scores can differ slightly from the official server's.
"""

from __future__ import annotations

from collections.abc import Sequence

from citkit.eval.scorers import per_sample_scorer


@per_sample_scorer("vqa-accuracy")
def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """min(number of references equal to the prediction / 3, 1), case-insensitive."""
    answer = prediction.strip().lower()
    votes = sum(answer == r.strip().lower() for r in references)
    return min(votes / 3.0, 1.0)
