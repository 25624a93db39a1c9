"""The tiny model's byte-level tokenizer: any UTF-8 text round-trips, answers are labelled exactly."""

import numpy as np
import pytest
from PIL import Image

from citkit.data.encoding import IGNORE_INDEX, SampleEncoder
from citkit.data.samples import Sample, Turn
from citkit.models.tiny import build_processor
from citkit.models.tiny_tokenizer import random_pieces, train_byte_tokenizer, world_corpus


@pytest.fixture(scope="module")
def tokenizer():
    return train_byte_tokenizer(world_corpus(per_task=40), vocab_size=400)


def _random_text(rng: np.random.Generator) -> str:
    """Characters from every UTF-8 length class, spaces, digits and punctuation (no surrogates)."""
    ranges = ((0x20, 0x7E), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF))
    out = []
    for _ in range(int(rng.integers(1, 30))):
        low, high = ranges[int(rng.integers(len(ranges)))]
        out.append(chr(int(rng.integers(low, high + 1))))
    return "".join(out)


def test_arbitrary_utf8_round_trips_without_unknown_tokens(tokenizer) -> None:
    rng = np.random.default_rng(0)
    texts = [_random_text(rng) for _ in range(500)] + ["naïve café 東京 🙂", "  two  spaces\tand a tab\n", "x" * 300]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text


def test_digits_are_one_token_each_and_world_words_are_merged(tokenizer) -> None:
    assert tokenizer.tokenize("2026") == ["2", "0", "2", "6"]
    assert len(tokenizer.tokenize("what colour is it ?")) < len("what colour is it ?") / 2


def test_the_same_corpus_trains_the_same_tokenizer() -> None:
    a = train_byte_tokenizer(world_corpus(per_task=20), vocab_size=300)
    b = train_byte_tokenizer(world_corpus(per_task=20), vocab_size=300)
    assert a.get_vocab() == b.get_vocab() and a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()


def test_the_packaged_recipe_learns_the_packaged_tokenizer_byte_for_byte(tmp_path) -> None:
    """The first step of `citkit model pretrain` (its default recipe) reproduces the committed tokenizer.json; a
    change to the corpus (a toy variant added to it, a generator drawing other text) fails here, not after a
    17-minute rebuild."""
    from citkit.models.pretrain import PretrainConfig
    from citkit.models.registry import packaged_tiny_model

    recipe = PretrainConfig()
    train_byte_tokenizer(world_corpus(recipe.seed), recipe.vocab_size).save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").read_bytes() == (packaged_tiny_model() / "tokenizer.json").read_bytes()


def test_answer_labels_cover_exactly_the_answer_and_the_end_token(tokenizer, tmp_path) -> None:
    """No space separates the role markers from the text, so the label span cannot be off by one."""
    Image.new("RGB", (48, 48), (10, 20, 30)).save(tmp_path / "x.png")
    encoder = SampleEncoder(build_processor(tokenizer))
    for answer in ("stripes", "12", "a red circle", "héllo 🙂"):
        sample = Sample(f"s-{answer}", (tmp_path / "x.png",),
                        (Turn("user", "<image>\nwhat is this ?"), Turn("assistant", answer)))
        encoded = encoder.encode_train(sample)
        labelled = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE_INDEX]
        assert tokenizer.decode(labelled[:-1]) == answer
        assert labelled[-1] == tokenizer.convert_tokens_to_ids("<|end|>")


def test_random_pieces_are_drawn_from_the_vocabulary(tokenizer) -> None:
    text = random_pieces(tokenizer, np.random.default_rng(1), 12)
    assert text and tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False)["input_ids"]
