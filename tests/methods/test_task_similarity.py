"""TIR task similarity (citkit/methods/task_similarity.py): hand-made embeddings, then the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from citkit.errors import ConfigError, ResumeMismatchError
from citkit.methods.task_similarity import (
    SimilarityTracker,
    TIRConfig,
    combined_similarity,
    cosine_matrix,
    standardized_similarity,
    task_embeddings,
)


def test_cosine_matrix_by_hand() -> None:
    cosine = cosine_matrix(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 3.0]]))
    root = 1 / math.sqrt(2)
    torch.testing.assert_close(cosine, torch.tensor([[1.0, root, 0.0], [root, 1.0, root], [0.0, root, 1.0]]))


def test_standardized_similarity_z_scores_the_upper_triangle() -> None:
    # pairs (0,1)=1, (0,2)=0, (1,2)=0: mean 1/3, population std sqrt(2)/3, z = sqrt(2) and -1/sqrt(2)
    cosine = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    similarity = standardized_similarity(cosine)
    high, low = torch.sigmoid(torch.tensor(math.sqrt(2))), torch.sigmoid(torch.tensor(-1 / math.sqrt(2)))
    expected = torch.tensor([[1.0, high, low], [high, 1.0, low], [low, low, 1.0]])
    torch.testing.assert_close(similarity, expected)


def test_a_single_pair_has_similarity_one_half() -> None:
    assert standardized_similarity(torch.tensor([[1.0, 0.3], [0.3, 1.0]]))[0, 1].item() == 0.5


def test_identical_tasks_are_near_one_and_modalities_multiply() -> None:
    # eight orthogonal tasks and a ninth identical to the first: 36 pairs, one at cosine 1, 35 at 0,
    # so the identical pair's z-score is sqrt(35) in every modality
    embeddings = torch.cat([torch.eye(8), torch.eye(8)[:1]])  # (9 tasks, 8)
    combined, per_modality = combined_similarity({"image": embeddings, "instruction": embeddings,
                                                  "answer": embeddings})
    expected = torch.sigmoid(torch.tensor(math.sqrt(35.0))) ** 3
    assert combined[8, 0].item() == pytest.approx(expected.item(), rel=1e-5)
    assert combined[8, 0] > 0.99
    assert combined[8, :8].argmax().item() == 0  # the identical task is the most similar
    assert per_modality["image"][8, 1].item() < 0.5


def test_tir_config_rejects_unknown_modalities() -> None:
    with pytest.raises(ConfigError, match="audio"):
        TIRConfig(modalities=("image", "audio"))


def test_embeddings_of_the_tiny_model(tiny_model, toy_tasks) -> None:
    config = TIRConfig(enabled=True, max_samples=8)
    first = task_embeddings(tiny_model, toy_tasks[0], config)
    again = task_embeddings(tiny_model, toy_tasks[0], config)
    other = task_embeddings(tiny_model, toy_tasks[1], config)
    assert set(first) == {"image", "instruction", "answer"}
    assert first["image"].shape == (64,)  # the vision tower's hidden size
    assert first["instruction"].shape == (128,)  # the language model's hidden size
    for modality in first:
        assert first[modality].norm().item() == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(first[modality], again[modality])
    # colour and shape tasks ask different questions and give different answers
    assert torch.dot(first["instruction"], other["instruction"]) < 0.999
    assert torch.dot(first["answer"], other["answer"]) < 0.999


def test_tracker_adds_tasks_in_stream_order(tiny_model, toy_tasks) -> None:
    tracker = SimilarityTracker(TIRConfig(enabled=True, max_samples=4))
    assert tracker.add(toy_tasks[0], tiny_model).shape == (0,)
    to_first = tracker.add(toy_tasks[1], tiny_model)
    assert to_first.tolist() == pytest.approx([0.125])  # one pair: 0.5 in each of three modalities
    assert tracker.extra_state()["similarity"]["tasks"] == [toy_tasks[0].name, toy_tasks[1].name]
    with pytest.raises(ResumeMismatchError):
        tracker.add(toy_tasks[3], tiny_model)  # task 2 was skipped

    restored = SimilarityTracker(tracker.config)
    restored.load_state_dict(tracker.state_dict())
    restored.load_extra_state(tracker.extra_state())
    assert restored.task_names == tracker.task_names
    torch.testing.assert_close(restored.embeddings, tracker.embeddings)
    assert restored.add(toy_tasks[2], tiny_model).shape == (2,)


def test_text_features_from_a_separate_encoder(tmp_path, tiny_model, toy_tasks, tiny_processor) -> None:
    from transformers import LlamaConfig, LlamaModel

    tokenizer = tiny_processor.tokenizer
    encoder = LlamaModel(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                     pad_token_id=tokenizer.pad_token_id))
    encoder.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = TIRConfig(enabled=True, max_samples=4, modalities=("instruction",), text_features=str(tmp_path))
    embedding = task_embeddings(tiny_model, toy_tasks[0], config)
    assert embedding["instruction"].shape == (32,)  # the encoder's hidden size, not the LLM's
