"""Stream files: packaged real streams parse, unions of files load and score per part, and
`citkit data check` lists every broken record of a whole stream with its file and index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from citkit.cli import main
from citkit.data.streams import StreamConfig, check_stream, load_stream, packaged_streams, read_stream_file
from citkit.errors import DataFormatError, UnknownNameError
from citkit.eval.scorers import score_task


def train_record(rid: str, image: str | None = "ok.png", question: str = "<image>\nwhat colour ?",
                 answer: str | None = "red") -> dict:
    turns = [{"from": "human", "value": question}]
    if answer is not None:
        turns.append({"from": "gpt", "value": answer})
    record = {"id": rid, "conversations": turns}
    if image is not None:
        record["image"] = image
    return record


def make_dataset(folder: Path, train: list[dict], test: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(folder / "ok.png")
    (folder / "broken.png").write_bytes(b"not a png at all")
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "test.json").write_text(json.dumps(test))


def test_packaged_streams_parse_and_name_known_scorers() -> None:
    streams = packaged_streams()
    assert {"ucit", "coin", "mllm-dcl", "mllm-acl", "fcit-task", "fcit-capability"} <= set(streams)
    sizes = {name: len(read_stream_file(streams[name])["tasks"]) for name in streams}
    assert sizes["ucit"] == 6 and sizes["coin"] == 8 and sizes["fcit-task"] == 8 and sizes["fcit-capability"] == 4
    assert sizes["mllm-dcl"] == 5 and sizes["mllm-acl"] == 4


def test_packaged_stream_with_no_data_reports_missing_files(tmp_path: Path) -> None:
    problems = check_stream(StreamConfig(name="ucit", data_root=str(tmp_path)), tmp_path)
    assert len(problems) == 12 and all("data file not found" in p for p in problems)


def test_data_check_lists_every_broken_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good_test = [{"question_id": "q0", "image": "ok.png", "text": "what colour ?", "answer": "red"}]
    make_dataset(tmp_path / "a", [
        train_record("ok"),
        train_record("missing-image", image="nowhere.png"),
        train_record("empty-answer", answer="  "),
        train_record("no-assistant", answer=None),
        train_record("two-placeholders", question="<image>\n<image>\nwhat colour ?"),
        train_record("unreadable", image="broken.png"),
        train_record("empty-and-missing", image="nowhere.png", answer=""),
    ], good_test)
    make_dataset(tmp_path / "b", [train_record("fine")], [
        {"question_id": "q0", "image": "ok.png", "text": "what colour ?", "answer": ""},
        {"question_id": "q1", "image": "broken.png", "text": "what colour ?", "answer": "red"}])
    (tmp_path / "stream.yaml").write_text(
        "name: broken\ntasks:\n"
        "  - {name: a, train: a/train.json, test: a/test.json, image_root: a}\n"
        "  - {name: b, train: b/train.json, test: b/test.json, image_root: b}\n")
    code = main(["data", "check", str(tmp_path / "stream.yaml"), "--runs-dir", str(tmp_path / "runs")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    expected = [
        ("a/train.json record 1 (id 'missing-image')", "image file not found"),
        ("a/train.json record 2 (id 'empty-answer')", "empty answer"),
        ("a/train.json record 3 (id 'no-assistant')", "no assistant"),
        ("a/train.json record 4 (id 'two-placeholders')", "2 <image> placeholder(s)"),
        ("a/train.json record 5 (id 'unreadable')", "unreadable image"),
        ("a/train.json record 6 (id 'empty-and-missing')", "empty answer"),  # first problem of the record
        ("b/test.json record 0 (id 'q0')", 'empty or missing "answer"'),
        ("b/test.json record 1 (id 'q1')", "unreadable image"),
    ]
    assert len(lines) == len(expected) + 1 and lines[-1].startswith("8 problem(s)")
    for line, (where, what) in zip(lines, expected, strict=False):
        assert where in line and what in line, line


def union_stream(tmp_path: Path, same_ids: bool = False, names: bool = True) -> Path:
    make_dataset(tmp_path / "colours", [train_record("1")],
                 [{"question_id": "1", "image": "ok.png", "text": "colour ?", "answer": "red"}])
    make_dataset(tmp_path / "boxes", [train_record("1" if same_ids else "9", answer="[0, 0, 4, 4]")],
                 [{"question_id": "1" if same_ids else "9", "image": "ok.png", "text": "where ?",
                   "answer": "[0, 0, 4, 4]"}])
    na, nb = (", name: colours", ", name: boxes") if names else ("", "")
    (tmp_path / "stream.yaml").write_text(
        "name: union\ntasks:\n  - name: stage\n"
        f"    train: [{{file: colours/train.json, image_root: colours{na}}}, "
        f"{{file: boxes/train.json, image_root: boxes{nb}}}]\n"
        f"    test:\n      - {{file: colours/test.json, image_root: colours, scorer: exact{na}}}\n"
        f"      - {{file: boxes/test.json, image_root: boxes, scorer: grounding{nb}}}\n")
    return tmp_path / "stream.yaml"


def test_union_task_reads_every_file_and_scores_each_with_its_scorer(tmp_path: Path) -> None:
    stream = load_stream(StreamConfig(name=str(union_stream(tmp_path))), tmp_path)
    task = stream.tasks[0]
    assert [s.id for s in task.train] == ["colours/1", "boxes/9"]
    assert [(p.name, p.scorer, p.ids) for p in task.test_parts] == [
        ("colours", "exact", ("colours/1",)), ("boxes", "grounding", ("boxes/9",))]
    references = {s.id: s.answers for s in task.test}
    # colours wrong (0), box IoU 0.5625 > 0.5 (1): the task score is the mean of the parts, 50
    scores = score_task(task.scorer, {"colours/1": "blue", "boxes/9": "[0, 0, 3, 3]"}, references, "stage",
                        task.test_parts)
    assert scores.per_sample == {"colours/1": 0.0, "boxes/9": 1.0} and scores.score == 50.0
    assert check_stream(StreamConfig(name=str(tmp_path / "stream.yaml")), tmp_path) == []


def test_union_with_clashing_ids_asks_for_names(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="give the files of the task a `name`"):
        load_stream(StreamConfig(name=str(union_stream(tmp_path, same_ids=True, names=False))), tmp_path)


def test_unknown_scorer_fails_before_training(tmp_path: Path) -> None:
    path = union_stream(tmp_path)
    path.write_text(path.read_text().replace("scorer: grounding", "scorer: groundin"))
    with pytest.raises(UnknownNameError, match="did you mean 'grounding'"):
        load_stream(StreamConfig(name=str(path)), tmp_path)


def test_every_packaged_stream_names_its_base_checkpoint() -> None:
    streams = packaged_streams()
    bases = {name: read_stream_file(streams[name]).get("base_model") for name in streams}
    assert bases["ucit"] == "llava-hf/llava-1.5-7b-hf"
    assert bases["coin"] == bases["mllm-dcl"] == bases["mllm-acl"] == "llava-1.5-7b-pretrain-only"
    assert all(bases.values()) and all(read_stream_file(streams[n]).get("base_model_note") for n in streams)


def test_a_run_records_the_streams_base_model_and_the_model_it_used(tmp_path: Path, small_stream_file: Path,
                                                                   tiny_model_path: Path) -> None:
    from citkit.run_config import build_run_config
    from citkit.runner import run

    stream = tmp_path / "stream.yaml"
    stream.write_text(small_stream_file.read_text().replace("tasks:", "base_model: tiny-llava-base\ntasks:", 1))
    for folder in small_stream_file.parent.iterdir():
        if folder.is_dir():
            (tmp_path / folder.name).symlink_to(folder)
    overrides = [f"stream.name={stream}", "stream.tasks=[colour]", "train.max_steps=1", "train.progress=false"]
    result = run(build_run_config({}, overrides, method="zero-shot", name="based", runs_dir=str(tmp_path / "runs")))
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["stream_base_model"] == "tiny-llava-base" and env["model"] == str(tiny_model_path)


def test_run_name_comes_from_the_stream_files_name(tmp_path: Path) -> None:
    from citkit.run_config import RunConfig

    make_dataset(tmp_path, [train_record("a")],
                 [{"question_id": "q", "image": "ok.png", "text": "c ?", "answer": "red"}])
    (tmp_path / "stream.yaml").write_text(
        "name: my digits\ntasks:\n  - {name: t, train: train.json, test: test.json}\n")
    (tmp_path / "nameless.yaml").write_text("tasks:\n  - {name: t, train: train.json, test: test.json}\n")
    config = RunConfig(stream=StreamConfig(name=str(tmp_path / "stream.yaml")), seed=2)
    assert config.run_name == "my-digits-lora-ft-seed2"  # not "stream-lora-ft-seed2"
    assert load_stream(config.stream, tmp_path).name == "my digits"
    assert RunConfig(stream=StreamConfig(name=str(tmp_path / "nameless.yaml"))).run_name == "nameless-lora-ft-seed0"
    assert RunConfig(stream=StreamConfig(name="ucit")).run_name == "ucit-lora-ft-seed0"


def test_stream_refuses_an_image_outside_its_root_unless_allowed(tmp_path: Path) -> None:
    make_dataset(tmp_path / "a", [train_record("up", image="../b/ok.png")],
                 [{"question_id": "q", "image": "ok.png", "text": "c ?", "answer": "red"}])
    make_dataset(tmp_path / "b", [train_record("x")], [])
    (tmp_path / "s.yaml").write_text("name: s\ntasks:\n  - {name: t, train: a/train.json, test: a/test.json, "
                                     "image_root: a}\n")
    with pytest.raises(DataFormatError, match=r"a/train.json record 0 \(id 'up'\): image path '../b/ok.png' climbs"):
        load_stream(StreamConfig(name=str(tmp_path / "s.yaml")), tmp_path)
    problems = check_stream(StreamConfig(name=str(tmp_path / "s.yaml")), tmp_path)
    assert len(problems) == 1 and "climbs out" in problems[0]
    allowed = StreamConfig(name=str(tmp_path / "s.yaml"), allow_images_outside_root=True)
    assert load_stream(allowed, tmp_path).tasks[0].train[0].images == ((tmp_path / "b" / "ok.png").resolve(),)
    assert check_stream(allowed, tmp_path) == []


def test_the_default_stream_is_toy_mixed_and_its_name_alone_picks_a_toy_variant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`toy-mixed` is what a run without `--stream` trains on; the toy settings hold only sizes and seed, so
    `stream.toy.variant`, which a run would have ignored, is refused as an unknown setting."""
    from citkit.errors import ConfigError
    from citkit.run_config import build_run_config

    config = build_run_config({}, ["stream.toy.train_per_task=3", "stream.toy.test_per_task=2"])
    assert config.stream.name == "toy-mixed" and config.run_name == "toy-mixed-lora-ft-seed0"
    stream = load_stream(config.stream, tmp_path)
    assert stream.name == "toy-domains-mixed" and [len(t.train) for t in stream.tasks] == [3] * 6
    with pytest.raises(ConfigError, match="variant"):
        build_run_config({}, ["stream.toy.variant=distinct"])
    assert main(["streams"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line for line in listed if "(the default)" in line] == ["toy-mixed: built-in toy world (the default)"]
