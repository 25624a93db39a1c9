"""Answers a model's tokenizer cannot represent: the model could never produce them.

A closed word-level vocabulary (the first tiny model's) maps every unseen word to the unknown token; a
tokenizer may also normalise text (lower-case it, drop characters) so that what it decodes is not what
the data says. Either way training teaches the model to produce something else and the scorer can
never match: a run scores 0 on such answers without any error. So a run refuses to start when some
answers cannot be represented (`stream.allow_unknown_tokens` lets it run), and `citkit data check
--model M` lists every such record with its file and the share of each file's answers.

An answer is *representable* when its token ids hold no unknown token and decode back to the same
text (whitespace runs compared as one space, ends stripped). The test works with any Hugging Face
tokenizer: word-level, BPE, SentencePiece or byte-level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from citkit.data.samples import Sample


@dataclass(frozen=True)
class AnswerProblem:
    """One answer of one record that the tokenizer cannot represent, and why."""

    where: str       # 'FILE record N (id X)'
    file: str
    answer: str
    problem: str     # e.g. "'six' encodes to the unknown token '<unk>'"

    def line(self) -> str:
        return f"{self.where}: answer {self.answer!r} cannot be represented by the tokenizer: {self.problem}"


@dataclass
class VocabularyReport:
    """Unrepresentable answers, and how many answers each file holds (for the shares)."""

    problems: list[AnswerProblem] = field(default_factory=list)
    answers_per_file: dict[str, int] = field(default_factory=dict)

    @property
    def answers(self) -> int:
        return sum(self.answers_per_file.values())

    def per_file(self) -> dict[str, tuple[int, int]]:
        """file -> (unrepresentable answers, all answers), for files that have any."""
        counts: dict[str, int] = {}
        for problem in self.problems:
            counts[problem.file] = counts.get(problem.file, 0) + 1
        return {file: (n, self.answers_per_file[file]) for file, n in counts.items()}

    def lines(self) -> list[str]:
        """One line per unrepresentable answer, then one line per file with its share."""
        shares = [f"{file}: {n} of {total} answers ({100 * n / total:.1f}%) cannot be represented by the tokenizer"
                  for file, (n, total) in self.per_file().items()]
        return [p.line() for p in self.problems] + shares

    def refusal(self, model: str) -> str:
        """The one-line reason a run does not start."""
        first = self.problems[0]
        files = "; ".join(f"{file} {n}/{total} ({100 * n / total:.1f}%)"
                          for file, (n, total) in self.per_file().items())
        return (f"{len(self.problems)} of {self.answers} answers ({100 * len(self.problems) / self.answers:.1f}%) "
                f"cannot be represented by the tokenizer of {model}, so the model could never produce them "
                f"(by file: {files}); first: {first.line()}. List them with `citkit data check STREAM --model "
                "MODEL`; set stream.allow_unknown_tokens=true to run anyway")


def answers_of(sample: Sample) -> list[str]:
    """The texts a model is taught or expected to produce: assistant turns (training) or references (test)."""
    if sample.answer is not None:
        return list(sample.answers or (sample.answer,))
    return [turn.text for turn in sample.turns if turn.role == "assistant"]


def _normal(text: str) -> str:
    return " ".join(text.split())


class AnswerChecker:
    """Decides, once per distinct text, whether a tokenizer represents it (see the module docstring)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor carries its tokenizer
        self.unk_id = self.tokenizer.unk_token_id
        self._seen: dict[str, str | None] = {}

    def problem(self, text: str) -> str | None:
        """Why `text` cannot be represented, or None when it can."""
        if text not in self._seen:
            self._seen[text] = self._problem(text)
        return self._seen[text]

    def _problem(self, text: str) -> str | None:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.unk_id is not None and self.unk_id in ids:
            unknown = [w for w in text.split()
                       if self.unk_id in self.tokenizer(w, add_special_tokens=False)["input_ids"]]
            words = ", ".join(repr(w) for w in unknown[:5]) or repr(text)
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            return f"{words}{more} encode(s) to the unknown token {self.tokenizer.unk_token!r}"
        decoded = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if _normal(decoded) != _normal(text):
            return f"it decodes back as {decoded!r}"
        return None


def check_answers(samples: Iterable[Sample], tokenizer: Any) -> VocabularyReport:
    """Every answer of `samples` that `tokenizer` cannot represent, with the answer count of each file."""
    checker = AnswerChecker(tokenizer)
    report = VocabularyReport()
    for sample in samples:
        file = sample.file or f"task {sample.task}"
        for answer in answers_of(sample):
            report.answers_per_file[file] = report.answers_per_file.get(file, 0) + 1
            problem = checker.problem(answer)
            if problem is not None:
                report.problems.append(AnswerProblem(sample.where, file, answer, problem))
    return report
