"""The two packaged tiny models and the worlds they were made for, by name."""

import json

import pytest

from citkit.cli import main
from citkit.data.streams import StreamConfig, load_stream
from citkit.data.toy.world import ToyDraw
from citkit.models.loading import ModelConfig, load_processor
from citkit.models.registry import packaged_tiny_model, resolve_model_path


def test_tiny_is_the_open_vocabulary_model_of_the_second_world(tmp_path) -> None:
    path = resolve_model_path(ModelConfig("tiny"), tmp_path)
    tokenizer = load_processor(path).tokenizer
    for text in ("waves", "naïve café 🙂", "seventeen hexagons"):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == text
    config = json.loads((packaged_tiny_model() / "config.json").read_text())
    assert config["text_config"]["num_hidden_layers"] == 8
    quality = json.loads((packaged_tiny_model() / "quality.json").read_text())
    assert quality["mean"] >= quality["quality_gate"] > 0 and quality["recipe"]["world"] == "domains"


def test_the_first_world_and_model_stay_available_by_name(tmp_path) -> None:
    assert load_stream(StreamConfig("toy", toy=ToyDraw(train_per_task=2, test_per_task=1)),
                       tmp_path).task_names[:2] == ["pattern", "chart"]
    assert load_stream(StreamConfig("toy-format", toy=ToyDraw(train_per_task=2, test_per_task=1)),
                       tmp_path).task_names[:2] == ["colour", "shape"]
    v1 = resolve_model_path(ModelConfig("tiny-v1"), tmp_path)
    assert json.loads((packaged_tiny_model("tiny-v1") / "config.json").read_text())[
        "text_config"]["num_hidden_layers"] == 4
    assert load_processor(v1).tokenizer.unk_token_id is not None


def test_the_closed_vocabulary_model_refuses_the_second_world(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its answers ('waves', 'checks', ...) are outside tiny-v1's words: refused with file and record, nothing
    written."""
    runs = tmp_path / "runs"
    code = main(["run", "--stream", "toy", "--model", "tiny-v1", "--runs-dir", str(runs), "--quiet",
                 "--set", "stream.toy.train_per_task=8", "--set", "stream.toy.test_per_task=2"])
    message = capsys.readouterr().err
    assert code == 2 and "cannot be represented" in message and "train.json record" in message, message
    assert not [p for p in runs.iterdir() if not p.name.startswith("_")]
