"""Linear and RBF CKA: hand-checkable values and the invariances the definition promises."""

from __future__ import annotations

import pytest
import torch

from citkit.analysis.cka import center_gram, kernel_cka, linear_cka, rbf_cka
from citkit.errors import ConfigError


@pytest.fixture
def features() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    noise = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    return x, x @ torch.randn(6, 4, generator=generator, dtype=torch.float64) + 0.5 * noise[:, :4]


def test_identical_representations_score_one(features) -> None:
    x, _ = features
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert rbf_cka(x, x) == pytest.approx(1.0)


def test_one_dimensional_linear_cka_is_squared_correlation() -> None:
    # centred x = (-1, 0, 1), y = (-4/3, -1/3, 5/3): (x.y)^2 / (|x|^2 |y|^2) = 9 / (2 * 42/9) = 27/28
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[1.0], [2.0], [4.0]])
    assert linear_cka(x, y) == pytest.approx(27 / 28)


def test_linear_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(features) -> None:
    x, y = features
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    base = linear_cka(x, y)
    assert 0.2 < base < 0.99  # a non-trivial value, so the invariances are not vacuous
    assert linear_cka(x @ q, y) == pytest.approx(base)
    assert linear_cka(7.5 * x, 0.01 * y) == pytest.approx(base)
    assert linear_cka(x + 3.0, y) == pytest.approx(base)  # centring removes offsets
    # but not invariant to an arbitrary (non-isotropic) scaling
    assert linear_cka(x * torch.tensor([10.0, 1, 1, 1, 1, 1], dtype=torch.float64), y) != pytest.approx(base)


def test_rbf_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(features) -> None:
    x, y = features
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    base = rbf_cka(x, y)
    assert 0.2 < base < 0.99
    assert rbf_cka(x @ q, y) == pytest.approx(base)
    assert rbf_cka(4.0 * x, y) == pytest.approx(base)  # the median bandwidth scales with the data


def test_linear_cka_equals_kernel_form_with_linear_kernel(features) -> None:
    x, y = features
    assert kernel_cka(x @ x.T, y @ y.T) == pytest.approx(linear_cka(x, y))


def test_center_gram_rows_and_columns_sum_to_zero() -> None:
    gram = torch.arange(16, dtype=torch.float64).reshape(4, 4)
    centred = center_gram(gram)
    assert torch.allclose(centred.sum(0), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(centred.sum(1), torch.zeros(4, dtype=torch.float64), atol=1e-12)


def test_unrelated_features_score_low() -> None:
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(200, 5, generator=generator), torch.randn(200, 5, generator=generator)
    assert linear_cka(x, y) < 0.1


def test_bad_shapes_raise() -> None:
    with pytest.raises(ConfigError, match="same samples"):
        linear_cka(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ConfigError, match="samples, features"):
        rbf_cka(torch.zeros(3), torch.zeros(3))
