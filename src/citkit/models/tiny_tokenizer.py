"""The open-vocabulary tokenizer of the tiny model: byte-level BPE trained here on the toy world's text.

Byte-level means the 256 byte values are the base alphabet, so any UTF-8 text encodes without an
unknown token and decodes back to itself; the merges learned from the world's questions and answers
make its words one or two tokens. Digits are split one per token (as Llama's tokenizer does), so
numbers are spelled the same way wherever they appear. Pretraining repeats random text (see
`citkit.data.toy.domain_tasks.repeat_text`), so every token is an output the model has produced.

The chat template puts no spaces around the role markers: with a byte-level tokenizer a space before
the answer would be tokenized with the prompt when the prompt stands alone and with the answer's first
word in the full conversation, and the answer's label span would be off by one.
"""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

PAD, UNK, IMAGE, USER, ASSISTANT, END = "<pad>", "<unk>", "<image>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = [PAD, UNK, IMAGE, USER, ASSISTANT, END]
BYTE_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|end|>' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)


# The variants whose text the packaged tokenizer was learned from. Fixed, not "every variant": a variant added
# later (domains-mixed, whose questions are these variants' own) must not change the packaged recipe's merges.
CORPUS_VARIANTS = ("domains", "domains-shared", "domains-base", "distinct", "shared-instruction", "base")


def world_corpus(seed: int = 0, per_task: int = 300) -> list[str]:
    """Questions and answers of the toy-world variants in `CORPUS_VARIANTS`, the text the merges are learned from."""
    from citkit.data.toy.world import ToyWorldConfig, draw, task_specs

    lines = []
    for variant in CORPUS_VARIANTS:
        config = ToyWorldConfig(variant, per_task, 1, seed)  # type: ignore[arg-type]
        for index in range(len(task_specs(variant))):  # type: ignore[arg-type]
            lines += [text for _, q, a in draw(config, index, "train", per_task) for text in (q, a)]
    return lines


def wrap_tokenizer(backend: Tokenizer, chat_template: str) -> PreTrainedTokenizerFast:
    """A tokenizers backend as the tiny model's tokenizer: its special tokens, image token and chat template."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, unk_token=UNK, eos_token=END,
        extra_special_tokens={"image_token": IMAGE}, model_max_length=512,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE, USER, ASSISTANT]})
    tokenizer.chat_template = chat_template
    return tokenizer


def train_byte_tokenizer(corpus: list[str], vocab_size: int = 768) -> PreTrainedTokenizerFast:
    """Byte-level BPE with single-digit pre-tokens, the tiny model's special tokens and chat template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(sorted(corpus), trainer=trainer)
    return wrap_tokenizer(backend, BYTE_CHAT_TEMPLATE)


def random_pieces(tokenizer: PreTrainedTokenizerFast, rng: np.random.Generator, count: int) -> str:
    """Text made of `count` tokens drawn uniformly from the vocabulary (special tokens excluded)."""
    specials = set(tokenizer.all_special_ids)
    ids = [i for i in range(len(tokenizer)) if i not in specials]
    return tokenizer.decode([int(i) for i in rng.choice(ids, size=count)])
