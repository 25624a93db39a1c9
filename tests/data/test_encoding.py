"""Prompt building through the chat template; loss only on assistant tokens."""

from citkit.data.encoding import IGNORE_INDEX, SampleEncoder, collate
from citkit.data.samples import Sample, Turn
from citkit.models.loading import load_processor


def test_labels_cover_answers_and_end_of_turn_only(tiny_model_path, small_stream_file) -> None:
    processor = load_processor(tiny_model_path)
    encoder = SampleEncoder(processor)
    image = next((small_stream_file.parent / "colour" / "images").glob("train_*.png"))
    sample = Sample("s1", (image,), (Turn("user", "<image>\nwhat colour is the circle ?"), Turn("assistant", "red"),
                                     Turn("user", "what shape is red ?"), Turn("assistant", "circle")))
    encoded = encoder.encode_train(sample)
    tokenizer = processor.tokenizer
    pairs = zip(encoded.input_ids, encoded.labels, strict=True)
    learned = [tokenizer.convert_ids_to_tokens(i) for i, label in pairs if label != IGNORE_INDEX]
    assert learned == ["red", "<|end|>", "circle", "<|end|>"]
    assert encoded.input_ids.count(processor.image_token_id) == 10  # 9 patches + CLS
    prompt = encoder.encode_prompt(Sample("s2", (image,), (Turn("user", "<image>\nwhat ?"),)))
    assert tokenizer.convert_ids_to_tokens(prompt.input_ids[-1]) == "<|assistant|>"
    batch = collate([encoded, prompt], tokenizer.pad_token_id, "left")
    assert batch["input_ids"].shape[0] == 2 and batch["pixel_values"].shape[0] == 2
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][1, -1] == 1
