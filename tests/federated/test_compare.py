"""`citkit fed compare`: federated runs side by side in `citkit compare`'s table, finished runs reused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from citkit.cli import main
from citkit.compare import parse_method_entry
from citkit.errors import CitkitError
from citkit.federated.compare import entry_config, fed_compare
from citkit.federated.runner import run
from citkit.io import read_json

from .helpers import STREAM, TOY, small_config, toy_task_names

pytestmark = pytest.mark.filterwarnings("ignore")

FEDPROX = "lora-ft:federated.strategy=fedprox:federated.strategy_options.proximal_mu=0.01"


def rows_of(folder: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((folder / "compare.csv").open()))


def test_finished_runs_are_reused_and_every_entry_gets_a_row(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    plain = run(config)  # as `citkit fed run` with the same settings would have left it
    checkpoint = plain.run_dir / "checkpoints" / "task_2" / "adapter.safetensors"
    stamp = checkpoint.stat().st_mtime_ns
    folder = fed_compare(config, ["lora-ft", FEDPROX])
    assert checkpoint.stat().st_mtime_ns == stamp  # read, not retrained
    assert folder == tmp_path / f"fed-compare-{config.run_name.split('-fed-')[0]}-seed0"
    rows = rows_of(folder)
    assert [r["method"] for r in rows] == ["lora-ft", FEDPROX]
    assert {"MFN (Last)", "MAA (Avg)", "FCIT Last", "FCIT Avg", "bytes down", "bytes up", "client failures",
            "trainable params"} <= set(rows[0])
    metrics = read_json(plain.run_dir / "metrics.json")
    assert float(rows[0]["FCIT Last"]) == pytest.approx(metrics["fcit_last"])
    assert int(rows[0]["bytes up"]) == metrics["bytes_up"] > 0
    variant = entry_config(parse_method_entry(FEDPROX), config)
    assert variant.federated.strategy == "fedprox" and variant.run_dir.is_dir()
    assert read_json(variant.run_dir / "config.json")["federated"]["strategy_options"] == {"proximal_mu": 0.01}
    assert f"| {FEDPROX} |" in (folder / "compare.md").read_text() and (folder / "compare.png").exists()


def test_cli_compare_over_seeds_gives_mean_and_sd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks = ",".join(toy_task_names(tmp_path)[:2])
    args = ["fed", "compare", "--methods", "lora-ft", "--stream", STREAM, "--seeds", "0,1", "--runs-dir", str(tmp_path),
            "--quiet",
            "--clients", "3", "--clients-per-round", "2", "--rounds", "1", "--local-epochs", "3",
            "--setting", "heterogeneous", "--set", "train.lr=0.005", "--set", "train.batch_size=8",
            "--set", f"stream.toy.train_per_task={TOY['train_per_task']}",
            "--set", f"stream.toy.test_per_task={TOY['test_per_task']}", "--set", f"stream.tasks={tasks}"]
    assert main(args) == 0
    folders = sorted(p.name for p in tmp_path.glob("fed-compare-*"))
    assert len(folders) == 3 and folders[-1].endswith("seeds0-1")  # one per seed and the summary
    (row,) = rows_of(tmp_path / folders[-1])
    assert row["seeds"] == "0 1" and {"FCIT Last", "FCIT Last sd", "bytes up", "bytes up sd"} <= set(row)
    assert "±" in capsys.readouterr().out


@pytest.mark.parametrize("entry, message", [
    ("lora-ft:federated.num_clientz=3", "num_clientz"),
    ("lora-ft:federated=3", "federated.NAME=VALUE"),
    ("replay", "cannot run in federated clients"),
])
def test_bad_entries_fail_before_anything_runs(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(CitkitError, match=message):
        fed_compare(small_config(tmp_path), ["lora-ft", entry])
    assert not any(p.name.startswith(("toy", "fed-compare")) for p in tmp_path.iterdir())


def test_variants_get_their_own_directory_and_plain_entries_that_of_fed_run(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    assert entry_config(parse_method_entry("lora-ft"), config).run_name == config.run_name
    variant = entry_config(parse_method_entry("lora-ft:federated.setting=heterogeneous"), config)
    assert variant.federated.setting == "heterogeneous" and variant.run_name != config.run_name
    with pytest.raises(CitkitError, match="twice"):
        fed_compare(config, ["lora-ft", "lora-ft"])
