"""What a user may set for HiDe-LLaVA; each field says what it changes and the paper's value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from citkit.errors import ConfigError

Layout = Literal["hierarchical", "merge-all", "expand-all"]
Fusion = Literal["code", "paper"]
AnchorEncoder = Literal["model", "clip"]
ImageFeature = Literal["pooled", "mean"]
ExpertInit = Literal["kaiming", "normal"]


@dataclass(frozen=True)
class HiDeConfig:
    """HiDe-LLaVA (Guo et al., ACL 2025): task-specific expansion on top, task-general fusion below."""

    layout: Layout = field(default="hierarchical", metadata={"help": (
        "'hierarchical' (the paper): routed experts in `expanded_layers`, fused experts elsewhere; "
        "'merge-all' (ablation, 61.26 Last in the paper): fused everywhere; 'expand-all' (ablation, "
        "67.62 Last, 5.2x the parameters): routed everywhere.")})
    expanded_layers: tuple[int, ...] = field(default=(-1,), metadata={"help": (
        "Decoder layers with task-specific expansion when layout=hierarchical; negative counts from the top "
        "(-1 = the last block, as in the paper; read from the model's num_hidden_layers). Check where your "
        "model becomes task-specific with `citkit analyze cka`.")})
    temperature: float = field(default=0.1, metadata={"help": (
        "Softmax temperature of the routing weights d = softmax(r / T) over the trained tasks (paper: 0.1).")})
    image_weight: float = field(default=0.5, metadata={"help": (
        "r_c = w cos(img, imgAnchor_c) + (1 - w) cos(txt, txtAnchor_c) (paper: w = 0.5). Samples without an "
        "image use the text term alone.")})
    center_features: bool = field(default=True, metadata={"help": (
        "Subtract the mean of the trained tasks' anchors from anchors and sample features before the cosine. "
        "Mean-pooled features are dominated by what every task shares (template words, image style), so raw "
        "cosines are all close and softmax(r / 0.1) is near uniform; centring keeps only what tells tasks "
        "apart. False = the paper's raw cosine (meant for CLIP features). Measured on the first toy world "
        "(seed 0, expand-all experts scored with each router; README): centring gives the higher MFN at image "
        "weight 0.5 (43.3 vs 39.8) and 0 (75.2 vs 57.7), hence the default; raw cosines pick the right expert "
        "more often at 0.5 (89.8% vs 60.4%) but spread the weight (45.8% vs 57.9% on the true task).")})
    fusion: Fusion = field(default="code", metadata={"help": (
        "Task-general fusion of the experts in the non-expanded layers: 'code' = s (sum_c B_c)(sum_c A_c) as in "
        "the authors' code, which produced the published numbers; 'paper' = s sum_c B_c A_c as the paper "
        "writes it. Code fusion stores one LoRA in those layers (the experts are folded into their sums); "
        "paper fusion keeps every expert. Recorded in the run's method state.")})
    expert_init: ExpertInit = field(default="normal", metadata={"help": (
        "Initial A of each new expert (B starts at zero either way): 'normal' = N(0, 0.01^2) as in the authors' "
        "code (the default); 'kaiming' = Kaiming-uniform as peft's LoRA (std 1/sqrt(3 in), 0.051 at 128 inputs, "
        "the same scale as 0.01 only at width ~3,300). Small A's end up dominated by what training writes into "
        "them, which changes how alike the experts' A's are, hence what code fusion's cross terms B_i A_j add.")})
    oracle_routing: bool = field(default=False, metadata={"help": (
        "Diagnostic, not a method: at evaluation the expanded layers put all their weight on the test sample's "
        "own task (known from the test set being scored) when that task has been trained; samples of tasks not "
        "yet trained are routed by the anchors as usual. The gap to a run without it is what routing costs. "
        "The report's routing table still measures the anchors' router.")})
    vision_experts: bool = field(default=False, metadata={"help": (
        "Ablation, not in the paper: also give every linear layer of the vision tower one expert per task, "
        "routed like the expanded layers (the router's own image features still come from the frozen tower). "
        "Asks whether a task's own reading of the image, given a place in the vision tower, leaves the "
        "decoder's lower blocks more task-general (`citkit analyze blocks`).")})
    anchor_encoder: AnchorEncoder = field(default="model", metadata={"help": (
        "Features of the anchors and of test samples: 'model' = the model's own frozen vision tower for images "
        "and the frozen base LLM input embeddings, mean-pooled over the instruction tokens, for text; 'clip' = "
        "a CLIP dual encoder loaded from `clip_path` (the authors' choice: CLIP image_embeds and text pooler).")})
    clip_path: str = field(default="", metadata={"help": (
        "Local folder of a CLIP model (CLIPModel + tokenizer saved with save_pretrained); needed when "
        "anchor_encoder=clip. Nothing is downloaded.")})
    image_feature: ImageFeature = field(default="pooled", metadata={"help": (
        "With anchor_encoder=model: the vision tower's 'pooled' (CLS) output or the 'mean' of its patch states.")})
    anchor_samples: int = field(default=1000, metadata={"help": (
        "Training samples per task whose features are averaged into the task's anchors.")})
    feature_batch_size: int = field(default=32, metadata={"help": "Samples per forward pass when computing anchors."})

    def __post_init__(self) -> None:
        if self.layout not in ("hierarchical", "merge-all", "expand-all"):
            raise ConfigError(f"hide-llava: layout {self.layout!r} is unknown; use hierarchical, merge-all or "
                              "expand-all")
        if self.fusion not in ("code", "paper"):
            raise ConfigError(f"hide-llava: fusion {self.fusion!r} is unknown; use 'code' or 'paper'")
        if self.layout == "hierarchical" and not self.expanded_layers:
            raise ConfigError("hide-llava: expanded_layers is empty; list at least one layer (e.g. -1) or set "
                              "layout=merge-all")
        if self.temperature <= 0:
            raise ConfigError(f"hide-llava: temperature must be > 0, got {self.temperature}")
        if not 0 <= self.image_weight <= 1:
            raise ConfigError(f"hide-llava: image_weight must be in [0, 1], got {self.image_weight}")
        if self.expert_init not in ("kaiming", "normal"):
            raise ConfigError(f"hide-llava: expert_init {self.expert_init!r} is unknown; use 'kaiming' or 'normal'")
        if self.anchor_encoder not in ("model", "clip"):
            raise ConfigError(f"hide-llava: anchor_encoder {self.anchor_encoder!r} is unknown; use 'model' or 'clip'")
        if self.anchor_encoder == "clip" and not self.clip_path:
            raise ConfigError("hide-llava: anchor_encoder=clip needs clip_path, the local folder of a CLIP model")
        if self.image_feature not in ("pooled", "mean"):
            raise ConfigError(f"hide-llava: image_feature {self.image_feature!r} is unknown; use 'pooled' or 'mean'")
        if self.anchor_samples < 1 or self.feature_batch_size < 1:
            raise ConfigError(f"hide-llava: anchor_samples and feature_batch_size must be >= 1, got "
                              f"{self.anchor_samples}, {self.feature_batch_size}")

    def expanded(self, num_layers: int) -> frozenset[int]:
        """The decoder layer indices (0-based) that get routed experts, for a model of `num_layers` blocks."""
        if self.layout == "merge-all":
            return frozenset()
        if self.layout == "expand-all":
            return frozenset(range(num_layers))
        resolved = set()
        for index in self.expanded_layers:
            if not -num_layers <= index < num_layers:
                raise ConfigError(f"hide-llava: expanded layer {index} does not exist; the model has {num_layers} "
                                  f"decoder layers (use 0..{num_layers - 1}, or -1 for the top one)")
            resolved.add(index % num_layers)
        return frozenset(resolved)
