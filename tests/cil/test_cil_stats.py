"""Gaussian class statistics, seeded pseudo-features, drift compensation: checked against numpy and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from citkit.cil.stats import ClassGaussians, class_statistics, drift_compensation, sample_pseudo_features
from citkit.errors import ConfigError


def features() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 5, generator=g) * torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0]), torch.arange(40) % 2


def test_class_statistics_match_numpy_mean_and_covariance() -> None:
    x, y = features()
    means, covs = class_statistics(x, y, [0, 1], shrinkage=0.0)
    for row, c in enumerate([0, 1]):
        members = x[y == c].double().numpy()
        np.testing.assert_allclose(means[row].numpy(), members.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(covs[row].numpy(), np.cov(members, rowvar=False), rtol=1e-5, atol=1e-6)


def test_shrinkage_moves_the_covariance_toward_a_scaled_identity() -> None:
    x, y = features()
    _, plain = class_statistics(x, y, [0], 0.0)
    _, shrunk = class_statistics(x, y, [0], 0.5)
    target = torch.trace(plain[0]) / 5 * torch.eye(5)
    torch.testing.assert_close(shrunk[0], 0.5 * plain[0] + 0.5 * target, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="shrinkage"):
        class_statistics(x, y, [0], 1.5)
    with pytest.raises(ConfigError, match="at least 2"):
        class_statistics(x[:1], y[:1], [0])


def test_pseudo_features_are_seeded_and_follow_the_gaussian() -> None:
    means = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    covs = torch.stack([torch.tensor([[1.0, 0.8], [0.8, 1.0]]), torch.eye(2) * 0.25])
    labels = torch.tensor([3, 7])
    a, la = sample_pseudo_features(means, covs, labels, 4000, torch.Generator().manual_seed(1))
    b, _ = sample_pseudo_features(means, covs, labels, 4000, torch.Generator().manual_seed(1))
    c, _ = sample_pseudo_features(means, covs, labels, 4000, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert la.tolist() == [3] * 4000 + [7] * 4000
    np.testing.assert_allclose(np.cov(a[:4000].numpy(), rowvar=False), covs[0].numpy(), atol=0.08)
    np.testing.assert_allclose(a[4000:].mean(0).numpy(), means[1].numpy(), atol=0.05)


def test_a_singular_covariance_still_samples() -> None:
    out, _ = sample_pseudo_features(torch.zeros(1, 3), torch.zeros(1, 3, 3) + torch.diag(torch.tensor([1.0, 0, 0])),
                                    torch.tensor([0]), 10, torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()


def test_drift_compensation_modes() -> None:
    means = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    before = torch.tensor([[0.0, 0.1], [10.0, 9.9]])
    after = before + torch.tensor([[1.0, 0.0], [0.0, -2.0]])  # near class 0: +x; near class 1: -y
    torch.testing.assert_close(drift_compensation(means, before, after, "none"), means)
    torch.testing.assert_close(drift_compensation(means, before, after, "mean"), means + torch.tensor([0.5, -1.0]))
    weighted = drift_compensation(means, before, after, "weighted")
    assert weighted[0, 0] > 0.99 and abs(float(weighted[0, 1])) < 0.01  # class 0 follows its neighbour
    assert weighted[1, 1] < 10.0 - 1.98 and abs(float(weighted[1, 0] - 10.0)) < 0.01


def test_class_gaussians_state_round_trip() -> None:
    store = ClassGaussians()
    store.add([2, 3], torch.ones(2, 4), torch.eye(4).repeat(2, 1, 1))
    store.add([0], torch.zeros(1, 4), torch.eye(4)[None])
    again = ClassGaussians()
    again.load_state_dict(store.state_dict())
    assert again.classes == [2, 3, 0] and torch.equal(again.means, store.means)
    with pytest.raises(ConfigError, match="already hold classes"):
        store.add([3], torch.ones(1, 4), torch.eye(4)[None])
