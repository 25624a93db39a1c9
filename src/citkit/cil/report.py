"""Reports of class-incremental runs: one run's markdown, and the per-stage accuracy plot of many methods."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from citkit.cil.metrics import METRIC_LABELS, CILMetrics, StageResult  # noqa: E402
from citkit.eval.matrix import AccuracyMatrix  # noqa: E402
from citkit.io import atomic_write, write_text  # noqa: E402


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def write_run_report(path: Path, method: str, matrix: AccuracyMatrix, stages: list[StageResult],
                     metrics: CILMetrics) -> Path:
    lines = [f"# {method}: class-incremental run", "",
             "Pooled accuracy over every test image of every seen class, per stage:", "",
             "| stage | pooled accuracy | old->new % |", "|---|---|---|"]
    lines += [f"| {s.stage} | {s.pooled:.1f} | {_fmt(s.old_to_new)} |" for s in stages]
    lines += ["", "Task matrix (accuracy on task i's classes after stage t, predicting among all seen classes; "
              "no zero-shot row in CIL):", "", matrix.to_markdown(), "", "| metric | value |", "|---|---|"]
    lines += [f"| {METRIC_LABELS[k]} | {_fmt(v)} |" for k, v in metrics.as_dict().items()]
    return write_text(path / "report.md", "\n".join(lines) + "\n")


def plot_stages(curves: dict[str, list[float]], path: Path, title: str = "",
                errors: dict[str, list[float]] | None = None) -> Path:
    """Pooled accuracy per stage, one line per method (with a band of +- one standard deviation if given)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for i, (label, values) in enumerate(curves.items()):
        stages = list(range(1, len(values) + 1))
        style = ("-", "--", ":", "-.")[i // 20 % 4]
        colour = plt.cm.tab20(i % 20)  # 20 distinct colours before a line style repeats one
        ax.plot(stages, values, marker="o", markersize=3, linestyle=style, color=colour, label=label)
        if errors and label in errors:
            low = [v - e for v, e in zip(values, errors[label], strict=True)]
            high = [v + e for v, e in zip(values, errors[label], strict=True)]
            ax.fill_between(stages, low, high, color=colour, alpha=0.12)
    longest = max((len(v) for v in curves.values()), default=0)
    ax.set_xticks(range(1, longest + 1))
    ax.set_xlabel("stage (tasks seen)")
    ax.set_ylabel("pooled accuracy on all seen classes (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path
