"""Answers a tokenizer cannot represent: found with file, record and share; a run refuses them unless allowed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from citkit.cli import main
from citkit.data.llava_format import check_file, read_test, read_train
from citkit.data.vocabulary import check_answers
from citkit.models.loading import load_processor
from citkit.models.registry import packaged_tiny_model

WORDS = ["how", "many", "?", "what", "colour", "seven", "red"]  # the closed vocabulary; "six" is not in it


def word_level(words: list[str], specials: dict[str, int] | None = None) -> PreTrainedTokenizerFast:
    """A closed word-level tokenizer (lower-cased, split on whitespace), like the first tiny model's."""
    specials = specials or {"<pad>": 0, "<unk>": 1}
    free = (i for i in range(10_000) if i not in specials.values())
    vocab = specials | {w: next(free) for w in words}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    others = [t for t in specials if t not in ("<pad>", "<unk>")]
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                   additional_special_tokens=others)


def byte_level() -> PreTrainedTokenizerFast:
    """A small byte-level BPE: every text has a spelling."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders, trainers

    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["how many objects ?", "seven red circles"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def dataset(folder: Path, answers: list[str]) -> tuple[Path, Path]:
    """train.json with one record per answer, test.json with the same answers as references."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 48), "white").save(folder / "img.png")
    train = [{"id": f"t{i}", "image": "img.png", "conversations": [
        {"from": "human", "value": "<image>\nhow many ?"}, {"from": "gpt", "value": a}]} for i, a in enumerate(answers)]
    test = [{"question_id": f"q{i}", "image": "img.png", "text": "how many ?", "answer": a}
            for i, a in enumerate(answers)]
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))
    return folder / "train.json", folder / "test.json"


def test_unknown_words_and_text_that_does_not_round_trip_are_found(tmp_path: Path) -> None:
    train, test = dataset(tmp_path, ["seven", "six", "Seven", "red seven", "six sixty red"])
    report = check_answers([*read_train(train), *read_test(test)], word_level(WORDS))
    lines = report.lines()
    assert [p.where for p in report.problems] == [
        f"{train} record 1 (id 't1')", f"{train} record 2 (id 't2')", f"{train} record 4 (id 't4')",
        f"{test} record 1 (id 'q1')", f"{test} record 2 (id 'q2')", f"{test} record 4 (id 'q4')"]
    assert lines[0] == (f"{train} record 1 (id 't1'): answer 'six' cannot be represented by the tokenizer: "
                        "'six' encode(s) to the unknown token '<unk>'")
    assert "'Seven' cannot be represented by the tokenizer: it decodes back as 'seven'" in lines[1]  # lower-cased
    assert "'six', 'sixty' encode(s) to the unknown token" in lines[2]  # the words at fault, not 'red'
    assert lines[-2:] == [f"{train}: 3 of 5 answers (60.0%) cannot be represented by the tokenizer",
                          f"{test}: 3 of 5 answers (60.0%) cannot be represented by the tokenizer"]
    assert report.answers == 10 and report.per_file() == {str(train): (3, 5), str(test): (3, 5)}


def test_a_byte_level_tokenizer_represents_any_text(tmp_path: Path) -> None:
    train, _ = dataset(tmp_path, ["six", "Seven", "größe 東京 ✓", "  spaced   out  "])
    assert check_answers(read_train(train), byte_level()).problems == []
    assert len(check_answers(read_train(train), word_level(WORDS)).problems) == 4


def test_check_file_with_a_tokenizer_adds_the_answer_lines(tmp_path: Path) -> None:
    train, _ = dataset(tmp_path, ["seven", "six"])
    assert check_file(train) == []
    lines = check_file(train, tokenizer=word_level(WORDS))
    assert len(lines) == 2 and "record 1 (id 't1')" in lines[0] and "1 of 2 answers (50.0%)" in lines[1]


@pytest.fixture(scope="module")
def closed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged tiny model with a closed word-level tokenizer over WORDS (its special tokens keep their ids),
    so the test does not depend on which tokenizer the packaged model has."""
    folder = tmp_path_factory.mktemp("closed") / "model"
    shutil.copytree(packaged_tiny_model(), folder)
    processor = load_processor(folder)
    old = processor.tokenizer
    specials = {token: old.convert_tokens_to_ids(token) for token in old.all_special_tokens}
    specials.setdefault("<pad>", max(specials.values()) + 1)
    specials.setdefault("<unk>", max(specials.values()) + 1)
    tokenizer = word_level(WORDS, specials)
    tokenizer.eos_token = old.eos_token
    tokenizer.chat_template = old.chat_template
    processor.tokenizer = tokenizer
    processor.save_pretrained(folder)
    vocab_size = json.loads((folder / "config.json").read_text())["text_config"]["vocab_size"]
    assert len(tokenizer) <= vocab_size
    return folder


def stream(tmp_path: Path, answers: list[str]) -> Path:
    dataset(tmp_path / "counting", answers)
    (tmp_path / "digits.yaml").write_text("name: digits\ntasks:\n  - {name: counting, train: counting/train.json, "
                                          "test: counting/test.json, image_root: counting, max_new_tokens: 3}\n")
    return tmp_path / "digits.yaml"


def test_data_check_with_a_model_lists_answers_it_cannot_represent(tmp_path: Path, closed_model: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = stream(tmp_path, ["seven", "six", "seven", "seven"])
    assert main(["data", "check", str(path), "--runs-dir", str(tmp_path / "runs")]) == 0  # no model: clean
    capsys.readouterr()
    assert main(["data", "check", str(path), "--model", str(closed_model), "--runs-dir", str(tmp_path / "runs")]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert "counting/train.json record 1 (id 't1'): answer 'six'" in lines[0]
    assert "counting/train.json: 1 of 4 answers (25.0%)" in lines[1]
    assert "counting/test.json record 1 (id 'q1'): answer 'six'" in lines[2]
    assert lines[-1].startswith("4 problem(s)")


def test_run_refuses_answers_outside_a_closed_vocabulary_unless_allowed(tmp_path: Path, closed_model: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = stream(tmp_path, ["seven", "six", "seven", "seven"])
    runs = tmp_path / "runs"
    common = ["run", "--stream", str(path), "--model", str(closed_model), "--runs-dir", str(runs), "--quiet",
              "--set", "train.max_steps=1", "--set", "train.batch_size=2"]
    assert main(common) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("citkit: error: 2 of 8 answers (25.0%) cannot be represented")
    assert "counting/train.json record 1 (id 't1'): answer 'six'" in error[0]  # file and record
    assert "unknown token" in error[0] and "stream.allow_unknown_tokens=true" in error[0]
    assert not [p for p in runs.glob("*") if not p.name.startswith("_")]  # nothing written
    assert main([*common, "--set", "stream.allow_unknown_tokens=true"]) == 0  # the option lets it run
    assert (runs / "digits-lora-ft-seed0" / "matrix.json").is_file()
    clean = stream(tmp_path / "clean", ["seven"] * 4)  # a representable stream needs no option
    assert main(["run", "--stream", str(clean), "--model", str(closed_model), "--runs-dir", str(runs), "--quiet",
                 "--set", "train.max_steps=1", "--name", "clean"]) == 0
