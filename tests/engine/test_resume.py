"""A run killed after its second task and resumed equals an uninterrupted run with the same seed."""

import json

import pytest

from citkit.errors import ResumeMismatchError
from citkit.run_config import build_run_config
from citkit.rundir import saved_settings
from citkit.runner import run


def config(tmp_path, stream_file, name, **extra):
    overrides = [f"stream.name={stream_file}", "stream.tasks=[colour, shape, count]", "train.max_steps=6",
                 "train.batch_size=8", "train.progress=false", *[f"{k}={v}" for k, v in extra.items()]]
    return build_run_config({}, overrides, method="lora-ft", seed=5, name=name, runs_dir=str(tmp_path))


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, small_stream_file, tiny_model_path) -> None:
    whole = run(config(tmp_path, small_stream_file, "whole"))
    first = run(config(tmp_path, small_stream_file, "split"), stop_after=2)
    assert first.matrix.finished_rows == 3 and not first.matrix.is_complete
    assert not (first.run_dir / "metrics.json").exists()
    resumed = run(config(tmp_path, small_stream_file, "split"))
    assert resumed.matrix.rows == whole.matrix.rows
    assert resumed.matrix.is_complete
    for row in range(4):
        a = (whole.run_dir / "predictions" / f"row_{row}.jsonl").read_text()
        b = (resumed.run_dir / "predictions" / f"row_{row}.jsonl").read_text()
        assert a == b
    files = {p.name for p in resumed.run_dir.iterdir()}
    assert {"config.json", "environment.json", "matrix.json", "matrix.csv", "metrics.json", "report.md",
            "matrix.png", "tasks.json", "checkpoints", "predictions"} <= files
    assert (resumed.run_dir / "checkpoints" / "task_3" / "adapter.safetensors").is_file()
    assert not list(resumed.run_dir.rglob("*.tmp"))
    assert len(json.loads((resumed.run_dir / "tasks.json").read_text())) == 3


def test_resume_with_other_settings_is_refused(tmp_path, small_stream_file, tiny_model_path) -> None:
    run(config(tmp_path, small_stream_file, "r"), stop_after=1)
    with pytest.raises(ResumeMismatchError, match="train.lr"):
        run(config(tmp_path, small_stream_file, "r", **{"train.lr": 0.5}))


def test_run_saved_before_a_setting_existed_resumes_while_it_keeps_its_default(tmp_path, small_stream_file,
                                                                               tiny_model_path) -> None:
    """A config.json without `train.weight_decay` (as written by an older citkit) resumes when the setting
    keeps its default, and is refused when the new run changes it."""
    first = run(config(tmp_path, small_stream_file, "old"), stop_after=1)
    saved = json.loads((first.run_dir / "config.json").read_text())
    del saved["train"]["weight_decay"]
    (first.run_dir / "config.json").write_text(json.dumps(saved))
    resumed = run(config(tmp_path, small_stream_file, "old"))
    assert resumed.matrix.is_complete
    with pytest.raises(ResumeMismatchError, match="train.weight_decay: None -> 0.1"):
        run(config(tmp_path, small_stream_file, "old", **{"train.weight_decay": 0.1}))


def test_run_saved_with_a_retired_setting_resumes(tmp_path, small_stream_file, tiny_model_path) -> None:
    """A config.json with `stream.toy.variant` (a setting every run ignored, since removed) still resumes;
    any other unknown saved setting is still a difference."""
    first = run(config(tmp_path, small_stream_file, "retired"), stop_after=1)
    saved = json.loads((first.run_dir / "config.json").read_text())
    saved["stream"]["toy"]["variant"] = "domains"
    (first.run_dir / "config.json").write_text(json.dumps(saved))
    assert run(config(tmp_path, small_stream_file, "retired"), stop_after=2).matrix.finished_rows == 3
    # what `citkit resume`, `citkit fed resume` and `citkit analyze blocks` build from the folder
    assert run(build_run_config(saved_settings(first.run_dir))).matrix.is_complete
    saved["stream"]["toy"]["shade"] = "dark"
    (first.run_dir / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ResumeMismatchError, match="stream.toy.shade"):
        run(config(tmp_path, small_stream_file, "retired"))
