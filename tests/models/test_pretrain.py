"""Pretraining the tiny model is deterministic from its seed and enforces its quality gate."""

import pytest
from safetensors.torch import load_file

from citkit.errors import CitkitError
from citkit.models.pretrain import BUILD_THREADS, PretrainConfig, QualityGateError, pretrain_tiny
from citkit.models.tiny import TinyModelConfig

SMALL = dict(model=TinyModelConfig(text_layers=1, vision_layers=1), train_per_task=16, test_per_task=4,
             vision_steps=3, steps=4, batch_size=8)


def test_two_builds_with_one_seed_are_bit_identical_whatever_the_callers_threads(tmp_path) -> None:
    """The build pins its torch threads (the caller's count is restored after), over more than one epoch."""
    import torch

    config = PretrainConfig(**{**SMALL, "steps": 24}, quality_gate=0.0)  # 24 x 8 > 160 samples: two epochs
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        quality = pretrain_tiny(config, tmp_path / "a", progress=False)
        assert torch.get_num_threads() == 2 and quality["threads"] == BUILD_THREADS == 1
        torch.set_num_threads(1)
        pretrain_tiny(config, tmp_path / "b", progress=False)
        assert pretrain_tiny(config, tmp_path / "c", progress=False, threads=2)["threads"] == 2  # asked for
        assert torch.get_num_threads() == 1
        with pytest.raises(CitkitError, match="threads must be >= 1"):
            pretrain_tiny(config, tmp_path / "d", progress=False, threads=0)
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_quality_gate_refuses_a_weak_model_and_saves_nothing(tmp_path) -> None:
    with pytest.raises(QualityGateError, match="below the quality gate"):
        pretrain_tiny(PretrainConfig(**SMALL, quality_gate=90.0), tmp_path / "weak", progress=False)
    assert not (tmp_path / "weak").exists()


def test_world_chooses_tokenizer_and_mixture_and_vocab_size_sizes_the_byte_tokenizer(tmp_path) -> None:
    from citkit.models.loading import load_processor

    pretrain_tiny(PretrainConfig(**SMALL, world="format-shift", quality_gate=0.0), tmp_path / "v1", progress=False)
    words = load_processor(tmp_path / "v1").tokenizer
    assert "circle" in words.get_vocab() and words("zebra", add_special_tokens=False)["input_ids"] == [
        words.unk_token_id]  # closed word-level vocabulary of the first world
    quality = pretrain_tiny(PretrainConfig(**SMALL, vocab_size=300, quality_gate=0.0), tmp_path / "v2",
                            progress=False)
    assert "read-clock" in quality["scores"] and "cell" not in quality["scores"]  # the domain world's mixture
    assert 290 <= len(load_processor(tmp_path / "v2").tokenizer) <= 310
    with pytest.raises(CitkitError, match="pretrain world 'nope' is unknown"):
        PretrainConfig(world="nope")


def test_cli_defaults_are_the_packaged_recipe_and_an_unknown_world_is_one_line(tmp_path, capsys) -> None:
    """`citkit model pretrain` rebuilds the packaged model by default: its defaults are the recipe recorded
    in the packaged quality.json; --world picks the world and a wrong one is refused before anything runs."""
    import json

    from citkit.cli import build_parser, main
    from citkit.models.registry import packaged_tiny_model

    recipe = json.loads((packaged_tiny_model() / "quality.json").read_text())["recipe"]
    recipe.setdefault("group_by_length", False)  # the packaged build predates the option: plain shuffled batches
    args = build_parser().parse_args(["model", "pretrain", "--out", str(tmp_path / "m")])
    assert (args.world, args.steps, args.seed) == (recipe["world"], recipe["steps"], recipe["seed"])
    config = PretrainConfig(world=args.world, steps=args.steps, seed=args.seed)
    assert {k: v for k, v in vars(config).items() if k != "model"} == {k: v for k, v in recipe.items() if k != "model"}
    assert main(["model", "pretrain", "--out", str(tmp_path / "m"), "--world", "nope"]) != 0
    assert "pretrain world 'nope' is unknown" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_group_by_length_builds_from_like_length_batches_and_is_recorded(tmp_path) -> None:
    """The option reaches the engine: other batches, so other weights from the same seed, and the recipe
    in quality.json says which."""
    plain = pretrain_tiny(PretrainConfig(**SMALL, quality_gate=0.0), tmp_path / "plain", progress=False)
    grouped = pretrain_tiny(PretrainConfig(**SMALL, quality_gate=0.0, group_by_length=True), tmp_path / "grouped",
                            progress=False)
    assert plain["recipe"]["group_by_length"] is False and grouped["recipe"]["group_by_length"] is True
    a, b = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "grouped" / "model.safetensors")
    assert any(not a[k].equal(b[k]) for k in a)
