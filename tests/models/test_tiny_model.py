"""The tiny model round-trips through save_pretrained and the Auto classes, and passes its quality gate."""

import json

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, set_seed

from citkit.data.encoding import SampleEncoder, collate
from citkit.data.llava_format import read_test
from citkit.errors import ModelLoadError
from citkit.models.loading import load_model, load_processor
from citkit.models.tiny import TinyModelConfig, build_model, build_processor, build_tokenizer


def test_fresh_tiny_model_round_trips_through_auto_classes(tmp_path, small_stream_file) -> None:
    set_seed(0)
    tokenizer = build_tokenizer(["red", "circle", "what", "?"])
    processor = build_processor(tokenizer)
    model = build_model(TinyModelConfig(text_layers=2), tokenizer).eval()
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path, use_safetensors=True).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    sample = read_test(small_stream_file.parent / "colour" / "test.json")[0]
    batch = collate([SampleEncoder(loaded_processor).encode_prompt(sample)], tokenizer.pad_token_id, "left")
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    assert loaded_processor.tokenizer.get_vocab() == tokenizer.get_vocab()


def test_packaged_model_loads_and_passed_its_quality_gate(tiny_model_path) -> None:
    model = load_model(tiny_model_path)
    processor = load_processor(tiny_model_path)
    quality = json.loads((tiny_model_path / "quality.json").read_text())
    assert quality["mean"] >= quality["quality_gate"] >= 80
    assert model.config.vision_feature_select_strategy == "full"
    assert processor.tokenizer.eos_token == "<|end|>"


def test_missing_model_path_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="not a folder"):
        from citkit.models.loading import check_model_path

        check_model_path(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="cannot load a model"):
        load_model(tmp_path)
