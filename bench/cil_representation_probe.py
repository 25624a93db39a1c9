"""Is a CIL method's final representation better or worse than the frozen backbone's? (a diagnostic)

For each run directory given, rebuild the final model and classify every test image of the stream by
the nearest class mean of the *training* features of all classes (an oracle that sees every class's
data at once, so the head and the stored statistics play no part). Compare with the same probe on the
run's frozen backbone. Prints one line per run:

    python bench/cil_representation_probe.py /tmp/cilcmp/cil-builtin-5t-desire-seed0 ...
"""

import sys

import torch
import torch.nn.functional as F

from citkit.cil.backbone import build_classifier
from citkit.cil.methods.base import extract_features
from citkit.cil.runner import load_run_model


def probe(model, stream) -> float:
    train = [extract_features(model, t) for t in stream.tasks]
    test = [extract_features(model, t, split="test") for t in stream.tasks]
    features, labels = torch.cat([f for f, _ in train]), torch.cat([y for _, y in train])
    means = torch.stack([features[labels == c].mean(0) for c in range(stream.num_classes)])
    x, y = torch.cat([f for f, _ in test]), torch.cat([y for _, y in test])
    predicted = (F.normalize(x, dim=-1) @ F.normalize(means, dim=-1).T).argmax(-1)
    return 100.0 * float((predicted == y).float().mean())


def main() -> None:
    torch.set_num_threads(1)
    for run in sys.argv[1:]:
        model, method, stream = load_run_model(run)
        frozen, _ = build_classifier(_backbone_config(run))
        print(f"{run}: nearest-class-mean probe {probe(model, stream):.1f} "
              f"(frozen backbone {probe(frozen, stream):.1f})")


def _backbone_config(run):
    from citkit.cil.backbone import BackboneConfig
    from citkit.io import read_json

    return BackboneConfig(path=read_json(f"{run}/config.json")["model"]["path"])


if __name__ == "__main__":
    main()
