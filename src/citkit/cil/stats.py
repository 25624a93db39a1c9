"""Per-class Gaussian statistics of features: estimation, seeded pseudo-feature sampling, drift compensation.

Pure functions and one small container, shared by SLCA-style classifier alignment and DESIRE. A class c
is summarised by the mean mu_c and covariance Sigma_c of its training images' pooled features; the head
is later re-trained on features drawn from N(mu_c, Sigma_c) for every seen class (no image is kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from citkit.errors import ConfigError

DriftMode = Literal["none", "mean", "weighted"]


def class_statistics(features: Tensor, labels: Tensor, classes: list[int],
                     shrinkage: float = 0.0) -> tuple[Tensor, Tensor]:
    """Means (k, d) and covariances (k, d, d) of `features` (n, d) per class in `classes`.

    The covariance is the unbiased sample covariance (numpy's `np.cov(x, rowvar=False)`), shrunk toward a
    scaled identity: (1 - s) Sigma + s * (trace(Sigma) / d) I, so it stays invertible with fewer images than
    dimensions. `shrinkage` = 0 returns the sample covariance itself."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ConfigError(f"covariance shrinkage must be in [0, 1], got {shrinkage}")
    features = features.double()
    means, covariances = [], []
    for c in classes:
        members = features[labels == c]  # (n_c, d)
        if len(members) < 2:
            raise ConfigError(f"class {c} has {len(members)} training feature(s); a covariance needs at least 2")
        mean = members.mean(0)
        centred = members - mean
        covariance = centred.T @ centred / (len(members) - 1)  # (d, d)
        dim = covariance.shape[0]
        target = shrinkage * torch.trace(covariance) / dim * torch.eye(dim, dtype=covariance.dtype)
        covariance = (1 - shrinkage) * covariance + target
        means.append(mean)
        covariances.append(covariance)
    return torch.stack(means).float(), torch.stack(covariances).float()


def sample_pseudo_features(means: Tensor, covariances: Tensor, labels: Tensor, per_class: int,
                           generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`per_class` draws from N(mu_c, Sigma_c) for every class; returns (k * per_class, d) and their labels.

    Draws are mean + z L^T with L the Cholesky factor (a 1e-6 * mean-variance ridge is added if Sigma is
    singular) and z ~ N(0, I) from `generator`, so the same generator state gives the same features."""
    dim = means.shape[1]
    out, out_labels = [], []
    for mean, covariance, label in zip(means.double(), covariances.double(), labels.tolist(), strict=True):
        ridge = 1e-6 * float(torch.trace(covariance)) / dim + 1e-12
        factor, info = torch.linalg.cholesky_ex(covariance)
        if int(info) != 0:
            factor = torch.linalg.cholesky(covariance + ridge * torch.eye(dim, dtype=covariance.dtype))
        z = torch.randn(per_class, dim, generator=generator, dtype=torch.float64)
        out.append(mean + z @ factor.T)
        out_labels.append(torch.full((per_class,), int(label), dtype=torch.long))
    return torch.cat(out).float(), torch.cat(out_labels)


def drift_compensation(means: Tensor, before: Tensor, after: Tensor, mode: DriftMode = "weighted") -> Tensor:
    """Move stored class means by the feature drift measured on current data (Yu et al. 2020, SDC).

    `before` and `after` (n, d) are the same current images' features under the old and the new model.
    'mean': every class moves by the average drift. 'weighted': class c moves by the drifts of current
    images weighted by exp(-||before_i - mu_c||^2 / (2 sigma^2)); sigma is the median distance between
    current features and the stored means (a data-driven bandwidth, our choice; SDC fixes sigma = 0.3 on
    normalised embeddings). 'none': unchanged."""
    if mode == "none" or len(means) == 0:
        return means.clone()
    drift = (after - before).double()  # (n, d)
    if mode == "mean":
        return (means.double() + drift.mean(0)).float()
    if mode != "weighted":
        raise ConfigError(f"drift compensation {mode!r}: use 'none', 'mean' or 'weighted'")
    distances = torch.cdist(means.double(), before.double())  # (k, n)
    sigma = distances.median().clamp(min=1e-8)
    weights = torch.softmax(-distances.square() / (2 * sigma ** 2), dim=1)  # (k, n), rows sum to one
    return (means.double() + weights @ drift).float()


@dataclass
class ClassGaussians:
    """Stored mu_c, Sigma_c of every seen class (rows in the order classes were added)."""

    classes: list[int] = field(default_factory=list)
    means: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    covariances: Tensor = field(default_factory=lambda: torch.zeros(0, 0, 0))

    def add(self, classes: list[int], means: Tensor, covariances: Tensor) -> None:
        known = set(self.classes) & set(classes)
        if known:
            raise ConfigError(f"class statistics already hold classes {sorted(known)}")
        self.classes += list(classes)
        self.means = means.clone() if self.means.numel() == 0 else torch.cat([self.means, means])
        self.covariances = (covariances.clone() if self.covariances.numel() == 0
                            else torch.cat([self.covariances, covariances]))

    def state_dict(self, prefix: str = "gaussians.") -> dict[str, Tensor]:
        if not self.classes:
            return {}
        return {prefix + "classes": torch.tensor(self.classes, dtype=torch.long), prefix + "means": self.means,
                prefix + "covariances": self.covariances}

    def load_state_dict(self, state: dict[str, Tensor], prefix: str = "gaussians.") -> None:
        if prefix + "classes" not in state:
            self.classes, self.means, self.covariances = [], torch.zeros(0, 0), torch.zeros(0, 0, 0)
            return
        self.classes = state[prefix + "classes"].tolist()
        self.means, self.covariances = state[prefix + "means"].clone(), state[prefix + "covariances"].clone()
