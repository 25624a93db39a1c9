"""train.log_with sends the loss parts, lr, matrix rows and metrics to accelerate's trackers."""

from __future__ import annotations

import struct

import pytest

from citkit.engine.config import TrainConfig
from citkit.engine.tracking import check_trackers
from citkit.errors import ConfigError
from citkit.run_config import build_run_config
from citkit.runner import run


def event_tags(folder) -> dict[str, list[float]]:
    """Scalar values by tag from TensorBoard event files (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    tags: dict[str, list[float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(value.simple_value)
    return tags


def test_a_run_logs_loss_parts_lr_rows_and_metrics_to_tensorboard(tmp_path, small_stream_file, tiny_model_path) -> None:
    overrides = [f"stream.name={small_stream_file}", "stream.tasks=[colour, shape]", "train.max_steps=4",
                 "train.batch_size=8", "train.progress=false", "train.log_every=2", "train.log_with=tensorboard"]
    result = run(build_run_config({}, overrides, method="lora-ft", seed=0, name="tracked", runs_dir=str(tmp_path)))
    tags = event_tags(result.run_dir)
    assert len(tags["train/ce"]) == 4 and len(tags["train/lr"]) == 4  # 2 tasks x steps 2 and 4
    assert tags["matrix/after_task_2/colour"] == [pytest.approx(result.matrix.rows[2][0])]
    assert tags["metrics/mfn"] == [pytest.approx(result.metrics.as_dict()["mfn"])]


def test_unknown_or_missing_trackers_are_refused_with_the_package_to_install() -> None:
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'"):
        check_trackers(TrainConfig(log_with="tensorbord").trackers)
    pytest.importorskip("tensorboardX")  # installed by the test extra; wandb is not
    with pytest.raises(ConfigError, match="needs the package wandb"):
        check_trackers(TrainConfig(log_with="tensorboard, wandb").trackers)
