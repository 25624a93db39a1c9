"""Load an image-text-to-text model and its processor from a local folder or a hub id.

The same path serves the built-in tiny model (a folder written by `save_pretrained`) and a real
checkpoint such as `llava-hf/llava-1.5-7b-hf`: both go through the Auto classes. Weights are read
from safetensors only, and remote code runs only when the user asks for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from citkit.errors import ConfigError, ModelLoadError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelConfig:
    """Which base model to continue-tune."""

    path: str = field(default="tiny", metadata={"help": (
        "'tiny' for the built-in pretrained toy model ('tiny-v1': the first one, for the toy-format streams), "
        "a local folder saved with save_pretrained, or a "
        "hub id already in the local cache (nothing is downloaded when HF_HUB_OFFLINE=1).")})
    dtype: str = field(default="float32", metadata={"help": "float32, bfloat16 or float16 weights."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code shipped with the checkpoint to run."})
    attn_implementation: str | None = field(default=None, metadata={"help": (
        "e.g. 'sdpa' or 'eager'; default: transformers' choice.")})
    quantization: str | None = field(default=None, metadata={"help": (
        "Load the base weights in '4bit' (NF4, QLoRA) or '8bit' with bitsandbytes (installed separately, GPU); "
        "adapters train in model.dtype on top. None: unquantized.")})

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"model.dtype {self.dtype!r} is not supported; use one of {', '.join(DTYPES)}")
        if self.quantization not in (None, "4bit", "8bit"):
            raise ConfigError(f"model.quantization {self.quantization!r}: use '4bit', '8bit' or none")


def load_processor(path: str | Path, trust_remote_code: bool = False) -> Any:
    try:
        return AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load a processor from {path}: {str(error).splitlines()[0]}") from None


def quantization_config(quantization: str | None, dtype: str) -> Any:
    """transformers' BitsAndBytesConfig for '4bit' (NF4, double quantization, compute in `dtype`) or '8bit'."""
    if quantization is None:
        return None
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"model.quantization={quantization!r} needs the bitsandbytes package (pip install "
                          "bitsandbytes, on a machine with a supported GPU); or drop model.quantization")
    from transformers import BitsAndBytesConfig

    if quantization == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=DTYPES[dtype])
    return BitsAndBytesConfig(load_in_8bit=True)


def load_model(path: str | Path, dtype: str = "float32", trust_remote_code: bool = False,
               attn_implementation: str | None = None, quantization: str | None = None) -> torch.nn.Module:
    """Load with `AutoModelForImageTextToText.from_pretrained` (safetensors only)."""
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype], "use_safetensors": True, "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization, dtype)
    previous = logging.getLogger("transformers").level
    try:
        return AutoModelForImageTextToText.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load a model from {path}: {str(error).splitlines()[0]}") from None
    finally:
        logging.getLogger("transformers").setLevel(previous)


def check_model_path(path: str | Path) -> None:
    """Fail early, with one line, for a local-looking path that does not exist."""
    text = str(path)
    looks_local = text.startswith((".", "/", "~")) or Path(text).exists() or text.count("/") != 1
    if looks_local and not Path(text).expanduser().is_dir():
        raise ModelLoadError(f"model path {text!r} is not a folder; pass a folder saved with save_pretrained, "
                             "a cached hub id (owner/name) or 'tiny'")
