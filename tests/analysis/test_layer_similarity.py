"""Layer-by-layer CKA between models: hooks capture pooled down_proj outputs, pairs compare per layer."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from citkit.analysis.layer_similarity import decoder_modules, layer_features, pairwise_similarity
from citkit.cli import main
from citkit.data.encoding import SampleEncoder
from citkit.data.streams import StreamConfig, load_stream
from citkit.engine.task_data import EncodingCache
from citkit.models.loading import load_model, load_processor
from citkit.models.registry import packaged_tiny_model


@pytest.fixture(scope="module")
def setup(tiny_model_path: Path, small_stream_file: Path):  # type: ignore[no-untyped-def]
    model = load_model(tiny_model_path)
    cache = EncodingCache(SampleEncoder(load_processor(tiny_model_path)))
    stream = load_stream(StreamConfig(name=str(small_stream_file)), small_stream_file.parent)
    probes = [s for task in stream.tasks for s in task.test[:4]]
    return model, cache, probes


def test_features_are_pooled_per_layer_and_ignore_padding(setup) -> None:  # type: ignore[no-untyped-def]
    model, cache, probes = setup
    layers = model.config.text_config.num_hidden_layers
    batched = layer_features(model, cache, probes, batch_size=8)
    assert sorted(batched) == list(range(layers))
    assert batched[0].shape == (len(probes), model.config.text_config.hidden_size)
    alone = layer_features(model, cache, probes[:3], batch_size=1)  # no padding at all
    for layer in batched:
        assert torch.allclose(batched[layer][:3], alone[layer], atol=1e-4)
    assert all(not m._forward_hooks for m in decoder_modules(model).values())  # hooks removed


def test_perturbing_one_layer_lowers_cka_from_that_layer_up_only(setup) -> None:  # type: ignore[no-untyped-def]
    model, cache, probes = setup
    changed = copy.deepcopy(model)
    with torch.no_grad():
        mlp = changed.model.language_model.layers[2].mlp.down_proj
        mlp.weight.add_(torch.randn(mlp.weight.shape, generator=torch.Generator().manual_seed(0)) * 0.2)
    features = {"a": layer_features(model, cache, probes, 8), "b": layer_features(changed, cache, probes, 8)}
    result = pairwise_similarity(features)
    linear = result.linear[("a", "b")]
    assert linear[0] == pytest.approx(1.0) and linear[1] == pytest.approx(1.0)
    assert linear[2] < 0.99 and linear[3] < 0.99
    assert min(i for i, v in enumerate(linear) if v < 0.999) == 2  # the first layer that changes
    assert "| a / b |" in result.to_markdown()


def test_cli_fine_tunes_each_task_and_writes_table_and_plot(tmp_path: Path, small_stream_file: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cka"
    code = main(["analyze", "cka", "--stream", str(small_stream_file), "--tasks", "colour,count",
                 "--samples-per-task", "6", "--out", str(out), "--runs-dir", str(tmp_path / "runs"), "--quiet",
                 "--set", "train.max_steps=3", "--set", "train.batch_size=8"])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"cka.csv", "cka.md", "cka.json", "cka.png"}
    rows = (out / "cka.csv").read_text().strip().splitlines()
    blocks = json.loads((packaged_tiny_model() / "config.json").read_text())["text_config"]["num_hidden_layers"]
    assert rows[0] == "layer,model_a,model_b,linear_cka,rbf_cka" and len(rows) == 1 + blocks  # layers x 1 pair
    assert "colour / count" in capsys.readouterr().out
