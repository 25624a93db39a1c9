"""citkit compare: one table over methods; finished methods are reused, not retrained."""

import csv

import pytest

from citkit.compare import compare, parse_method_entry
from citkit.data.streams import stream_title
from citkit.errors import CitkitError, ConfigError
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
    title = stream_title(str(small_stream_file))
    checkpoint = tmp_path / f"{title}-lora-ft-seed1" / "checkpoints" / "task_2" / "adapter.safetensors"
    stamp = checkpoint.stat().st_mtime_ns
    compare(config, ["lora-ft"])
    assert checkpoint.stat().st_mtime_ns == stamp  # reused, not retrained


def test_variant_entries_parse_and_get_their_own_run_directory(tmp_path) -> None:
    config = build_run_config({}, [], seed=3, runs_dir=str(tmp_path))
    entry = parse_method_entry("ewc:tir.enabled=true:penalty_weight=1e4")
    assert (entry.method, entry.label) == ("ewc", "ewc:tir.enabled=true:penalty_weight=1e4")
    assert entry.options == {"tir": {"enabled": True}, "penalty_weight": 10000.0}
    variant = entry.run_config(config)
    assert variant.method_config().tir.enabled and variant.method_config().penalty_weight == 1e4
    assert variant.run_name == "toy-mixed-ewc-tir-enabled-true-penalty_weight-1e4-seed3"
    assert parse_method_entry("lora-ft").run_config(config).run_name == "toy-mixed-lora-ft-seed3"


@pytest.mark.parametrize("entry, message", [
    ("ewc:penalty_weight", "must look like OPTION=VALUE"),
    (":a=1", "has no method name"),
    ("ewc:no_such_option=1", "no_such_option"),
    ("nosuch", "nosuch"),
])
def test_bad_entries_fail_before_anything_runs(tmp_path, entry, message) -> None:
    config = build_run_config({}, [], runs_dir=str(tmp_path))
    with pytest.raises(CitkitError, match=message):
        compare(config, ["lora-ft", entry])
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_an_entry_listed_twice_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="twice"):
        compare(build_run_config({}, [], runs_dir=str(tmp_path)), ["lora-ft", "lora-ft"])


def test_seed_means_are_the_mean_and_sd_of_each_seed_table(tmp_path, small_stream_file, tiny_model_path) -> None:
    from statistics import fmean, stdev

    from citkit.compare import compare_seeds

    overrides = [f"stream.name={small_stream_file}", "stream.tasks=[colour, shape]", "train.max_steps=3",
                 "train.batch_size=8", "train.progress=false", "stream.test_limit=6"]
    config = build_run_config({}, overrides, runs_dir=str(tmp_path))
    folder = compare_seeds(config, ["lora-ft"], [0, 1])
    mean_row = next(csv.DictReader((folder / "compare.csv").open()))
    title = stream_title(str(small_stream_file))
    per_seed = [next(csv.DictReader((tmp_path / f"compare-{title}-seed{s}" / "compare.csv").open())) for s in (0, 1)]
    values = [float(r["MFT"]) for r in per_seed]
    assert float(mean_row["MFT"]) == pytest.approx(fmean(values))
    assert float(mean_row["MFT sd"]) == pytest.approx(stdev(values))
    assert mean_row["seeds"] == "0 1" and "±" in (folder / "compare.md").read_text()
    with pytest.raises(ConfigError, match="distinct"):
        compare_seeds(config, ["lora-ft"], [1, 1])
