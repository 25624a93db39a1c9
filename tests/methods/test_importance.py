"""Pure importance math (citkit/methods/_importance.py) on hand-sized models and hand-computed numbers."""

from __future__ import annotations

import weakref
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from citkit.errors import ConfigError
from citkit.methods._importance import (
    answer_logit_mask,
    fisher_diagonal,
    merge_importance,
    normalize_importance,
    output_sensitivity,
    quadratic_penalty,
    scale_by_owner,
)


class Regression(nn.Module):
    """loss = mean over the batch of 0.5 * (w . x - y)^2; records a weak reference to each loss."""

    def __init__(self, weight: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(weight))
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        self.losses: list[weakref.ref] = []

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> SimpleNamespace:
        loss = (0.5 * (input_ids @ self.w - targets).square()).mean()
        self.losses.append(weakref.ref(loss))
        return SimpleNamespace(loss=loss)


class Logits(nn.Module):
    """logits = features @ W^T, shape (batch, seq, vocab)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.eye(2))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=features @ self.w.T)


# three samples: residuals 1, 1, 2 at w = (1, 2); per-sample gradients (1, 0), (0, 1), (2, 2)
X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
Y = torch.tensor([0.0, 1.0, 1.0])


def regression_batches(batch_size: int):
    for start in range(0, 3, batch_size):
        yield {"input_ids": X[start:start + batch_size], "targets": Y[start:start + batch_size]}


def test_fisher_is_mean_squared_gradient_per_sample_or_per_batch() -> None:
    model = Regression([1.0, 2.0])
    per_sample = fisher_diagonal(model, regression_batches(1))
    assert set(per_sample) == {"w"}  # frozen parameters get no importance
    torch.testing.assert_close(per_sample["w"], torch.tensor([5 / 3, 5 / 3]))  # mean of (1,0,4), (0,1,4)
    whole = fisher_diagonal(model, regression_batches(3))  # batch-mean gradient (1, 1), squared
    torch.testing.assert_close(whole["w"], torch.tensor([1.0, 1.0]))
    assert model.w.grad is None  # autograd.grad: the optimizer's .grad fields are untouched
    assert model.training  # the train/eval mode is restored


def test_fisher_holds_one_batch_graph_at_a_time() -> None:
    """Bound tested: when batch k+1 is drawn, nothing of batch k's forward (its loss, hence its graph)
    is alive, so peak memory is one batch's activations plus one float32 sum per trainable parameter,
    whatever the number of batches. Bytes are measured in test_importance_memory.py."""
    model = Regression([1.0, 2.0])
    alive_when_drawn: list[int] = []

    def batches():
        for _ in range(50):
            alive_when_drawn.append(sum(ref() is not None for ref in model.losses))
            yield {"input_ids": X[:2], "targets": Y[:2]}

    fisher = fisher_diagonal(model, batches())
    assert alive_when_drawn == [0] * 50
    assert len(model.losses) == 50 and all(ref() is None for ref in model.losses)
    assert [tuple(v.shape) for v in fisher.values()] == [(2,)]  # the state does not grow with batches


def test_answer_logit_mask_is_shifted_like_the_lm_loss() -> None:
    labels = torch.tensor([[-100, -100, 5, 6], [-100, 7, -100, -100]])
    expected = torch.tensor([[False, True, True, False], [True, False, False, False]])
    assert torch.equal(answer_logit_mask(labels), expected)


def test_output_sensitivity_by_hand() -> None:
    # one sample, two positions: x0 = (1, 0) -> ||logits||^2 = 1, grad 2 * l x^T = [[2, 0], [0, 0]];
    # x1 = (0, 2) -> ||logits||^2 = 4, grad [[0, 0], [0, 8]]. Only position 0 predicts an answer token.
    batch = {"input_ids": torch.zeros(1, 2, dtype=torch.long),
             "attention_mask": torch.ones(1, 2, dtype=torch.long),
             "features": torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]), "labels": torch.tensor([[-100, 3]])}
    answer = output_sensitivity(Logits(), [batch], positions="answer")
    torch.testing.assert_close(answer["w"], torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    every = output_sensitivity(Logits(), [batch], positions="all")  # mean over both positions
    torch.testing.assert_close(every["w"], torch.tensor([[1.0, 0.0], [0.0, 4.0]]))


def test_normalize_sums_to_one_over_all_parameters() -> None:
    normalized = normalize_importance({"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([4.0])})
    torch.testing.assert_close(normalized["a"], torch.tensor([0.125, 0.375]))
    torch.testing.assert_close(normalized["b"], torch.tensor([0.5]))


def test_merge_max_and_sum_track_owners() -> None:
    first, owner = merge_importance({}, {}, {"w": torch.tensor([1.0, 5.0, 2.0])}, 0, "max")
    assert torch.equal(owner["w"], torch.zeros(3, dtype=torch.int16))
    second = {"w": torch.tensor([3.0, 1.0, 2.0])}
    third = {"w": torch.tensor([1.0, 5.5, 10.0])}

    merged, owner_max = merge_importance(first, owner, second, 1, "max")
    # a tie (third entry) keeps the old owner
    assert merged["w"].tolist() == [3.0, 5.0, 2.0] and owner_max["w"].tolist() == [1, 0, 0]
    merged, owner_max = merge_importance(merged, owner_max, third, 2, "max")
    assert merged["w"].tolist() == [3.0, 5.5, 10.0] and owner_max["w"].tolist() == [1, 2, 2]

    summed, owner_sum = merge_importance(first, owner, second, 1, "sum")
    assert summed["w"].tolist() == [4.0, 6.0, 4.0] and owner_sum["w"].tolist() == [1, 0, 0]
    summed, owner_sum = merge_importance(summed, owner_sum, third, 2, "sum")
    # task 2 owns an entry only where it adds more than all earlier tasks together: 5.5 < 6 keeps 0
    assert summed["w"].tolist() == [5.0, 11.5, 14.0] and owner_sum["w"].tolist() == [1, 0, 2]

    with pytest.raises(ConfigError, match="mean"):
        merge_importance(first, owner, second, 1, "mean")  # type: ignore[arg-type]


def test_scale_by_owner_uses_the_owner_similarity() -> None:
    scaled = scale_by_owner({"w": torch.ones(3)}, {"w": torch.tensor([0, 1, 0], dtype=torch.int16)},
                            torch.tensor([0.25, 0.9]))
    torch.testing.assert_close(scaled["w"], torch.tensor([0.75, 0.1, 0.75]))


def test_quadratic_penalty_is_zero_at_the_anchor_and_grows() -> None:
    model = Regression([1.0, 2.0])
    anchor = {"w": model.w.detach().clone()}
    importance = {"w": torch.tensor([1.0, 2.0])}
    assert quadratic_penalty(model, anchor, importance).item() == 0.0
    with torch.no_grad():
        model.w += torch.tensor([1.0, 0.5])
    assert quadratic_penalty(model, anchor, importance).item() == pytest.approx(1.5)  # 1 * 1 + 2 * 0.25
    with torch.no_grad():
        model.w += torch.tensor([1.0, 0.5])
    assert quadratic_penalty(model, anchor, importance).item() == pytest.approx(6.0)  # 4x for twice the move
