"""Centred kernel alignment (Kornblith et al. 2019): how similar two sets of representations are.

Both inputs hold the representations of the same n inputs, one row per input: X is (n, d1), Y is
(n, d2), and d1 need not equal d2. Linear CKA is

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F * ||Yc^T Yc||_F)

with column-centred Xc, Yc. It is 1 for identical representations and invariant to orthogonal
transforms and isotropic scaling of either side (not to arbitrary invertible maps). The kernel form
replaces the linear Gram matrices X X^T with any kernel inside HSIC; RBF CKA uses a Gaussian kernel
whose bandwidth is a multiple of the median pairwise distance of each side, so it too is invariant
to isotropic scaling. All arithmetic is float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from citkit.errors import ConfigError


def _as_matrix(x: Tensor, name: str) -> Tensor:
    if x.dim() != 2:
        raise ConfigError(f"CKA needs {name} as a (samples, features) matrix, got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ConfigError(f"CKA needs at least 2 samples, {name} has {x.shape[0]}")
    return x.detach().to(torch.float64)


def _check_pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = _as_matrix(x, "X"), _as_matrix(y, "Y")
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"CKA compares the same samples: X has {x.shape[0]} rows, Y has {y.shape[0]}")
    return x, y


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of two (n, d) representation matrices of the same n inputs; in [0, 1]."""
    x, y = _check_pair(x, y)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def center_gram(gram: Tensor) -> Tensor:
    """H K H with H = I - 11^T / n (double centring of an (n, n) kernel matrix)."""
    gram = gram - gram.mean(dim=0, keepdim=True)
    return gram - gram.mean(dim=1, keepdim=True)


def rbf_gram(x: Tensor, bandwidth_scale: float = 1.0) -> Tensor:
    """Gaussian kernel exp(-||xi - xj||^2 / (2 sigma^2)), sigma = scale x median pairwise distance."""
    sq = torch.cdist(x, x).pow(2)  # (n, n)
    off_diagonal = sq[~torch.eye(len(x), dtype=torch.bool)]
    median = off_diagonal.sqrt().median()
    if median <= 0:  # all samples identical: no structure to compare
        return torch.ones_like(sq)
    sigma = bandwidth_scale * median
    return torch.exp(-sq / (2 * sigma**2))


def kernel_cka(gram_x: Tensor, gram_y: Tensor) -> float:
    """CKA of two (n, n) kernel matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))."""
    kx, ky = center_gram(gram_x), center_gram(gram_y)
    cross = (kx * ky).sum()
    norms = torch.linalg.matrix_norm(kx) * torch.linalg.matrix_norm(ky)
    return float(cross / norms) if norms > 0 else 0.0


def rbf_cka(x: Tensor, y: Tensor, bandwidth_scale: float = 1.0) -> float:
    """RBF-kernel CKA with a median-distance bandwidth on each side; in [0, 1]."""
    if bandwidth_scale <= 0:
        raise ConfigError(f"rbf_cka bandwidth_scale must be > 0, got {bandwidth_scale}")
    x, y = _check_pair(x, y)
    return kernel_cka(rbf_gram(x, bandwidth_scale), rbf_gram(y, bandwidth_scale))
