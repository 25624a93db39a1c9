"""Bad input gives one clear line, a non-zero exit code, no traceback and no partial files."""

import json
import subprocess
import sys

import pytest

from citkit.cli import main


def citkit(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "citkit.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["run", "--method", "lora-fft"], "unknown method 'lora-fft'; did you mean 'lora-ft'?"),
    (["run", "--stream", "toyy"], "unknown stream 'toyy'"),
    (["run", "--model", "/no/such/model"], "model path '/no/such/model' is not a folder"),
    (["run", "--set", "train.lrr=1"], "unknown setting train.lrr; did you mean 'lr'?"),
    (["run", "--set", "train.batch_size=0"], "train.batch_size and train.grad_accum must be >= 1"),
])
def test_bad_run_input(tmp_path, args, message) -> None:
    small = ["--set", "stream.toy.train_per_task=4", "--set", "stream.toy.test_per_task=2"]
    result = citkit(*args, *small, "--runs-dir", str(tmp_path / "runs"), "--quiet", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("citkit: error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not [p for p in (tmp_path / "runs").glob("*") if not p.name.startswith("_")]


def test_bad_stream_file_leaves_no_run_directory(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.json").write_text(json.dumps([{"id": "a", "conversations": [{"from": "human", "value": "q"}]}]))
    (data / "test.json").write_text(json.dumps([{"question_id": "b", "text": "q", "answer": "x"}]))
    (data / "s.yaml").write_text("name: s\ntasks:\n  - name: t\n    train: train.json\n    test: test.json\n")
    result = citkit("run", "--stream", str(data / "s.yaml"), "--runs-dir", str(tmp_path / "runs"), "--quiet")
    assert result.returncode == 2
    assert "train.json record 0 (id 'a'): no assistant" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_data_check_lists_problems(tmp_path, capsys) -> None:
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"id": "a", "image": "x.png", "conversations": []}, {"nope": 1}]))
    assert main(["data", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "record 0 (id 'a')" in out and "record 1:" in out and "problem(s)" in out


def test_every_command_has_help(capsys) -> None:
    for args in (["run"], ["compare"], ["resume"], ["report"], ["data", "export"], ["data", "check"],
                 ["model", "pretrain"], ["methods"], ["streams"], ["analyze", "cka"], ["analyze", "blocks"]):
        with pytest.raises(SystemExit) as done:
            main([*args, "--help"])
        assert done.value.code == 0 and "usage: citkit" in capsys.readouterr().out, args
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "train.lr" in capsys.readouterr().out


def test_export_writes_llava_files(tmp_path) -> None:
    out = tmp_path / "toy"
    assert main(["data", "export", "--stream", "toy-format", "--out", str(out), "--train-per-task", "2",
                 "--test-per-task", "1"]) == 0
    records = json.loads((out / "colour" / "train.json").read_text())
    assert records[0]["conversations"][0]["from"] == "human" and (out / "colour" / records[0]["image"]).is_file()


def test_commands_named_in_setting_help_exist() -> None:
    """Every `citkit ...` that a setting's help text names parses as a real command."""
    import re

    from citkit.cli import build_parser
    from citkit.config import describe
    from citkit.run_config import RunConfig

    parser = build_parser()
    named = {m for _, _, help_ in describe(RunConfig) for m in re.findall(r"`citkit ([a-z -]+?)(?: [A-Z]|`)", help_)}
    assert "streams" in named  # stream.name points at the stream list
    for command in named:
        words = command.split()
        required = {"data check": ["X"], "report": ["X"], "resume": ["X"]}.get(command, [])
        try:
            parser.parse_args([*words, *required])
        except SystemExit as error:
            raise AssertionError(f"help text names `citkit {command}`, which does not parse") from error
