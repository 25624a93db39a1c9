"""Activation memory of one training micro-batch: what autograd keeps between forward and backward.

The base model is frozen, so a frozen linear layer saves nothing for the backward pass (the gradient
with respect to its input needs only its weight). What is kept, per decoder layer and per token, for
a Llama-style block (RMSNorm, rotary attention, gated MLP) whose input requires a gradient:

    norms      2 x (4 h + 4)          each RMSNorm keeps its float32 input and the rsqrt
    attention  sdpa:  d (a + 2 g + a) hd + 4 a
                      q, k, v after rotary (k, v at the kv heads g), the output, the log-sum-exp
               eager: d (3 a hd) + a s (4 + d if d != 4 else 4)
                      q and the repeated k, v; the float32 softmax (its cast to d when d != 4):
                      the attention scores, a x s per token, the only term quadratic in s
    mlp        3 i d                  act(gate) keeps gate's output; gate * up keeps both factors
    adapters   traced exactly         what each adapted module keeps (its dropout mask and
                                      dropped input, LoRA's rank-r middle), read off the module

with h hidden size, i intermediate size, a attention heads, g kv heads, hd head dim, s sequence
length and d the activation bytes (the model dtype, or 2 under bf16/fp16 mixed precision). Outside
the blocks: the final norm (4 h), the logits held in the model output (V d per token, V the vocab)
and the float32 log-softmax of the cross-entropy (4 V); the backward pass of the loss briefly
adds two more float32 logit-sized tensors (8 V per token, counted as `backward transient`).

With gradient checkpointing (one checkpoint per decoder layer) only each block's input is kept
(L h d per token) plus one block's full activations while it is recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TextShape:
    """The sizes of a decoder-only language model that set its activation memory."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    attention: str  # 'sdpa', 'eager', ... (anything but 'eager' is counted as a fused kernel, O(s))


def block_bytes_per_token(shape: TextShape, seq_len: int, act_bytes: int) -> int:
    """Bytes a frozen decoder block keeps per token for the backward pass (adapters excluded)."""
    h, a, g, hd = shape.hidden, shape.heads, shape.kv_heads, shape.head_dim
    norms = 2 * (4 * h + 4)
    if shape.attention == "eager":
        scores = a * seq_len * (4 + act_bytes if act_bytes != 4 else 4)  # (heads, s) per query token
        attention = act_bytes * 3 * a * hd + scores
    else:
        attention = act_bytes * (2 * a + 2 * g) * hd + 4 * a
    mlp = 3 * shape.intermediate * act_bytes
    return norms + attention + mlp


def logits_bytes_per_token(shape: TextShape, act_bytes: int) -> tuple[int, int]:
    """(kept, backward transient) bytes per token of the final norm, logits and cross-entropy."""
    kept = 4 * shape.hidden + shape.vocab * act_bytes + 4 * shape.vocab
    return kept, 8 * shape.vocab


def saved_bytes(module: nn.Module, make_input: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd saves while `module` runs on `make_input()` (parameters excluded).

    Runs on whatever device the module is on; on the meta device nothing is computed. Tensors saved
    twice (or as views of one another) count once."""
    own = {id(t) for t in module.parameters()} | {id(t) for t in module.buffers()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        base = tensor._base if tensor._base is not None else tensor
        if id(base) not in own and id(tensor) not in own:
            saved[id(base)] = base.numel() * base.element_size()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(make_input())
    return sum(saved.values())
