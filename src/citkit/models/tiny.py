"""The tiny LLaVA-architecture model of the toy world, built from a config.

A CLIP vision tower (2 layers, 64 wide, 48 px images in 16 px patches: one patch per grid cell), a
two-layer projector and a Llama decoder (8 layers, 128 wide), with the byte-level BPE tokenizer of
`citkit.models.tiny_tokenizer` (the first tiny model, `tiny-v1`, had 4 layers and the closed word-level
tokenizer built here by `build_tokenizer`). It is saved with `save_pretrained` and loaded back through
the Auto classes, exactly as a real checkpoint is (`citkit.models.loading`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from citkit.data.toy.scenes import CELL, IMAGE_SIZE
from citkit.data.toy.tasks import answer_words
from citkit.data.toy.world import ToyWorldConfig, draw, task_specs
from citkit.models.tiny_tokenizer import IMAGE, SPECIAL_TOKENS, UNK, wrap_tokenizer

# Roles become "<|user|> ... <|end|>"; an image part becomes one <image> placeholder, which the
# processor expands to one token per vision feature (9 patches + CLS with the "full" strategy).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|' + message['role'] + '|> ' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image> ' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ ' <|end|> ' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|> ' }}{%- endif -%}"
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the tiny model. Defaults: ~1.8 M parameters (the first tiny model: text_layers=4)."""

    vision_hidden: int = field(default=64, metadata={"help": "Width of the CLIP vision tower."})
    vision_layers: int = field(default=2, metadata={"help": "Transformer blocks of the vision tower."})
    text_hidden: int = field(default=128, metadata={"help": "Width of the Llama decoder."})
    text_layers: int = field(default=8, metadata={"help": "Transformer blocks of the decoder."})
    heads: int = field(default=4, metadata={"help": "Attention heads in both towers."})
    max_positions: int = field(default=128, metadata={"help": "Longest prompt + answer, in tokens."})


def toy_vocabulary(seed: int = 0, per_task: int = 200) -> list[str]:
    """Every word of the toy world (drawn from all its tasks), sorted so the vocabulary is stable."""
    words = set(answer_words())
    for variant in ("distinct", "shared-instruction", "base"):
        config = ToyWorldConfig(variant, per_task, 1, seed)
        for index in range(len(task_specs(variant))):
            for _, question, answer in draw(config, index, "train", per_task):
                words.update(question.split())
                words.update(answer.split())
    return sorted(words)


def build_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer: lower-cased, split on whitespace, special tokens kept whole."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + [w for w in words if w not in SPECIAL_TOKENS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return wrap_tokenizer(backend, CHAT_TEMPLATE)


def build_processor(tokenizer: PreTrainedTokenizerFast) -> LlavaProcessor:
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=True, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=CELL,
                          vision_feature_select_strategy="full", num_additional_image_tokens=1,
                          chat_template=tokenizer.chat_template or CHAT_TEMPLATE)


def build_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    """A randomly initialised tiny LLaVA; call `transformers.set_seed` first to fix the init."""
    vision = CLIPVisionConfig(
        hidden_size=config.vision_hidden, intermediate_size=4 * config.vision_hidden,
        num_hidden_layers=config.vision_layers, num_attention_heads=config.heads,
        image_size=IMAGE_SIZE, patch_size=CELL, projection_dim=config.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.text_hidden, intermediate_size=2 * config.text_hidden,
        num_hidden_layers=config.text_layers, num_attention_heads=config.heads,
        num_key_value_heads=config.heads, max_position_embeddings=config.max_positions,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False,
    )
    image_tokens = (IMAGE_SIZE // CELL) ** 2 + 1
    llava = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=image_tokens,
        # "full" keeps the CLS token: it carries global scene information (counts) the patches lack.
        vision_feature_select_strategy="full", vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(llava)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def parameter_count(model: object) -> int:
    return int(sum(np.prod(p.shape) for p in model.parameters()))  # type: ignore[attr-defined]
