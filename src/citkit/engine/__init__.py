"""The training engine (one loop, `Engine.fit_task`) and batched generation."""

from citkit.engine.batches import BatchSource, LazyDataset, loss_items
from citkit.engine.config import TrainConfig, steps_for
from citkit.engine.engine import Engine, TrainableTask, TrainResult
from citkit.engine.generation import Generation, generate
from citkit.engine.task_data import EncodingCache, TaskData

__all__ = ["BatchSource", "Engine", "EncodingCache", "Generation", "LazyDataset", "TaskData", "TrainConfig",
           "TrainResult", "TrainableTask", "generate", "loss_items", "steps_for"]
