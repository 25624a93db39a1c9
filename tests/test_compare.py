"""citkit compare: one table over methods; finished methods are reused, not retrained."""

import csv

from citkit.compare import compare
from citkit.run_config import build_run_config


def test_compare_table_and_reuse(tmp_path, small_stream_file, tiny_model_path) -> None:
    overrides = [f"stream.name={small_stream_file}", "stream.tasks=[colour, shape]", "train.max_steps=4",
                 "train.batch_size=8", "train.progress=false"]
    config = build_run_config({}, overrides, seed=1, runs_dir=str(tmp_path))
    folder = compare(config, ["zero-shot", "lora-ft"])
    rows = list(csv.DictReader((folder / "compare.csv").open()))
    assert [r["method"] for r in rows] == ["zero-shot", "lora-ft"]
    assert {"MFT", "MFN (Last)", "BWT", "FWT", "trainable params", "stored params", "train s/task",
            "inference ms/sample"} <= set(rows[0])
    assert rows[0]["trainable params"] == "0" and int(rows[1]["trainable params"]) > 0
    assert float(rows[1]["stored params"]) >= float(rows[1]["trainable params"])
    assert (folder / "compare.png").stat().st_size > 0 and "| lora-ft |" in (folder / "compare.md").read_text()
    checkpoint = tmp_path / f"{small_stream_file.stem}-lora-ft-seed1" / "checkpoints" / "task_2" / "adapter.safetensors"
    stamp = checkpoint.stat().st_mtime_ns
    compare(config, ["lora-ft"])
    assert checkpoint.stat().st_mtime_ns == stamp  # reused, not retrained
