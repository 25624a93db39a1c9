"""The LLaVA reader: every bad-input case names the file, the record and the problem."""

import json
from pathlib import Path

import pytest
from PIL import Image

from citkit.data.llava_format import check_file, read_test, read_train
from citkit.errors import DataFormatError


def write(tmp_path: Path, records: object, name: str = "train.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def image(tmp_path: Path) -> str:
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ok.png")
    return "ok.png"


def good(image_name: str, **changes: object) -> dict:
    record = {"id": "r0", "image": image_name, "conversations": [
        {"from": "human", "value": "<image>\nwhat colour ?"}, {"from": "gpt", "value": "red"}]}
    record.update(changes)
    return record


def test_good_file_reads(tmp_path: Path, image: str) -> None:
    samples = read_train(write(tmp_path, [good(image)]), task="t")
    assert samples[0].id == "r0" and samples[0].turns[1].text == "red" and samples[0].images[0].name == "ok.png"


@pytest.mark.parametrize("record, message", [
    ({"image": "ok.png", "conversations": []}, 'record 0: no "id"'),
    ({"id": "x", "image": "missing.png", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                         {"from": "gpt", "value": "a"}]}, "image file not found"),
    ({"id": "x", "image": "ok.png", "conversations": [{"from": "human", "value": "<image>\nq"}]}, "no assistant"),
    ({"id": "x", "image": "ok.png", "conversations": [{"from": "human", "value": "<image>\nq"},
                                                    {"from": "gpt", "value": "  "}]}, "empty answer"),
    ({"id": "x", "image": "ok.png", "conversations": [{"from": "human", "value": "q"},
                                                    {"from": "gpt", "value": "a"}]}, "0 <image> placeholder"),
    ({"id": "x", "image": "ok.png", "conversations": [{"from": "human", "value": "<image><image>\nq"},
                                                    {"from": "gpt", "value": "a"}]}, "2 <image> placeholder"),
    ({"id": "x", "image": "ok.png", "conversations": [{"from": "robot", "value": "q"}]}, 'needs "from"'),
])
def test_bad_records(tmp_path: Path, image: str, record: dict, message: str) -> None:
    path = write(tmp_path, [record])
    with pytest.raises(DataFormatError, match=message) as error:
        read_train(path)
    assert str(path) in str(error.value) and "record 0" in str(error.value)


def test_unreadable_image(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png")
    path = write(tmp_path, [good("bad.png")])
    with pytest.raises(DataFormatError, match=r"record 0 \(id 'r0'\): unreadable image"):
        read_train(path)


def test_invalid_json_and_duplicates(tmp_path: Path, image: str) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(DataFormatError, match="broken.json: not valid JSON"):
        read_train(broken)
    with pytest.raises(DataFormatError, match="record 1 \\(id 'r0'\\): duplicate id"):
        read_train(write(tmp_path, [good(image), good(image)]))


def test_test_layouts(tmp_path: Path, image: str) -> None:
    record = {"question_id": "q1", "image": image, "text": "what ?", "answer": "red"}
    plain = read_test(write(tmp_path, [record], "t.json"))
    assert plain[0].answer == "red" and plain[0].prompt.startswith("<image>")
    as_train = read_test(write(tmp_path, [good(image)], "t2.json"))
    assert as_train[0].answer == "red" and len(as_train[0].turns) == 1
    with pytest.raises(DataFormatError, match="record 0 \\(id 'q1'\\): empty or missing \"answer\""):
        read_test(write(tmp_path, [{"question_id": "q1", "image": image, "text": "q", "answer": ""}], "t3.json"))


def test_check_file_lists_every_problem(tmp_path: Path, image: str) -> None:
    records = [good(image), good(image, id="r1", image="nope.png"), {"id": "r2"}, good(image, id="r0")]
    problems = check_file(write(tmp_path, records))
    assert len(problems) == 3
    assert "record 1" in problems[0] and "record 2" in problems[1] and "duplicate" in problems[2]


@pytest.mark.parametrize("name, kind", [("../outside.png", "climbs out of it with '../'"),
                                        ("sub/../../outside.png", "climbs out of it with '../'"),
                                        ("ABSOLUTE", "is absolute")])
def test_image_path_outside_the_root_is_refused_unopened(tmp_path: Path, name: str, kind: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    Image.new("RGB", (8, 8), "red").save(tmp_path / "outside.png")  # a readable image: only the path is wrong
    name = str(tmp_path / "outside.png") if name == "ABSOLUTE" else name
    path = write(root, [good("ok.png", id="fine"), good(name, id="climber")])
    Image.new("RGB", (8, 8), "red").save(root / "ok.png")
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    with pytest.raises(DataFormatError) as error:
        read_train(path, root)
    message = str(error.value)
    assert message.startswith(f"{path} record 1 (id 'climber'): image path {name!r} {kind}")
    assert "stream.allow_images_outside_root=true" in message and "\n" not in message
    assert str(root / "ok.png") in opened  # images are opened (check_images) ...
    assert not any(Path(p).resolve() == (tmp_path / "outside.png").resolve() for p in opened)  # ... not this one
    assert check_file(path, "train", root) == [message]
    samples = read_train(path, root, allow_outside_root=True)  # the option lets it through
    assert samples[1].images == ((tmp_path / "outside.png").resolve(),)


@pytest.mark.parametrize("name", ["a/../b.png", "./b.png", "a/./../b.png", "a/b/../../b.png"])
def test_image_paths_that_stay_inside_the_root_are_read(tmp_path: Path, name: str) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(tmp_path / "b.png")
    samples = read_train(write(tmp_path, [good(name)]), tmp_path)
    assert samples[0].images == ((tmp_path / "b.png").resolve(),)


def test_samples_know_their_file_and_record(tmp_path: Path, image: str) -> None:
    path = write(tmp_path, [good(image, id="a"), good(image, id="b")])
    second = read_train(path)[1]
    assert (second.file, second.record) == (str(path), 1) and second.where == f"{path} record 1 (id 'b')"
    test = read_test(write(tmp_path, [{"question_id": "q", "image": image, "text": "what ?", "answer": "red"}],
                           "test.json"))[0]
    assert (test.file, test.record) == (str(tmp_path / "test.json"), 0)
