"""Tensors in and out of Flower records, and the bytes they cost.

Only adapters (and a trained projector) travel, as float32: Flower's ArrayRecord keeps numpy arrays, which
have no bfloat16. Bytes are counted as the arrays' data (numel x itemsize), what the messages carry
apart from Flower's framing.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import Tensor


def to_record(tensors: dict[str, Tensor]) -> ArrayRecord:
    """An ArrayRecord of float32 copies (integer tensors keep their type), by name, in name order."""
    arrays = {}
    for name in sorted(tensors):
        value = tensors[name].detach().to("cpu")
        if value.is_floating_point():
            value = value.float()
        arrays[name] = Array(np.ascontiguousarray(value.numpy()))
    return ArrayRecord(arrays)


def from_record(record: ArrayRecord) -> dict[str, Tensor]:
    """Tensors of an ArrayRecord, by name (copies, so the record may be reused)."""
    return {name: torch.from_numpy(np.array(array.numpy(), copy=True)) for name, array in record.items()}


def tensor_bytes(tensors: dict[str, Tensor]) -> int:
    """Bytes of `tensors` sent as float32 (integers at their own size)."""
    return sum(t.numel() * (4 if t.is_floating_point() else t.element_size()) for t in tensors.values())


def record_bytes(record: ArrayRecord) -> int:
    """Data bytes of an ArrayRecord."""
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in record.values())
