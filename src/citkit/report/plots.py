"""Plots of a run: the accuracy matrix as a heatmap."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from citkit.eval.matrix import AccuracyMatrix  # noqa: E402
from citkit.io import atomic_write  # noqa: E402


def plot_matrix(matrix: AccuracyMatrix, path: str | Path, title: str = "") -> Path:
    """Heatmap of A[t][i] (rows: after task t, row 0 = base; columns: test task i)."""
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix.rows], dtype=float)
    labels = ["base"] + matrix.task_names
    size = 1.0 + 0.7 * len(matrix.task_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(values, vmin=0, vmax=100, cmap="viridis")
    ax.set_xticks(range(len(matrix.task_names)), matrix.task_names, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), [f"after {n}" if i else n for i, n in enumerate(labels)])
    ax.set_xlabel("test task")
    for (r, c), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(c, r, f"{v:.0f}", ha="center", va="center", color="white" if v < 60 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, label="score")
    ax.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return Path(path)
