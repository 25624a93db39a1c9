"""Tiny random-weight models of every supported family, for tests, examples and trying a method.

Each builder makes the family's real configuration, model and processor classes at a few hundred
thousand parameters (2 decoder layers, 64 wide, a 1-2 layer vision tower on the toy world's 48 px
images), with a word-level tokenizer built here (the real vocabularies cannot be downloaded) whose
vocabulary holds every toy-world word, the family's special tokens and the words of its chat
template, which is written in the family's public format. `save_tiny_family` writes model and
processor with `save_pretrained`; `citkit.models.loading` loads them back like a real checkpoint.

Image processors are built from the PIL-backend classes (`...ImageProcessorPil`), so the model and
image processor of every family build without torchvision; the saved file names the family's image
processor type, and `AutoProcessor` loads it back with the torchvision backend where torchvision is
installed. The processors of LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL and SmolVLM-2
also take a video processor, which transformers builds only with torchvision (see docs/families.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import transformers as tf
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast, set_seed
from transformers.utils import is_torchvision_available

from citkit.errors import ConfigError
from citkit.models.tiny import toy_vocabulary

HIDDEN, HEADS, LAYERS, VISION_HIDDEN = 64, 4, 2, 32


@dataclass(frozen=True)
class Tokens:
    """The special tokens of one family's tokenizer and how they are exposed as attributes."""

    pad: str
    eos: str
    specials: tuple[str, ...]                 # every other special token, in id order
    named: dict[str, str]                     # tokenizer attribute -> token (image_token, boi_token, ...)
    bos: str | None = None


def _tokenizer(tokens: Tokens, template: str, words: list[str]) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer over `words` plus the family's special tokens and template."""
    specials = [tokens.pad, "<unk>", tokens.eos, *([tokens.bos] if tokens.bos else []), *tokens.specials]
    specials = list(dict.fromkeys(specials))
    vocab = {token: i for i, token in enumerate(specials + [w for w in words if w not in specials])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kwargs: dict[str, Any] = {"bos_token": tokens.bos} if tokens.bos else {}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=tokens.pad, unk_token="<unk>",
                                        eos_token=tokens.eos, extra_special_tokens=dict(tokens.named),
                                        model_max_length=4096, **kwargs)
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in specials[3:] if t != tokens.bos]})
    tokenizer.chat_template = template
    return tokenizer


def build_tokenizer(tokens: Tokens, template: str) -> PreTrainedTokenizerFast:
    """Toy-world words plus the words the template writes itself (role names, a default system prompt)."""
    first = _tokenizer(tokens, template, toy_vocabulary())
    probe = [{"role": "system", "content": [{"type": "text", "text": ""}]},
             {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ""}]},
             {"role": "assistant", "content": [{"type": "text", "text": ""}]}]
    words: set[str] = set()
    for messages in (probe, probe[1:]):
        text = first.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for special in first.all_special_tokens:
            text = text.replace(special, " ")
        words.update(text.lower().split())
    return _tokenizer(tokens, template, sorted(set(toy_vocabulary()) | words))


def _ids(tokenizer: PreTrainedTokenizerFast, **tokens: str) -> dict[str, int]:
    return {name: int(tokenizer.convert_tokens_to_ids(token)) for name, token in tokens.items()}


def _finish(model: Any, tokenizer: PreTrainedTokenizerFast) -> Any:
    """Greedy generation stops at the tokenizer's end-of-turn token and pads with its pad token."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model.eval()


def _text(config_class: Any, tokenizer: PreTrainedTokenizerFast, **extra: Any) -> Any:
    """A 2-layer, 64-wide decoder config of `config_class` sized to the tokenizer."""
    values = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                  num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                  max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                  tie_word_embeddings=False)
    values.update(extra)
    return config_class(**values)


_PIL_CLIP = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


# --- chat templates, written in each family's public format -------------------------------------------
# Content parts are rendered in order: an image part as the family's placeholder, a text part as is.

def _parts(image: str, text: str = "{{ part['text'] }}") -> str:
    return ("{%- if message['content'] is string -%}{{ message['content'] }}{%- else -%}"
            "{%- for part in message['content'] -%}"
            f"{{%- if part['type'] == 'image' -%}}{{{{ '{image}' }}}}"
            f"{{%- elif part['type'] == 'text' -%}}{text}{{%- endif -%}}"
            "{%- endfor -%}{%- endif -%}")


# LLaVA-1.5 (vicuna_v1): "USER: <image>\nQ ASSISTANT: A</s>"
LLAVA_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}" + _parts("") + "{{ ' ' }}"
    "{%- else -%}{{ message['role'].upper() + ': ' }}" + _parts("<image>\\n") +
    "{%- if message['role'] == 'assistant' -%}{{ '</s>' }}{%- endif -%}{{ ' ' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ 'ASSISTANT:' }}{%- endif -%}"
)

# LLaVA-NeXT (llava-v1.6-mistral): "[INST] <image>\nQ [/INST] A</s>"
MISTRAL_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{{ '[INST] ' }}" + _parts("<image>\\n") + "{{ ' [/INST]' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ ' ' }}" + _parts("") + "{{ '</s>' }}"
    "{%- else -%}" + _parts("") + "{{ '\\n\\n' }}{%- endif -%}"
    "{%- endfor -%}"
)


def _chatml(image: str, default_system: str | None = None) -> str:
    """Qwen's ChatML: "<|im_start|>role\\ncontent<|im_end|>\\n"; generation prompt "<|im_start|>assistant\\n"."""
    system = ("{%- if messages[0]['role'] != 'system' -%}{{ '<|im_start|>system\\n" + default_system
              + "<|im_end|>\\n' }}{%- endif -%}") if default_system else ""
    return (system + "{%- for message in messages -%}"
            "{{ '<|im_start|>' + message['role'] + '\\n' }}" + _parts(image) + "{{ '<|im_end|>\\n' }}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}")


QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN2_VL_TEMPLATE = _chatml(QWEN_IMAGE, default_system="You are a helpful assistant.")
QWEN3_VL_TEMPLATE = _chatml(QWEN_IMAGE)
ONEVISION_TEMPLATE = _chatml("<image>\\n")
INTERNVL_TEMPLATE = _chatml("<IMG_CONTEXT>\\n")

def _idefics(start: str) -> str:
    """Idefics3 / SmolVLM: "{start}User:<image>Q<end_of_utterance>\\nAssistant: A<end_of_utterance>\\n"."""
    return ("{{ '" + start + "' }}{%- for message in messages -%}"
            "{{ message['role'] | capitalize }}"
            "{%- if message['content'] is not string and message['content'] "
            "and message['content'][0]['type'] == 'image' -%}{{ ':' }}"
            "{%- else -%}{{ ': ' }}{%- endif -%}" + _parts("<image>") + "{{ '<end_of_utterance>\\n' }}"
            "{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{ 'Assistant:' }}{%- endif -%}")


IDEFICS3_TEMPLATE = _idefics("<|begin_of_text|>")  # Idefics3 and SmolVLM-1 (Llama 3 tokens)
SMOLVLM_TEMPLATE = _idefics("<|im_start|>")  # SmolVLM-2 (SmolLM2's ChatML tokens, the same turn format)

# Gemma 3: "<bos><start_of_turn>user\n<start_of_image>Q<end_of_turn>\n<start_of_turn>model\nA<end_of_turn>\n"
# (a system message is prepended to the first user turn, as Gemma's template does)
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}{%- set first = messages[0]['content'][0]['text'] + '\\n\\n' -%}"
    "{%- set messages = messages[1:] -%}{%- else -%}{%- set first = '' -%}{%- endif -%}"
    "{%- for message in messages -%}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    "{%- if loop.first -%}{{ first }}{%- endif -%}" + _parts("<start_of_image>") + "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


# --- builders: (tokenizer) -> (model, processor factory) ----------------------------------------------
# The processor is returned as a `functools.partial` so the model can be built where the processor cannot.

@dataclass(frozen=True)
class _VideoProcessor:
    """A video processor to make when the processor is built (video processors need torchvision)."""

    class_name: str
    options: dict[str, Any]


def _video(class_name: str, **options: Any) -> _VideoProcessor:
    return _VideoProcessor(class_name, options)


def _clip_vision(image_size: int, patch_size: int) -> Any:
    return tf.CLIPVisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN, num_hidden_layers=1,
                               num_attention_heads=HEADS, image_size=image_size, patch_size=patch_size,
                               projection_dim=VISION_HIDDEN)


def _siglip_vision(image_size: int, patch_size: int) -> Any:
    return tf.SiglipVisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN, num_hidden_layers=1,
                                 num_attention_heads=HEADS, image_size=image_size, patch_size=patch_size)


def build_llava(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    """LLaVA-1.5: CLIP (48 px, 16 px patches, CLS dropped: 9 image tokens), MLP projector, Llama."""
    config = tf.LlavaConfig(vision_config=_clip_vision(48, 16), text_config=_text(tf.LlamaConfig, tokenizer),
                            image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=9,
                            vision_feature_select_strategy="default", vision_feature_layer=-1)
    processor = partial(tf.LlavaProcessor,
        image_processor=tf.CLIPImageProcessorPil(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48},
                                                 **_PIL_CLIP),
        tokenizer=tokenizer, patch_size=16, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template)
    return tf.LlavaForConditionalGeneration(config), processor


_PINPOINTS = [[24, 24], [24, 48], [48, 24], [48, 48]]


def build_llava_next(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    """LLaVA-NeXT: any-resolution tiles of 24 px (2 x 2 for a 48 px image plus the overview), Mistral."""
    config = tf.LlavaNextConfig(vision_config=_clip_vision(24, 8), text_config=_text(tf.MistralConfig, tokenizer),
                                image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                                image_grid_pinpoints=_PINPOINTS, vision_feature_select_strategy="default",
                                vision_feature_layer=-1)
    processor = partial(tf.LlavaNextProcessor,
        image_processor=tf.LlavaNextImageProcessorPil(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24},
                                                      image_grid_pinpoints=_PINPOINTS, **_PIL_CLIP),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template)
    return tf.LlavaNextForConditionalGeneration(config), processor


def build_llava_onevision(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    """LLaVA-OneVision: SigLIP any-resolution tiles of 24 px, Qwen2."""
    config = tf.LlavaOnevisionConfig(vision_config=_siglip_vision(24, 8), text_config=_text(tf.Qwen2Config, tokenizer),
                                     image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                                     video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
                                     image_grid_pinpoints=_PINPOINTS, vision_feature_select_strategy="full",
                                     vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9")
    processor = partial(tf.LlavaOnevisionProcessor,
        image_processor=tf.LlavaOnevisionImageProcessorPil(size={"height": 24, "width": 24},
                                                           image_grid_pinpoints=_PINPOINTS, **_PIL_CLIP),
        tokenizer=tokenizer, video_processor=_video("LlavaOnevisionVideoProcessor", size={"height": 24, "width": 24}),
        num_image_tokens=9, vision_feature_select_strategy="full",
        vision_aspect_ratio="anyres_max_9", chat_template=tokenizer.chat_template)
    return tf.LlavaOnevisionForConditionalGeneration(config), processor


def _qwen_image_processor() -> Any:
    # 48 px images stay 48 px: 6 x 6 patches of 8 px, merged 2 x 2 into 9 image tokens
    return tf.Qwen2VLImageProcessorPil(patch_size=8, merge_size=2, temporal_patch_size=2,
                                       size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64})


_QWEN_VIDEO = dict(patch_size=8, merge_size=2, temporal_patch_size=2)


def _qwen_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    return _ids(tokenizer, image_token_id="<|image_pad|>", video_token_id="<|video_pad|>",
                vision_start_token_id="<|vision_start|>", vision_end_token_id="<|vision_end|>")


_MROPE = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}  # head_dim 16: 8 pairs


def build_qwen2_vl(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    vision = dict(depth=1, embed_dim=VISION_HIDDEN, hidden_size=HIDDEN, num_heads=HEADS, patch_size=8,
                  spatial_merge_size=2, temporal_patch_size=2)
    config = tf.Qwen2VLConfig(text_config=_text(tf.Qwen2VLTextConfig, tokenizer, rope_parameters=dict(_MROPE)),
                              vision_config=vision, **_qwen_ids(tokenizer))
    processor = partial(tf.Qwen2VLProcessor, image_processor=_qwen_image_processor(), tokenizer=tokenizer,
                                    video_processor=_video("Qwen2VLVideoProcessor", **_QWEN_VIDEO),
                                    chat_template=tokenizer.chat_template)
    return tf.Qwen2VLForConditionalGeneration(config), processor


def build_qwen2_5_vl(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    vision = dict(depth=2, hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN, num_heads=HEADS,
                  out_hidden_size=HIDDEN, patch_size=8, spatial_merge_size=2, temporal_patch_size=2, window_size=16,
                  fullatt_block_indexes=[1])
    config = tf.Qwen2_5_VLConfig(text_config=_text(tf.Qwen2_5_VLTextConfig, tokenizer, rope_parameters=dict(_MROPE)),
                                 vision_config=vision, **_qwen_ids(tokenizer))
    processor = partial(tf.Qwen2_5_VLProcessor, image_processor=_qwen_image_processor(), tokenizer=tokenizer,
                                       video_processor=_video("Qwen2VLVideoProcessor", **_QWEN_VIDEO),
                                    chat_template=tokenizer.chat_template)
    return tf.Qwen2_5_VLForConditionalGeneration(config), processor


def build_qwen3_vl(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    vision = dict(depth=2, hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN, num_heads=HEADS,
                  out_hidden_size=HIDDEN, patch_size=8, spatial_merge_size=2, temporal_patch_size=2,
                  num_position_embeddings=36, deepstack_visual_indexes=[0])
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}
    text = _text(tf.Qwen3VLTextConfig, tokenizer, head_dim=HIDDEN // HEADS, rope_parameters=rope)
    config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tokenizer))
    processor = partial(tf.Qwen3VLProcessor, image_processor=_qwen_image_processor(), tokenizer=tokenizer,
                                    video_processor=_video("Qwen3VLVideoProcessor", **_QWEN_VIDEO),
                                    chat_template=tokenizer.chat_template)
    return tf.Qwen3VLForConditionalGeneration(config), processor


def build_internvl(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    """InternVL (transformers-native): InternViT 48 px in 8 px patches, pixel shuffle 0.5 -> 9 tokens, Qwen2."""
    vision = tf.InternVLVisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN,
                                     num_hidden_layers=1, num_attention_heads=HEADS, image_size=[48, 48],
                                     patch_size=[8, 8])
    config = tf.InternVLConfig(vision_config=vision, text_config=_text(tf.Qwen2Config, tokenizer),
                               image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
                               downsample_ratio=0.5)
    processor = partial(tf.InternVLProcessor,
        image_processor=tf.GotOcr2ImageProcessorPil(size={"height": 48, "width": 48}, crop_to_patches=False,
                                                    **_PIL_CLIP),
        tokenizer=tokenizer, video_processor=_video("InternVLVideoProcessor", size={"height": 48, "width": 48}),
        image_seq_length=9, chat_template=tokenizer.chat_template)
    return tf.InternVLForConditionalGeneration(config), processor


def build_idefics3(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    """Idefics3 (SmolVLM-1's architecture): SigLIP-like 48 px in 8 px patches, pixel shuffle 2 -> 9, Llama."""
    vision = tf.Idefics3VisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN,
                                     num_hidden_layers=1, num_attention_heads=HEADS, image_size=48, patch_size=8)
    config = tf.Idefics3Config(vision_config=vision, text_config=_text(tf.LlamaConfig, tokenizer), scale_factor=2,
                               image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    processor = partial(tf.Idefics3Processor,
        image_processor=tf.Idefics3ImageProcessorPil(size={"longest_edge": 48}, max_image_size={"longest_edge": 48},
                                                     do_image_splitting=False, **_PIL_CLIP),
        tokenizer=tokenizer, image_seq_len=9, chat_template=tokenizer.chat_template)
    return tf.Idefics3ForConditionalGeneration(config), processor


def build_smolvlm(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    """SmolVLM-2: Idefics3's layout under its own classes (48 px in 8 px patches, pixel shuffle 2 -> 9), Llama."""
    vision = tf.SmolVLMVisionConfig(hidden_size=VISION_HIDDEN, intermediate_size=2 * VISION_HIDDEN,
                                    num_hidden_layers=1, num_attention_heads=HEADS, image_size=48, patch_size=8)
    config = tf.SmolVLMConfig(vision_config=vision, text_config=_text(tf.LlamaConfig, tokenizer), scale_factor=2,
                              image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    sizes = dict(size={"longest_edge": 48}, max_image_size={"longest_edge": 48})
    processor = partial(tf.SmolVLMProcessor,
        image_processor=tf.SmolVLMImageProcessorPil(do_image_splitting=False, **sizes, **_PIL_CLIP),
        tokenizer=tokenizer, video_processor=_video("SmolVLMVideoProcessor", **sizes), image_seq_len=9,
        chat_template=tokenizer.chat_template)
    return tf.SmolVLMForConditionalGeneration(config), processor


def build_gemma3(tokenizer: PreTrainedTokenizerFast) -> tuple[Any, Callable[[], Any]]:
    """Gemma 3: SigLIP 48 px in 8 px patches, average-pooled to 3 x 3 = 9 soft tokens, Gemma 3 decoder."""
    text = _text(tf.Gemma3TextConfig, tokenizer, head_dim=HIDDEN // HEADS, sliding_window=64,
                 layer_types=["sliding_attention", "full_attention"])
    ids = _ids(tokenizer, boi_token_index="<start_of_image>", eoi_token_index="<end_of_image>",
               image_token_index="<image_soft_token>")
    config = tf.Gemma3Config(text_config=text, vision_config=_siglip_vision(48, 8), mm_tokens_per_image=9, **ids)
    processor = partial(tf.Gemma3Processor,
        image_processor=tf.Gemma3ImageProcessorPil(size={"height": 48, "width": 48}, do_pan_and_scan=False,
                                                   **_PIL_CLIP),
        tokenizer=tokenizer, image_seq_length=9, chat_template=tokenizer.chat_template)
    return tf.Gemma3ForConditionalGeneration(config), processor


_CHATML = Tokens(pad="<|endoftext|>", eos="<|im_end|>", specials=("<|im_start|>",), named={})
_QWEN = Tokens(pad="<|endoftext|>", eos="<|im_end|>",
               specials=("<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"),
               named={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                      "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"})


@dataclass(frozen=True)
class TinyFamily:
    """How to build one family's tiny model: its tokens, chat template and model/processor builder."""

    tokens: Tokens
    template: str
    build: Callable[[PreTrainedTokenizerFast], tuple[Any, Callable[[], Any]]]


TINY_FAMILIES: dict[str, TinyFamily] = {
    "llava": TinyFamily(Tokens("<pad>", "</s>", ("<image>",), {"image_token": "<image>"}, bos="<s>"),
                        LLAVA_TEMPLATE, build_llava),
    "llava_next": TinyFamily(Tokens("<pad>", "</s>", ("<image>", "[INST]", "[/INST]"), {"image_token": "<image>"},
                                    bos="<s>"), MISTRAL_TEMPLATE, build_llava_next),
    "llava_onevision": TinyFamily(Tokens(_CHATML.pad, _CHATML.eos, ("<|im_start|>", "<image>", "<video>"),
                                         {"image_token": "<image>", "video_token": "<video>"}),
                                  ONEVISION_TEMPLATE, build_llava_onevision),
    "qwen2_vl": TinyFamily(_QWEN, QWEN2_VL_TEMPLATE, build_qwen2_vl),
    "qwen2_5_vl": TinyFamily(_QWEN, QWEN2_VL_TEMPLATE, build_qwen2_5_vl),
    "qwen3_vl": TinyFamily(_QWEN, QWEN3_VL_TEMPLATE, build_qwen3_vl),
    "internvl": TinyFamily(Tokens(_CHATML.pad, _CHATML.eos,
                                  ("<|im_start|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"),
                                  {"start_image_token": "<img>", "end_image_token": "</img>",
                                   "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}),
                           INTERNVL_TEMPLATE, build_internvl),
    "idefics3": TinyFamily(Tokens("<|finetune_right_pad_id|>", "<end_of_utterance>",
                                  ("<fake_token_around_image>", "<image>", "<global-img>"), {},
                                  bos="<|begin_of_text|>"), IDEFICS3_TEMPLATE, build_idefics3),
    "smolvlm": TinyFamily(Tokens("<|im_end|>", "<end_of_utterance>",
                                 ("<fake_token_around_image>", "<image>", "<global-img>"), {}, bos="<|im_start|>"),
                          SMOLVLM_TEMPLATE, build_smolvlm),
    "gemma3": TinyFamily(Tokens("<pad>", "<end_of_turn>",
                                ("<start_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"),
                                {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                 "image_token": "<image_soft_token>"}, bos="<bos>"), GEMMA3_TEMPLATE, build_gemma3),
}


def build_tiny_family(model_type: str, seed: int = 0, with_processor: bool = True) -> tuple[Any, Any]:
    """A randomly initialised tiny (model, processor) of `model_type`; `seed` fixes the init.

    Raises `ConfigError` when the family's processor cannot be built here (it needs torchvision); with
    `with_processor=False` the processor is None and only the model is built."""
    if model_type not in TINY_FAMILIES:
        raise ConfigError(f"no tiny builder for model type {model_type!r}; known: {', '.join(TINY_FAMILIES)}")
    family = TINY_FAMILIES[model_type]
    tokenizer = build_tokenizer(family.tokens, family.template)
    set_seed(seed)
    model, make_processor = family.build(tokenizer)
    return _finish(model, tokenizer), (_processor(model_type, make_processor) if with_processor else None)


def _processor(model_type: str, make: Any) -> Any:
    video = make.keywords.get("video_processor")
    if not isinstance(video, _VideoProcessor):
        return make()
    if not is_torchvision_available():
        raise ConfigError(f"the {model_type} processor ({make.func.__name__}) takes a video processor, and "
                          "transformers' video processors need torchvision, which is not installed; install the "
                          "torchvision build that matches your torch (see docs/families.md)")
    return make(video_processor=getattr(tf, video.class_name)(**video.options))


def tiny_image_processor(model_type: str) -> Any:
    """The image processor (PIL backend) of the family's tiny model, as built; it needs no torchvision."""
    family = TINY_FAMILIES[model_type]
    _, make = family.build(build_tokenizer(family.tokens, family.template))
    return make.keywords["image_processor"]


def save_tiny_family(model_type: str, directory: str | Path, seed: int = 0) -> Path:
    """Build the tiny model of `model_type` and save model and processor to `directory` (returned)."""
    directory = Path(directory)
    model, processor = build_tiny_family(model_type, seed)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
