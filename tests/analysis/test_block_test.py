"""The per-block test: each block routed, fused or dropped as named; the routed reference equals the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from citkit.analysis.block_test import (
    BlockTestConfig,
    analyze_blocks,
    block_updates,
    configurations,
    set_mode,
    varied_layers,
)
from citkit.data.streams import read_stream_file
from citkit.errors import ConfigError
from citkit.eval.matrix import AccuracyMatrix
from citkit.io import read_json
from citkit.methods.hide_llava import HiDeLinear
from citkit.run_config import build_run_config
from citkit.runner import run


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the tiny model runs faster on one thread of a shared CPU


def two_experts() -> HiDeLinear:
    """in 3, out 2, rank 1, zero base; A1 x = 7 with B1 = (1, 1), A2 x = 5 with B2 = (2, -1) for x = (1, 2, 3)."""
    base = nn.Linear(3, 2, bias=False)
    nn.init.zeros_(base.weight)
    layer = HiDeLinear(base, rank=1, alpha=1.0, dropout=0.0, expanded=False)
    for a, b in (([1.0, 0.0, 2.0], [1.0, 1.0]), ([0.0, 1.0, 1.0], [2.0, -1.0])):
        k = layer.add_expert()
        layer.experts_A[k].data = torch.tensor([a])
        layer.experts_B[k].data = torch.tensor([b]).T
    return layer


def test_modes_compute_what_they_say() -> None:
    x = torch.tensor([[[1.0, 2.0, 3.0]]])
    layer = two_experts()
    set_mode([layer], "routed", 2, "code")
    layer.routing = torch.tensor([[0.0, 1.0]])  # the oracle picks expert 2
    assert layer(x).flatten().tolist() == [10.0, -5.0]
    layer.routing = None
    set_mode([layer], "fused", 2, "code")  # (B1 + B2)(A1 + A2) x = (3, 0) * 12
    assert layer(x).flatten().tolist() == [36.0, 0.0]
    set_mode([layer], "fused", 2, "paper")  # B1 A1 x + B2 A2 x
    assert layer(x).flatten().tolist() == [17.0, 2.0]
    set_mode([layer], "dropped", 2, "code")  # the frozen base alone
    assert layer(x).flatten().tolist() == [0.0, 0.0]


def test_block_updates_measure_each_experts_size_per_block() -> None:
    layer = two_experts()  # s = 1: B1 A1 = [[1, 0, 2], [1, 0, 2]], B2 A2 = [[0, 2, 2], [0, -1, -1]]
    assert block_updates([[layer]], experts=2).norms == [[pytest.approx(10 ** 0.5), pytest.approx(10 ** 0.5)]]
    layer.scaling = 3.0
    second = two_experts()
    second.experts_B[1].data = 2 * second.experts_B[1].data
    norms = block_updates([[layer], [layer, second]], experts=2).norms
    assert norms[0] == [pytest.approx(3 * 10 ** 0.5)] * 2
    assert norms[1] == [pytest.approx((90 + 10) ** 0.5), pytest.approx((90 + 40) ** 0.5)]  # both layers together


def test_configurations_fuse_and_drop_one_block_at_a_time() -> None:
    rows = dict(configurations(4))
    assert len(rows) == 1 + 4 + 4 + 2 and rows["all blocks routed"] == {}
    assert rows["fuse block 2"] == {2: "fused"} and rows["drop block 0"] == {0: "dropped"}
    assert rows["top block only"] == {0: "dropped", 1: "dropped", 2: "dropped"}
    assert rows["all blocks fused"] == {b: "fused" for b in range(4)}


def test_varied_layers_are_the_named_ones_of_every_block() -> None:
    def block() -> nn.Module:
        attention, mlp = nn.Module(), nn.Module()
        attention.q_proj, attention.v_proj, mlp.up_proj = two_experts(), two_experts(), two_experts()
        outer = nn.Module()
        outer.self_attn, outer.mlp = attention, mlp
        return outer

    blocks = [block(), block()]
    assert [len(b) for b in varied_layers(blocks, ())] == [3, 3]
    chosen = varied_layers(blocks, ("q_proj", "up_proj"))
    assert chosen == [[b.self_attn.q_proj, b.mlp.up_proj] for b in blocks]
    with pytest.raises(ConfigError, match="block 0 has no expert layer named gate_proj"):
        varied_layers(blocks, ("q_proj", "gate_proj"))
    with pytest.raises(ConfigError, match="distinct non-empty"):
        BlockTestConfig(run_dir="x", modules=("q_proj", "q_proj"))


def small_run(tmp_path: Path, stream: Path, name: str, *options: str) -> Path:
    tasks = [t["name"] for t in read_stream_file(stream)["tasks"][:2]]
    overrides = ["train.max_steps=2", "train.batch_size=4", "train.progress=false", f"stream.name={stream}",
                 f"stream.tasks=[{', '.join(tasks)}]", "stream.test_limit=6", "stream.allow_unknown_tokens=true",
                 *options]
    return run(build_run_config({}, overrides, method="hide-llava", runs_dir=str(tmp_path), name=name)).run_dir


def test_reference_row_equals_an_oracle_routed_run(tmp_path: Path, small_stream_file: Path) -> None:
    run_dir = small_run(tmp_path, small_stream_file, "expand", "method.layout=expand-all", "method.oracle_routing=true")
    result = analyze_blocks(BlockTestConfig(run_dir=str(run_dir), samples_per_task=6, batch_size=4))
    final = dict(zip(result.tasks, AccuracyMatrix.load(run_dir).rows[-1], strict=True))
    assert result.row("all blocks routed").scores == pytest.approx(final)  # same model, same oracle routing
    assert result.samples_per_task == 6
    assert [r.name for r in result.rows] == [name for name, _ in configurations(result.blocks)]
    for row in result.rows:  # every configuration also has its answer loss, per task
        assert set(row.losses) == set(result.tasks) and all(0 < v < 50 for v in row.losses.values())
    assert result.row("top block only").losses != result.row("all blocks routed").losses
    saved = read_json(run_dir / "blocks" / "blocks.json")
    assert saved["rows"][0]["mean_answer_loss"] == pytest.approx(result.rows[0].mean_loss)
    assert saved["rows"][1]["modes"] == {"0": "fused"} | {str(b): "routed" for b in range(1, result.blocks)}
    assert (run_dir / "blocks" / "blocks.md").read_text().startswith("Per-block test under oracle routing")
    done = subprocess.run([sys.executable, "-m", "citkit.cli", "analyze", "blocks", str(run_dir), "--samples-per-task",
                           "2", "--out", str(tmp_path / "b"), "--modules", "gate_proj, up_proj"],
                          capture_output=True, text=True)  # a fresh process
    assert done.returncode == 0, done.stderr
    assert "| fuse block 0 |" in done.stdout and "answer loss" in done.stdout
    assert "in its gate_proj, up_proj layers only" in done.stdout
    assert (tmp_path / "b" / "blocks.csv").read_text().startswith("configuration,") and ",answer_loss\n" in (
        tmp_path / "b" / "blocks.csv").read_text().splitlines(keepends=True)[0]
    assert "Size of each task's update" in done.stdout
    assert [len(n) for n in read_json(tmp_path / "b" / "blocks.json")["update_norms"]] == [2] * result.blocks
    attention = analyze_blocks(BlockTestConfig(run_dir=str(run_dir), samples_per_task=6, batch_size=4,
                                               modules=("q_proj", "k_proj"), out_dir=str(tmp_path / "qk")))
    assert attention.row("all blocks routed").losses == pytest.approx(result.row("all blocks routed").losses)
    assert attention.row("all blocks fused").losses != pytest.approx(result.row("all blocks fused").losses)
    assert "in its q_proj, k_proj layers only" in (tmp_path / "qk" / "blocks.md").read_text()
    assert read_json(tmp_path / "qk" / "blocks.json")["modules"] == ["q_proj", "k_proj"]


def test_updates_only_scores_no_configuration(tmp_path: Path, small_stream_file: Path) -> None:
    run_dir = small_run(tmp_path, small_stream_file, "expand", "method.layout=expand-all")
    result = analyze_blocks(BlockTestConfig(run_dir=str(run_dir), updates_only=True))
    assert result.rows == [] and result.updates is not None and len(result.updates.norms) == result.blocks
    assert all(n > 0 for norms in result.updates.norms for n in norms)  # every expert trained (B moved from zero)
    text = (run_dir / "blocks" / "blocks.md").read_text()
    assert text.startswith("Size of each task's update") and "fuse block" not in text


def test_a_run_whose_experts_were_folded_is_refused(tmp_path: Path, small_stream_file: Path) -> None:
    run_dir = small_run(tmp_path, small_stream_file, "folded")  # hierarchical, code fusion: lower blocks folded
    with pytest.raises(ConfigError, match="method.layout=expand-all"):
        analyze_blocks(BlockTestConfig(run_dir=str(run_dir)))
    with pytest.raises(ConfigError, match="is not a run directory"):
        analyze_blocks(BlockTestConfig(run_dir=str(tmp_path / "nothing")))
    with pytest.raises(ConfigError, match="samples_per_task must be >= 1"):
        BlockTestConfig(run_dir="x", samples_per_task=0)
