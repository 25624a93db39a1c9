"""The training engine and batched generation."""

from citkit.engine.generation import Generation, generate
from citkit.engine.task_data import EncodingCache, TaskData
from citkit.engine.trainer import TrainConfig, TrainResult, train_task

__all__ = ["EncodingCache", "Generation", "TaskData", "TrainConfig", "TrainResult", "generate", "train_task"]
