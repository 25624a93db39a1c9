"""The accuracy matrix of a continual run: rows 0..T (row 0 = base model), one column per task."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from citkit.eval.metrics import Metrics, all_metrics
from citkit.io import read_json, write_json, write_text


@dataclass
class AccuracyMatrix:
    """`rows[t][i]`: score (0-100) on task i after training through task t; None = not evaluated yet."""

    task_names: list[str]
    rows: list[list[float | None]] = field(default_factory=list)

    @classmethod
    def empty(cls, task_names: list[str]) -> AccuracyMatrix:
        return cls(list(task_names), [[None] * len(task_names) for _ in range(len(task_names) + 1)])

    def set_row(self, row: int, scores: dict[str, float]) -> None:
        self.rows[row] = [scores.get(name) for name in self.task_names]

    @property
    def finished_rows(self) -> int:
        """Number of complete rows, counting row 0."""
        count = 0
        for row in self.rows:
            if any(v is None for v in row):
                break
            count += 1
        return count

    @property
    def is_complete(self) -> bool:
        return self.finished_rows == len(self.rows)

    def metrics(self) -> Metrics:
        """Metrics of the complete part of the matrix (rows 0..finished)."""
        return all_metrics(self.rows[: self.finished_rows])

    def to_json(self) -> dict[str, object]:
        return {"tasks": self.task_names, "rows": self.rows,
                "row_labels": ["base"] + [f"after {n}" for n in self.task_names]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AccuracyMatrix:
        return cls(list(data["tasks"]), [list(r) for r in data["rows"]])  # type: ignore[arg-type]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["after"] + self.task_names)
        for label, row in zip(["base"] + self.task_names, self.rows, strict=True):
            writer.writerow([label] + ["" if v is None else f"{v:.2f}" for v in row])
        return buffer.getvalue()

    def to_markdown(self) -> str:
        lines = ["| after \\ task | " + " | ".join(self.task_names) + " |",
                 "|---" * (len(self.task_names) + 1) + "|"]
        for label, row in zip(["base (zero-shot)"] + self.task_names, self.rows, strict=True):
            lines.append(f"| {label} | " + " | ".join("" if v is None else f"{v:.1f}" for v in row) + " |")
        return "\n".join(lines)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        write_json(directory / "matrix.json", self.to_json())
        write_text(directory / "matrix.csv", self.to_csv())

    @classmethod
    def load(cls, directory: str | Path) -> AccuracyMatrix:
        return cls.from_json(read_json(Path(directory) / "matrix.json"))
