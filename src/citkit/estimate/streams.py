"""The number of tasks of a stream, read from its definition without reading or exporting data."""

from __future__ import annotations

from pathlib import Path

from citkit.data.streams import BUILTIN_TOY, StreamConfig, packaged_streams, read_stream_file
from citkit.data.toy.world import task_specs
from citkit.errors import UnknownNameError


def stream_task_count(config: StreamConfig) -> int:
    """Tasks the run will train: `stream.tasks` if given, else every task of the stream's definition."""
    if config.tasks:
        return len(config.tasks)
    if config.name in BUILTIN_TOY:
        return len(task_specs(BUILTIN_TOY[config.name]))
    path = Path(config.name)
    if path.suffix not in (".yaml", ".yml"):
        packaged = packaged_streams()
        if config.name not in packaged:
            raise UnknownNameError(f"unknown stream {config.name!r}; known: {', '.join(sorted(BUILTIN_TOY))}, "
                                   f"{', '.join(sorted(packaged))}, or a path to a stream YAML file")
        path = packaged[config.name]
    return len(read_stream_file(path)["tasks"])
