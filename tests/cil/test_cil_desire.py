"""DESIRE: the merge and its options, flat memory as tasks grow, drift compensation, refinement switch."""

from __future__ import annotations

import json

import pytest
import torch

from citkit.cil.methods.desire.merge import fold
from citkit.cil.runner import run_cil
from citkit.cil.stream import CILDataConfig


def merges(result) -> list[dict]:
    return json.loads((result.run_dir / "checkpoints" / "task_3" / "method.json").read_text())["merges"]


def test_fold_is_exact_up_to_the_rank_and_truncates_beyond() -> None:
    g = torch.Generator().manual_seed(0)
    low = torch.randn(6, 2, generator=g) @ torch.randn(2, 5, generator=g)  # rank 2
    a, b, error = fold(low, 3, scaling=2.0)
    torch.testing.assert_close(2.0 * b @ a, low, rtol=1e-5, atol=1e-5)
    assert error < 1e-6 and a.shape == (3, 5) and b.shape == (6, 3)
    full = torch.randn(6, 5, generator=g)
    _, _, error = fold(full, 2, scaling=1.0)
    assert 0.05 < error < 1.0


def test_task_arithmetic_merges_use_their_fixed_coefficients(config_for) -> None:
    average = merges(run_cil(config_for("desire", merge="average")))
    assert average[1]["a"][0] == pytest.approx(1 / 2) and average[1]["b"][0] == pytest.approx(1 / 2)
    assert average[2]["a"][0] == pytest.approx(2 / 3) and average[2]["b"][0] == pytest.approx(1 / 3)
    summed = merges(run_cil(config_for("desire", merge="sum")))
    assert summed[2]["a"] == [1.0] * len(summed[2]["a"]) and summed[2]["b"] == [1.0] * len(summed[2]["b"])


def test_the_learned_merge_moves_the_coefficients_and_keeps_the_fold_exact_at_task_2(config_for) -> None:
    learned = merges(run_cil(config_for("desire", calibration={"lr": 0.1})))
    assert learned[0]["a"][0] == 0.0 and learned[0]["b"][0] == 1.0  # task 1 is copied into the empty set
    assert any(abs(a - 0.5) > 1e-4 for a in learned[1]["a"])  # calibrated away from the (1/2, 1/2) start
    assert learned[1]["max_truncation_error"] < 1e-4  # rank r + r <= consolidated_rank 2r
    small = merges(run_cil(config_for("desire", consolidated_rank=4)))
    assert small[1]["max_truncation_error"] > 1e-3  # rank 16 merged into rank 4


def test_without_consolidation_one_adapter_and_without_refinement_no_alignment(config_for) -> None:
    none = run_cil(config_for("desire", merge="none"))
    adapter = json.loads((none.run_dir / "tasks.json").read_text())
    from citkit.io import load_tensors

    keys = load_tensors(none.run_dir / "checkpoints" / "task_3" / "adapter.safetensors").keys()
    assert not any("consolidated" in k for k in keys) and any(".task." in k for k in keys)
    assert all("align" in entry["phases"] and "merge" not in entry["phases"] for entry in adapter)
    plain = json.loads((run_cil(config_for("desire", refine=False)).run_dir / "tasks.json").read_text())
    assert all("align" not in entry["phases"] for entry in plain)
    assert "merge" in plain[1]["phases"] and "merge" not in plain[0]["phases"]


def test_drift_compensation_none_keeps_old_means_and_weighted_moves_them(config_for) -> None:
    from citkit.io import load_tensors

    def first_means(drift: str) -> tuple[torch.Tensor, torch.Tensor]:
        run = run_cil(config_for("desire", drift_compensation=drift, refine=False))
        after_1 = load_tensors(run.run_dir / "checkpoints" / "task_1" / "method.safetensors")["gaussians.means"]
        after_3 = load_tensors(run.run_dir / "checkpoints" / "task_3" / "method.safetensors")["gaussians.means"]
        return after_1, after_3[:2]

    kept, later = first_means("none")
    assert torch.equal(kept, later)
    moved, later = first_means("weighted")
    assert not torch.allclose(moved, later)


@pytest.mark.parametrize("tasks", [5, 10])
def test_stored_adapter_parameters_stay_flat_as_tasks_grow(config_for, tasks: int) -> None:
    data = CILDataConfig(classes=10, tasks=tasks, train_per_class=4, test_per_class=2)
    result = run_cil(config_for("desire", data=data, alignment={"per_class": 8, "epochs": 1},
                                calibration={"epochs": 1}))
    log = json.loads((result.run_dir / "tasks.json").read_text())
    adapters = {entry["stored_adapter_parameters"] for entry in log}
    # two LoRA sets on q and v of 2 blocks (hidden 32): task rank 8 + consolidated rank 16
    assert adapters == {2 * 2 * (8 + 16) * (32 + 32)}
    stored = [entry["stored_parameters"] for entry in log]
    per_class = 32 + 32 * 32 + 1  # a mean, a covariance and the class id
    head = 10 // tasks * (32 + 1)
    assert [b - a for a, b in zip(stored, stored[1:], strict=False)] == [10 // tasks * per_class + head] * (tasks - 1)


def test_stability_scale_old_tasks_multiplies_the_stability_weight_by_the_consolidated_tasks() -> None:
    from citkit.cil.methods.desire.config import CalibrationConfig
    from citkit.cil.methods.desire.method import CalibrateMerge

    assert CalibrateMerge(CalibrationConfig(stability_weight=2.0), old_tasks=3).stability == 2.0
    scaled = CalibrationConfig(stability_weight=2.0, stability_scale="old_tasks")
    assert CalibrateMerge(scaled, old_tasks=3).stability == 6.0


def test_a_finished_run_loads_back_in_its_test_configuration(config_for) -> None:
    from citkit.cil.runner import evaluate_stage, load_run_model

    result = run_cil(config_for("desire"))
    model, method, stream = load_run_model(result.run_dir)
    stage, _, _ = evaluate_stage(model, method, stream.tasks, 3, 64)
    assert stage.pooled == result.stages[-1].pooled


def test_calibration_starts_from_its_init_and_zero_weights_leave_it_there(config_for) -> None:
    zero = {"plasticity_weight": 0.0, "stability_weight": 0.0, "ce_weight": 0.0}
    summed = merges(run_cil(config_for("desire", refine=False, calibration={"init": "sum", **zero})))
    assert summed[1]["a"] == [1.0] * len(summed[1]["a"]) and summed[2]["b"] == [1.0] * len(summed[2]["b"])
    average = merges(run_cil(config_for("desire", refine=False, calibration={"init": "average", **zero})))
    assert average[2]["a"][0] == pytest.approx(2 / 3) and average[2]["b"][0] == pytest.approx(1 / 3)
