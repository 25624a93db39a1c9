"""O-LoRA on the ViT: one LoRA per task, the new A kept orthogonal to the old A's (citkit.methods.olora's
penalty and options, unchanged)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from citkit.cil.backbone import lora_layers
from citkit.cil.methods.base import as_classifier, register_cil_method
from citkit.cil.methods.per_task import PerTaskLoRA
from citkit.methods.olora import OLoRAConfig, orthogonality_penalty


@register_cil_method("o-lora")
class CILOLoRA(PerTaskLoRA):
    """Wang et al. 2023 on a classifier: loss = masked CE + lambda1 sum ||A_s A_t^T||_1 + lambda2 ||(A_t, B_t)||^2."""

    config_class = OLoRAConfig

    def loss(self, batch: dict[str, Tensor], outputs: Any, model: nn.Module) -> dict[str, Tensor]:
        current, previous = self.adapters[-1], self.adapters[:-1]
        orthogonality = outputs.logits.new_zeros(())
        size = outputs.logits.new_zeros(())
        for _, layer in lora_layers(as_classifier(model)):
            a_new, b_new = layer.lora_A[current].weight, layer.lora_B[current].weight
            orthogonality = orthogonality + orthogonality_penalty([layer.lora_A[s].weight for s in previous], a_new)
            size = size + (a_new.square().sum() + b_new.square().sum() if self.config.l2_form == "squared"
                           else a_new.norm() + b_new.norm())
        return {"orthogonality": self.config.orthogonality_weight * orthogonality, "l2": self.config.l2_weight * size}
