"""The one place that knows where things are inside each image-text-to-text architecture.

Methods never write `model.model.X`: they ask this module for the language model, its decoder
layers, the vision-language projector, the vision tower, the image token and pooled image or
instruction features, and it answers from a `Family` registered under the config's `model_type`
(transformers 5 module layout). Every function accepts the bare transformers model or a peft
wrapper around it. Adding an architecture is one `register_family(Family(...))` call; see
docs/families.md.

Terms: an *image* is one image of a sample (one `<image>` of the conversation); a *row* is one entry
of the first dimension of the tensor the projector receives (an image, an any-resolution tile, or a
vision patch for Qwen's flattened format). `projector_rows` says how many rows each image owns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from citkit.errors import ConfigError

IGNORE_INDEX = -100  # the label of a token that is not an answer token (as in citkit.data.encoding)
ImageFeature = Literal["pooled", "mean"]


def core_model(model: nn.Module) -> nn.Module:
    """The transformers model (e.g. `LlavaForConditionalGeneration`) under a possible peft wrapper."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _pooled_output(output: Any, feature: ImageFeature) -> Tensor:
    """(n, hidden): the tower's pooled (CLS / attention-pooled) output, or the mean of its last states."""
    pooled = getattr(output, "pooler_output", None)
    if feature == "pooled" and pooled is not None:
        return pooled.float()
    return output.last_hidden_state.float().mean(1)  # (n, tokens, hidden) -> (n, hidden)


def _run_tower(tower: nn.Module, pixels: Tensor, feature: ImageFeature, **kwargs: Any) -> Tensor:
    return _pooled_output(tower(pixels.to(next(tower.parameters()).dtype), return_dict=True, **kwargs), feature)


# --- per-architecture image features: (model, batch, feature) -> (images, vision_hidden) ------------------

def _images_first(model: nn.Module, batch: dict[str, Tensor], feature: ImageFeature) -> Tensor:
    """pixel_values (images, channels, height, width): one tower pass, one vector per image."""
    return _run_tower(vision_tower(model), batch["pixel_values"], feature)


def _anyres_overview(model: nn.Module, batch: dict[str, Tensor], feature: ImageFeature) -> Tensor:
    """pixel_values (images, tiles, channels, height, width); tile 0 is the whole image resized (the overview)."""
    return _run_tower(vision_tower(model), batch["pixel_values"][:, 0], feature)


def _tiles_mean(model: nn.Module, batch: dict[str, Tensor], feature: ImageFeature) -> Tensor:
    """pixel_values (tiles, channels, height, width): the mean over each image's tiles."""
    per_tile = _run_tower(vision_tower(model), batch["pixel_values"], feature)  # (tiles, hidden)
    return _mean_per_image(per_tile, projector_rows(model, batch))


def _per_sample_slots(model: nn.Module, batch: dict[str, Tensor], feature: ImageFeature) -> Tensor:
    """Idefics3: pixel_values (samples, slots, channels, height, width), all-zero slots are padding."""
    pixels = batch["pixel_values"].flatten(0, 1)  # (samples * slots, channels, height, width)
    real = pixels.flatten(1).ne(0).any(1)
    masks = batch.get("pixel_attention_mask")
    tower = vision_tower(model)
    patch = int(tower.config.patch_size)
    kwargs = {}
    if masks is not None:  # (images, height, width) -> (images, height / patch, width / patch) as the model does
        pixel_mask = masks.flatten(0, 1)[real].bool()
        kwargs["patch_attention_mask"] = pixel_mask.unfold(1, patch, patch).unfold(2, patch, patch).sum((-1, -2)) > 0
    return _run_tower(tower, pixels[real], "mean", **kwargs)


def _patch_mean(model: nn.Module, batch: dict[str, Tensor], feature: ImageFeature) -> Tensor:
    """Qwen-VL: pixel_values (patches, patch_dim) of all images flattened, image_grid_thw (images, 3).

    The vision encoder's output before the patch merger (the projector) is captured with a hook and
    averaged over each image's t * h * w patches, so the feature stays frozen whatever the merger is."""
    captured: list[Tensor] = []
    hook = projector(model).register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        tower = vision_tower(model)
        tower(batch["pixel_values"].to(next(tower.parameters()).dtype), grid_thw=batch["image_grid_thw"])
    finally:
        hook.remove()
    return _mean_per_image(captured[0].float(), projector_rows(model, batch))  # (patches, hidden) -> (images, hidden)


def _mean_per_image(rows: Tensor, rows_per_image: Tensor) -> Tensor:
    """(images, hidden) means of consecutive row groups of `rows` (rows, ...) sized `rows_per_image`."""
    flat = rows.flatten(1) if rows.dim() == 2 else rows.mean(1)  # (rows, hidden)
    counts = rows_per_image.to(rows.device)
    owner = torch.repeat_interleave(torch.arange(len(counts), device=rows.device), counts)
    sums = flat.new_zeros(len(rows_per_image), flat.shape[1]).index_add_(0, owner, flat)
    return sums / rows_per_image.to(sums).clamp(min=1).unsqueeze(1)


# --- per-architecture projector rows: (model, batch) -> (images,) rows of the projector input per image ---

def _one_row(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return torch.ones(count_images(model, batch), dtype=torch.long)


def _anyres_rows(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Tiles per image from its size. LLaVA-OneVision tiles only the images of single-image samples:
    with `batch_num_images` (images per sample), an image of a sample holding several is one row."""
    from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches

    config = core_model(model).config
    sizes = batch["image_sizes"].tolist()
    per_sample = batch.get("batch_num_images")
    is_tiled = [True] * len(sizes) if per_sample is None else [n == 1 for n in per_sample.tolist() for _ in range(n)]
    return torch.tensor([image_size_to_num_patches(size, config.image_grid_pinpoints, config.vision_config.image_size)
                         if tiled else 1 for size, tiled in zip(sizes, is_tiled, strict=True)], dtype=torch.long)


def _grid_rows(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    return batch["image_grid_thw"].prod(-1).long().cpu()  # t * h * w patches per image


def _internvl_rows(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Tiles per image: an image's token run is tiles * tokens_per_tile long."""
    config = core_model(model).config
    size, patch = config.vision_config.image_size, config.vision_config.patch_size
    side = (size[0] if isinstance(size, (list, tuple)) else size) // (
        patch[0] if isinstance(patch, (list, tuple)) else patch)
    per_tile = int(side * side * config.downsample_ratio ** 2)
    return torch.tensor(image_token_runs(batch["input_ids"], image_token_id(model))[1], dtype=torch.long) // per_tile


# --- the registry -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    """Where the parts of one architecture live (paths from the `...ForConditionalGeneration` model).

    Attributes:
        model_type: `config.model_type` of the architecture.
        model_class, processor_class: the transformers classes (documentation and tests).
        language_model: dotted path of the decoder stack (it holds `.layers`); LoRA targets live under it.
        projector: dotted path of the vision-language projector (EProj replaces it; train_projector trains it).
        vision_tower: dotted path of the vision encoder (never wrapped by LoRA).
        batch_keys: processor outputs besides input_ids, attention_mask and pixel_values that the model
            needs in every batch (training and generation).
        image_features: (model, batch, feature) -> (images, hidden), frozen pooled image features.
        projector_rows: (model, batch) -> (images,), rows of the projector input owned by each image.
        pixel_images: how many images a batch's pixel_values hold: 'dim0' (first dimension), 'grid'
            (rows of image_grid_thw), 'slots' (non-padding image slots of (samples, slots, ...)) or
            'runs' (runs of image tokens; tiles make pixel_values longer than the image count).
    """

    model_type: str
    model_class: str
    processor_class: str
    language_model: str
    projector: str
    vision_tower: str
    image_features: Callable[[nn.Module, dict[str, Tensor], ImageFeature], Tensor] = field(repr=False)
    projector_rows: Callable[[nn.Module, dict[str, Tensor]], Tensor] = field(default=_one_row, repr=False)
    batch_keys: tuple[str, ...] = ()
    pixel_images: Literal["dim0", "grid", "slots", "runs"] = "dim0"

    @property
    def language_model_regex(self) -> str:
        """Regex of the language model's module path (peft names start at the bare model)."""
        return self.language_model.replace(".", r"\.")


FAMILIES: dict[str, Family] = {}


def register_family(family: Family, replace: bool = False) -> Family:
    """Make `family` known under its `model_type`; an existing name is refused unless `replace=True`."""
    if family.model_type in FAMILIES and not replace:
        raise ConfigError(f"a family is already registered for model type {family.model_type!r}; pass "
                          "replace=True to override it")
    FAMILIES[family.model_type] = family
    return family


def family_for(model_type: str) -> Family:
    if model_type not in FAMILIES:
        raise ConfigError(f"citkit does not know the architecture {model_type!r} (config.model_type); known: "
                          f"{', '.join(sorted(FAMILIES))}. To add one, register a Family with "
                          "citkit.models.families.register_family(...) (see docs/families.md)")
    return FAMILIES[model_type]


def family_of(model: nn.Module) -> Family:
    """The registered family of `model` (bare or peft-wrapped), by `config.model_type`."""
    return family_for(str(getattr(getattr(core_model(model), "config", None), "model_type", "")))


def _module(model: nn.Module, path: str) -> nn.Module:
    return core_model(model).get_submodule(path)


def language_model(model: nn.Module) -> nn.Module:
    return _module(model, family_of(model).language_model)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    return language_model(model).layers  # type: ignore[return-value]


def projector(model: nn.Module) -> nn.Module:
    return _module(model, family_of(model).projector)


def set_projector(model: nn.Module, module: nn.Module) -> None:
    """Put `module` where the projector is (EProj's expert projector)."""
    parent, _, name = family_of(model).projector.rpartition(".")
    setattr(core_model(model).get_submodule(parent), name, module)


def vision_tower(model: nn.Module) -> nn.Module:
    return _module(model, family_of(model).vision_tower)


def image_feature_size(model: nn.Module) -> int:
    """Width of `pooled_image_features` (the vision encoder's width; Qwen2-VL calls it embed_dim)."""
    config = vision_tower(model).config
    return int(getattr(config, "embed_dim", None) or config.hidden_size)


def input_embeddings(model: nn.Module) -> nn.Module:
    return core_model(model).get_input_embeddings()


def image_token_id(model: nn.Module) -> int:
    config = core_model(model).config
    value = getattr(config, "image_token_id", None)
    value = getattr(config, "image_token_index", None) if value is None else value
    if value is None:
        raise ConfigError(f"{type(core_model(model)).__name__}'s config names no image token (image_token_id)")
    return int(value)


def image_token_runs(input_ids: Tensor, image_token: int) -> tuple[list[int], list[int]]:
    """(sample index, length) of every maximal run of consecutive image tokens, in reading order."""
    is_image = (input_ids == image_token).long()  # (batch, seq)
    starts = is_image.diff(dim=1, prepend=is_image.new_zeros(is_image.shape[0], 1)) == 1
    ends = is_image.diff(dim=1, append=is_image.new_zeros(is_image.shape[0], 1)) == -1
    start_rows, start_cols = starts.nonzero(as_tuple=True)
    _, end_cols = ends.nonzero(as_tuple=True)
    return start_rows.tolist(), (end_cols - start_cols + 1).tolist()


def count_images(model: nn.Module, batch: dict[str, Tensor]) -> int:
    """How many images `batch` holds (0 without pixel_values)."""
    pixels = batch.get("pixel_values")
    if pixels is None or pixels.shape[0] == 0:
        return 0
    layout = family_of(model).pixel_images
    if layout == "grid":
        return int(batch["image_grid_thw"].shape[0])
    if layout == "slots":
        return int(pixels.flatten(2).ne(0).any(-1).sum())
    if layout == "runs":
        return len(image_token_runs(batch["input_ids"], image_token_id(model))[0])
    return int(pixels.shape[0])


def projector_rows(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """(images,) rows of the projector's input that belong to each image of `batch`."""
    return family_of(model).projector_rows(model, batch)


@torch.no_grad()
def pooled_image_features(model: nn.Module, batch: dict[str, Tensor], feature: ImageFeature = "pooled") -> Tensor:
    """(images, vision_hidden): one frozen vector per image of `batch`, in the order of image_owners.

    'pooled': the tower's pooled output where it has one (CLIP's CLS, SigLIP's attention pooling),
    else the mean of its last hidden states; 'mean': always that mean."""
    return family_of(model).image_features(model, batch, feature)


def image_owners(input_ids: Tensor, num_images: int, image_token_id: int) -> Tensor:
    """(num_images,) the sample each image of the batch belongs to (images come in sample order).

    Each image is one run of consecutive image tokens; when the runs do not match `num_images` (a
    family that splits an image into several runs), the image tokens are split evenly over the images."""
    rows, _ = image_token_runs(input_ids, image_token_id)
    if len(rows) == num_images:
        return torch.tensor(rows, dtype=torch.long, device=input_ids.device)
    per_sample = (input_ids == image_token_id).sum(1)  # (batch,) image tokens per sample
    total = int(per_sample.sum())
    per_image = total // max(1, num_images)
    if num_images == 0 or per_image == 0 or per_image * num_images != total:
        raise ConfigError(f"{total} image tokens in {len(rows)} runs do not split over {num_images} images")
    return torch.repeat_interleave(torch.arange(input_ids.shape[0], device=input_ids.device), per_sample // per_image)


def instruction_mask(batch: dict[str, Tensor], skip_ids: Tensor) -> Tensor:
    """(batch, seq) True on instruction tokens: attended, not template/special/image, not an answer token."""
    input_ids = batch["input_ids"]
    keep = batch["attention_mask"].bool() & ~torch.isin(input_ids, skip_ids.to(input_ids.device))
    if "labels" in batch:
        keep &= batch["labels"] == IGNORE_INDEX
    return keep


def mean_instruction_embedding(model: nn.Module, batch: dict[str, Tensor], keep: Tensor) -> Tensor:
    """(batch, hidden): the base input embeddings mean-pooled over each sample's `keep` tokens."""
    embeds = input_embeddings(model)(batch["input_ids"]).float()  # (batch, seq, hidden)
    weights = keep.unsqueeze(-1).float()
    return (embeds * weights).sum(1) / weights.sum(1).clamp(min=1)


# --- the built-in families (transformers 5 layout) ----------------------------------------------------------

_LLAVA_PARTS = dict(language_model="model.language_model", projector="model.multi_modal_projector",
                    vision_tower="model.vision_tower")
_QWEN_PARTS = dict(language_model="model.language_model", projector="model.visual.merger", vision_tower="model.visual",
                   image_features=_patch_mean, projector_rows=_grid_rows,
                   batch_keys=("image_grid_thw", "mm_token_type_ids"),  # M-RoPE needs the token types
                   pixel_images="grid")
_IDEFICS_PARTS = dict(language_model="model.text_model", projector="model.connector", vision_tower="model.vision_model",
                      image_features=_per_sample_slots, batch_keys=("pixel_attention_mask",), pixel_images="slots")

for _family in (
    Family("llava", "LlavaForConditionalGeneration", "LlavaProcessor", image_features=_images_first, **_LLAVA_PARTS),
    Family("llava_next", "LlavaNextForConditionalGeneration", "LlavaNextProcessor", image_features=_anyres_overview,
           projector_rows=_anyres_rows, batch_keys=("image_sizes",), **_LLAVA_PARTS),
    Family("llava_onevision", "LlavaOnevisionForConditionalGeneration", "LlavaOnevisionProcessor",
           image_features=_anyres_overview, projector_rows=_anyres_rows, batch_keys=("image_sizes", "batch_num_images"),
           **_LLAVA_PARTS),
    Family("qwen2_vl", "Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", **_QWEN_PARTS),
    Family("qwen2_5_vl", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", **_QWEN_PARTS),
    Family("qwen3_vl", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor", **_QWEN_PARTS),
    Family("internvl", "InternVLForConditionalGeneration", "InternVLProcessor", image_features=_tiles_mean,
           projector_rows=_internvl_rows, pixel_images="runs", **_LLAVA_PARTS),
    Family("idefics3", "Idefics3ForConditionalGeneration", "Idefics3Processor", **_IDEFICS_PARTS),
    Family("smolvlm", "SmolVLMForConditionalGeneration", "SmolVLMProcessor", **_IDEFICS_PARTS),
    Family("gemma3", "Gemma3ForConditionalGeneration", "Gemma3Processor", image_features=_images_first,
           batch_keys=("token_type_ids",), **_LLAVA_PARTS),
):
    register_family(_family)
