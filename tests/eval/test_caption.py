"""The caption scorer equals pycocoevalcap called directly, and joins by id, not by output order."""

from __future__ import annotations

import shutil

import pytest

from citkit.errors import CitkitError
from citkit.eval import caption as caption_module
from citkit.eval.scorers import score_task

pytest.importorskip("pycocoevalcap")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="pycocoevalcap needs Java")

REFERENCES = {
    "a": ["a red circle and a blue square", "a red circle next to a blue square"],
    "b": ["two green triangles", "a pair of green triangles on white"],
    "c": ["a yellow star in the top left corner", "one yellow star"],
}
PREDICTIONS = {"a": "a red circle and a blue square", "b": "two green circles", "c": "a star"}


def direct_pycocoevalcap(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """The COCO caption evaluation as its README shows it, on the same inputs."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in references.items()})
    res = tokenizer.tokenize({k: [{"caption": predictions[k]}] for k in references})
    out: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res)
    out.update({f"Bleu_{n + 1}": b for n, b in enumerate(bleu)})
    out["METEOR"], _ = Meteor().compute_score(gts, res)
    out["ROUGE_L"], _ = Rouge().compute_score(gts, res)
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    return out


class FakeMeteor:
    """METEOR's JVM takes ~9 s to start; the fast test replaces it with a fixed score."""

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        return 0.25, [0.25] * len(gts)


def check_against_direct() -> None:
    direct = direct_pycocoevalcap(PREDICTIONS, REFERENCES)
    shuffled = {k: PREDICTIONS[k] for k in ("c", "a", "b")}  # predictions arrive in another order
    scores = score_task("caption", shuffled, REFERENCES, task="captions")
    assert set(scores.metrics) == set(direct)
    for name, value in direct.items():
        assert scores.metrics[name] == pytest.approx(value, abs=1e-9), name
    assert scores.score == pytest.approx(100 * sum(direct.values()) / 7)
    # the exact caption is the best sample, the one-word caption the worst: ids kept their captions
    assert scores.per_sample["a"] > scores.per_sample["b"] > scores.per_sample["c"]
    assert scores.metrics["Bleu_1"] > 0.5  # sanity: not all zero


@needs_java
def test_caption_equals_pycocoevalcap_and_joins_by_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import pycocoevalcap.meteor.meteor

    monkeypatch.setattr(pycocoevalcap.meteor.meteor, "Meteor", FakeMeteor)
    check_against_direct()


@pytest.mark.slow
@needs_java
def test_caption_with_real_meteor_equals_pycocoevalcap() -> None:
    check_against_direct()


def test_missing_java_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(caption_module.shutil, "which", lambda name: None)
    with pytest.raises(CitkitError, match="needs Java.*apt-get install"):
        score_task("caption", {"a": "x"}, {"a": ["y"]})
