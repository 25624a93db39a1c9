"""The CIL runner: a run through the engine, its run directory, resume, bad input, the CLI and compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from citkit.cil.runner import build_cil_config, run_cil
from citkit.cli import main
from citkit.errors import ConfigError, DataFormatError, UnknownNameError
from citkit.io import load_tensors


def test_a_run_writes_its_directory(config_for) -> None:
    result = run_cil(config_for("lora-ft"))
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.json", "stages.json", "matrix.json", "matrix.csv", "metrics.json", "report.md", "accuracy.png",
            "tasks.json", "checkpoints", "predictions"} <= files
    stages = json.loads((result.run_dir / "stages.json").read_text())
    assert [s["stage"] for s in stages] == [1, 2, 3] and [s["samples"] for s in stages] == [12, 24, 36]
    assert result.metrics.last == stages[-1]["pooled"]
    rows = (result.run_dir / "predictions" / "row_3.jsonl").read_text().splitlines()
    assert len(rows) == 36 and {"id", "label", "prediction"} <= set(json.loads(rows[0]))


@pytest.mark.parametrize("method", ["desire", "sd-lora", "lwf"])
def test_a_run_killed_after_task_2_resumes_to_the_same_final_accuracies(config_for, method: str) -> None:
    whole = run_cil(config_for(method))
    config = config_for(method)
    from dataclasses import replace

    config = replace(config, name=f"{method}-interrupted")
    partial = run_cil(config, stop_after=2)
    assert len(partial.stages) == 2 and not (partial.run_dir / "metrics.json").exists()
    resumed = run_cil(config)
    assert [s.pooled for s in resumed.stages] == [s.pooled for s in whole.stages]
    assert [s.per_task for s in resumed.stages] == [s.per_task for s in whole.stages]
    final = load_tensors(whole.run_dir / "checkpoints" / "task_3" / "adapter.safetensors")
    again = load_tensors(resumed.run_dir / "checkpoints" / "task_3" / "adapter.safetensors")
    assert final.keys() == again.keys() and all(torch.equal(final[k], again[k]) for k in final)


def test_resume_with_other_settings_is_refused(config_for) -> None:
    from dataclasses import replace

    config = config_for("lora-ft")
    run_cil(config, stop_after=1)
    with pytest.raises(Exception, match="other settings"):
        run_cil(replace(config, seed=5, name=config.run_dir.name))


def test_bad_input_is_one_error_and_writes_nothing(random_vit: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code = main(["cil", "run", "--dataset", "imagefolder", "--root", str(tmp_path / "missing"), "--model",
                 str(random_vit), "--runs-dir", str(runs), "--quiet"])
    assert code == 2 and not runs.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("citkit: error: dataset imagefolder: folder") and "missing" in err[0]
    code = main(["cil", "run", "--tasks", "30", "--model", str(random_vit), "--runs-dir", str(runs), "--quiet",
                 "--set", "data.train_per_class=2", "--set", "data.test_per_class=1"])
    assert code == 2 and not runs.exists()
    assert "20 classes cannot be split into 30 tasks" in capsys.readouterr().err
    with pytest.raises(UnknownNameError, match="did you mean 'desire'"):
        build_cil_config(method="desir")
    with pytest.raises(ConfigError, match="unknown setting"):
        build_cil_config(method="desire", overrides=["method.merg=none"])
    with pytest.raises(DataFormatError):
        run_cil(build_cil_config(overrides=["data.dataset=imagenet-r", f"data.root={tmp_path}",
                                            f"runs_dir={runs}", f"model.path={random_vit}"]))
    assert not runs.exists()


def test_cli_compare_writes_one_table_over_seeds(random_vit: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    settings = ["--set", "data.classes=4", "--set", "data.train_per_class=8", "--set", "data.test_per_class=4",
                "--set", "train.epochs=1", "--tasks", "2"]
    code = main(["cil", "compare", "--methods", "simplecil,desire:refine=false", "--seeds", "0,1", "--model",
                 str(random_vit), "--runs-dir", str(runs), "--quiet", *settings])
    assert code == 0
    folder = runs / "cil-compare-builtin-2t"
    table = (folder / "compare.md").read_text()
    assert "| simplecil | 2 |" in table and "| desire:refine=false | 2 |" in table
    assert {p.name for p in folder.iterdir()} >= {"compare.md", "compare.csv", "compare.json", "compare.png"}
    assert (runs / "cil-builtin-2t-desire-refine-false-seed1" / "stages.json").exists()
    curves = json.loads((folder / "curves.json").read_text())
    assert len(curves["mean"]["simplecil"]) == 2
