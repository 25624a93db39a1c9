"""A federated run end to end: `citkit fed run`, run directory and report, resume, a failing client,
bad settings, and what an O-LoRA client sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from citkit.cli import main
from citkit.eval.matrix import AccuracyMatrix
from citkit.federated.federation import ClientWorker, Federation, full_state
from citkit.federated.local_methods import changeable_keys, client_payload
from citkit.federated.runner import run
from citkit.io import read_json

from .helpers import STREAM, TOY, small_config, toy_task_names

pytestmark = pytest.mark.filterwarnings("ignore")


def cli_args(runs: Path, name: str, *extra: str) -> list[str]:
    tasks = ",".join(toy_task_names(runs)[:2])
    return ["fed", "run", "--method", "lora-ft", "--stream", STREAM, "--runs-dir", str(runs), "--name", name, "--quiet",
            "--clients", "3", "--clients-per-round", "2", "--rounds", "1", "--beta", "1.0", "--local-epochs", "3",
            "--set", "train.lr=0.01",
            "--set", f"stream.toy.train_per_task={TOY['train_per_task']}",
            "--set", f"stream.toy.test_per_task={TOY['test_per_task']}", "--set", f"stream.tasks={tasks}",
            "--set", "train.batch_size=8", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    assert main(cli_args(runs, "whole")) == 0
    return runs


def test_cli_run_fills_the_matrix_and_the_run_directory(finished: Path) -> None:
    run_dir = finished / "whole"
    matrix = AccuracyMatrix.load(run_dir)
    assert matrix.is_complete and len(matrix.rows) == 3
    for name in ("config.json", "environment.json", "metrics.json", "report.md", "matrix.png", "rounds.json",
                 "tasks.json", "task_scores.json", "federation.md", "predictions/row_0.jsonl",
                 "predictions/row_2.jsonl",
                 "checkpoints/task_2/adapter.safetensors"):
        assert (run_dir / name).exists(), name
    config = read_json(run_dir / "config.json")
    assert config["federated"]["num_clients"] == 3 and config["method"] == "lora-ft"
    rounds = read_json(run_dir / "rounds.json")
    assert [(r["stage"], r["round"]) for r in rounds] == [(0, 0), (1, 0)]
    assert all(len(r["clients"]) == 2 == len(r["replied"]) and not r["failed"] for r in rounds)
    metrics = read_json(run_dir / "metrics.json")
    assert metrics["fcit_last"] == pytest.approx(metrics["mfn"])  # homogeneous: FCIT's Last/Avg are MFN/MAA
    assert metrics["fcit_avg"] == pytest.approx(metrics["maa"])
    assert metrics["bytes_down"] == sum(r["bytes_down"] for r in rounds) > 0
    assert metrics["bytes_up"] == metrics["bytes_whole_state_up"]  # LoRA-FT changes its whole adapter
    report = (run_dir / "report.md").read_text()
    assert "## Federation" in report and "3 clients, 2 per round" in report


def test_resumed_run_reaches_the_same_matrix(finished: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = small_config(finished, name="resumed")  # the same settings as the CLI run
    first = run(config, stop_after=1)
    assert first.matrix.finished_rows == 2 and not (first.run_dir / "metrics.json").exists()
    assert main(["fed", "resume", str(first.run_dir), "--quiet"]) == 0
    whole = AccuracyMatrix.load(finished / "whole").rows
    assert whole[2] != whole[0]  # training changed the scores, so equal matrices mean something
    assert AccuracyMatrix.load(first.run_dir).rows == whole
    assert len(read_json(first.run_dir / "rounds.json")) == 2
    assert "run directory" in capsys.readouterr().out


def test_a_failing_client_leaves_the_round_going(tmp_path: Path) -> None:
    def wrap(app):  # type: ignore[no-untyped-def]
        def call(message, context):  # type: ignore[no-untyped-def]
            if context.node_config["partition-id"] == 1:
                raise RuntimeError("disk full")
            return app(message, context)
        return call

    config = small_config(tmp_path, name="faulty", federated={"clients_per_round": 3})
    result = run(config, wrap_client=wrap)
    assert result.matrix.is_complete
    rounds = read_json(result.run_dir / "rounds.json")
    assert all(r["failed"] == [{"client": 1, "reason": "RuntimeError: disk full"}] for r in rounds)
    assert all(sorted(r["replied"]) == [0, 2] for r in rounds)
    assert result.metrics["client_failures"] == len(rounds)
    assert "Client failures: 2" in (result.run_dir / "report.md").read_text()


@pytest.mark.parametrize("extra,message", [
    (["--clients-per-round", "5"], "federated.clients_per_round=5 must be between 1 and federated.num_clients=3"),
    (["--beta", "0"], "federated.beta must be > 0"),
    (["--strategy", "fedsgd"], "unknown federated strategy 'fedsgd'"),
    (["--set", "federated.num_clientz=3"], "unknown setting federated.num_clientz"),
    (["--method", "replay"], "method 'replay' cannot run in federated clients"),
])
def test_bad_federated_settings_get_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               extra: list[str], message: str) -> None:
    capsys.readouterr()
    assert main(cli_args(tmp_path, "bad", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("citkit: error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_an_olora_client_sends_only_its_current_adapter(tmp_path: Path) -> None:
    federation = Federation(small_config(tmp_path, method="o-lora"))
    worker = ClientWorker(federation)
    model = worker.prepare(1)
    whole = full_state(worker.method, model)
    sent = client_payload(worker.method, model)
    assert {k for k in whole if ".task_0." in k} and {k for k in whole if ".task_1." in k}
    assert sent and all(".task_1." in k for k in sent) and set(changeable_keys(worker.method, model)) == set(sent)
