"""Samples, tasks and streams; the LLaVA-format reader; the toy world."""

from citkit.data.llava_format import read_test, read_train
from citkit.data.samples import Sample, Stream, Task, Turn
from citkit.data.streams import StreamConfig, load_stream

__all__ = ["Sample", "Stream", "StreamConfig", "Task", "Turn", "load_stream", "read_test", "read_train"]
