"""The model a run would train, built on the meta device: exact parameter counts, no weights read.

The model config is read from the model folder, the model is built with `torch.device("meta")`
(shapes only, no memory), and the method is attached exactly as a run does. Per-task structure
(one adapter or expert per task) is rebuilt with the method's own `resume`, which adds what the
finished tasks added; the structure being trained on the last task of a T-task stream is that
of `resume` after T tasks (HiDe-LLaVA, whose `resume` leaves every expert frozen, opens the next
task's expert as its `before_task` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageTextToText

from citkit.errors import ConfigError
from citkit.estimate.activations import TextShape, saved_bytes
from citkit.methods import METHODS
from citkit.models import families
from citkit.models.loading import DTYPES
from citkit.models.registry import resolve_model_path

if TYPE_CHECKING:
    from citkit.methods.base import Method
    from citkit.run_config import RunConfig


@dataclass(frozen=True)
class Structure:
    """Parameter counts and bytes of the model as trained on the last task of the stream."""

    base_parameters: int       # the pretrained model's parameters
    base_bytes: int
    added_parameters: int      # adapters, experts, projector copies (trainable or frozen)
    added_bytes: int
    trainable_parameters: int
    trainable_bytes: int
    trainable_tensors: int
    stored_parameters: int     # what the run's checkpoint of a task holds: added or trainable
    stored_bytes: int
    adapter_bytes_per_token: list[int]  # per decoder layer: what its adapted modules keep, per token
    adapter_bytes_per_call: list[int]   # per decoder layer: what they keep once per forward (weight copies)
    projector_bytes_per_token: int      # per image token, when the projector trains (else 0)
    largest_layer_bytes: int   # the largest decoder layer's parameters (the ZeRO-3 gather unit)
    text: TextShape
    image_tokens: int          # image tokens per sample in the language model's input
    max_positions: int


def read_model_config(config: RunConfig) -> AutoConfig:
    """The model's config from its folder (or the built-in tiny model's), never its weights."""
    path = resolve_model_path(config.model, Path(config.runs_dir))
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=config.model.trust_remote_code)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read a model config from {path}: {str(error).splitlines()[0]}") from None


def build_meta_model(model_config: AutoConfig, config: RunConfig) -> nn.Module:
    kwargs = {"dtype": DTYPES[config.model.dtype], "trust_remote_code": config.model.trust_remote_code}
    if config.model.attn_implementation:
        kwargs["attn_implementation"] = config.model.attn_implementation
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(model_config, **kwargs)
    model.requires_grad_(False)  # as the runner does before attaching the method
    return model


def structure_after(config: RunConfig, tasks: int) -> Structure:
    """Build the model, attach the method, and add the per-task structure of `tasks` tasks."""
    model_config = read_model_config(config)
    model = build_meta_model(model_config, config)
    base_ids = {id(p) for p in model.parameters()}
    base = list(model.parameters())
    method: Method = METHODS.get(config.method)(config.method_config(), config.adapter)
    finished = [f"task_{index}" for index in range(tasks)]
    with torch.device("meta"):
        model = method.attach(model)
        model = _open_last_task(method, model, finished)
    model.train()
    params = dict(model.named_parameters())
    added = [p for p in params.values() if id(p) not in base_ids]
    trainable = [p for p in params.values() if p.requires_grad]
    stored = [p for p in params.values() if id(p) not in base_ids or p.requires_grad]
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = text_shape(core)
    layers = decoder_layers(core)
    adapted = [_adapted_bytes(layer) for layer in layers]
    return Structure(
        base_parameters=_count(base), base_bytes=_bytes(base),
        added_parameters=_count(added), added_bytes=_bytes(added),
        trainable_parameters=_count(trainable), trainable_bytes=_bytes(trainable), trainable_tensors=len(trainable),
        stored_parameters=_count(stored), stored_bytes=_bytes(stored),
        adapter_bytes_per_token=[per_token for per_token, _ in adapted],
        adapter_bytes_per_call=[per_call for _, per_call in adapted],
        projector_bytes_per_token=_projector_bytes_per_token(core),
        largest_layer_bytes=max(_bytes(list(layer.parameters())) for layer in layers),
        text=text, image_tokens=image_tokens(core.config),
        max_positions=int(getattr(core.config.get_text_config(), "max_position_embeddings", 0) or 0))


def _open_last_task(method: Method, model: nn.Module, finished: list[str]) -> nn.Module:
    """The structure while the last of `finished` trains (see the module docstring)."""
    from citkit.methods.hide_llava.layers import hide_layers
    from citkit.methods.hide_llava.method import HiDeLLaVA

    if isinstance(method, HiDeLLaVA):
        model = method.resume(model, finished[:-1])
        for layer in hide_layers(model):  # HiDeLLaVA.before_task: a new expert, the only one training
            layer.train_only(layer.add_expert())
        return model
    return method.resume(model, finished)


def text_shape(core: nn.Module) -> TextShape:
    text = core.config.get_text_config()
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    attention = str(getattr(text, "_attn_implementation", None) or getattr(core.config, "_attn_implementation", "sdpa"))
    return TextShape(layers=int(text.num_hidden_layers), hidden=int(text.hidden_size),
                     intermediate=int(text.intermediate_size), heads=heads,
                     kv_heads=int(getattr(text, "num_key_value_heads", None) or heads), head_dim=head_dim,
                     vocab=int(text.vocab_size), attention=attention)


def image_tokens(config: AutoConfig) -> int:
    """Image tokens per image in the language model's input (LLaVA: `image_seq_length`, else patches)."""
    if getattr(config, "image_seq_length", None):
        return int(config.image_seq_length)
    vision = getattr(config, "vision_config", None)
    if vision is None or not getattr(vision, "image_size", None):
        return 0
    return (int(vision.image_size) // int(vision.patch_size)) ** 2


def decoder_layers(core: nn.Module) -> list[nn.Module]:
    """The language model's decoder blocks, through the model-family boundary."""
    return list(families.decoder_layers(core))


def _adapted_bytes(layer: nn.Module) -> tuple[int, int]:
    """(per token, per forward) bytes the layer's adapted linear layers keep, traced on meta.

    Each adapted module (a wrapper with a `base_layer` or `base` linear) runs on one and on two
    tokens: the difference is what a token adds, the rest is kept once per forward (e.g. MoELoRA's
    reshaped copy of its B matrices)."""
    per_token = per_call = 0
    for module in layer.modules():
        inner = getattr(module, "base_layer", None) or getattr(module, "base", None)
        if isinstance(inner, nn.Linear) and not isinstance(module, nn.Linear):
            one, two = (saved_bytes(module, lambda tokens=tokens, inner=inner: torch.empty(
                1, tokens, inner.in_features, device="meta", dtype=inner.weight.dtype, requires_grad=True))
                for tokens in (1, 2))
            per_token += two - one
            per_call += 2 * one - two
    return per_token, per_call


def _projector_bytes_per_token(core: nn.Module) -> int:
    """Bytes the vision-language projector keeps per image token when any of its parameters trains."""
    projector = families.projector(core)
    if not any(p.requires_grad for p in projector.parameters()):
        return 0
    vision = core.config.vision_config
    dtype = next(projector.parameters()).dtype
    return saved_bytes(projector, lambda: torch.empty(1, 1, int(vision.hidden_size), device="meta", dtype=dtype))


def _count(params: list[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def _bytes(params: list[nn.Parameter]) -> int:
    return sum(p.numel() * p.element_size() for p in params)
