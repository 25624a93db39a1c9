"""Scorers, the accuracy matrix and continual-learning metrics."""

from citkit.eval import caption, grounding, vqa  # noqa: F401  (registers these scorers)
from citkit.eval.matrix import AccuracyMatrix
from citkit.eval.metrics import Metrics, all_metrics
from citkit.eval.scorers import SCORERS, TaskScores, score_task

__all__ = ["SCORERS", "AccuracyMatrix", "Metrics", "TaskScores", "all_metrics", "score_task"]
