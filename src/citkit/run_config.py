"""The configuration of one continual run, and how it is built from files and overrides."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from citkit.config import from_dict, parse_override, set_path, to_dict
from citkit.data.streams import StreamConfig, stream_title
from citkit.engine.config import TrainConfig
from citkit.errors import ConfigError
from citkit.eval.evaluator import EvalConfig
from citkit.methods import METHODS
from citkit.models.loading import ModelConfig
from citkit.models.lora import AdapterConfig


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a continual run's numbers."""

    method: str = field(default="lora-ft", metadata={"help": "Method name (see `citkit methods`)."})
    method_options: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "Options of the method's own config (set with --set method.NAME=VALUE).")})
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = field(default=0, metadata={"help": "Seed of the adapter init, data order and dropout."})
    name: str = field(default="", metadata={"help": "Run name (default: <stream>-<method>-seed<seed>)."})
    runs_dir: str = field(default="runs", metadata={"help": "Folder that holds run directories."})

    def __post_init__(self) -> None:
        METHODS.get(self.method)  # unknown names fail here, with suggestions
        self.method_config()  # so do unknown or ill-typed method options

    @property
    def run_name(self) -> str:
        return self.name or self.default_name()

    def default_name(self, label: str = "") -> str:
        """`<stream>-<label or method>-seed<seed>`; a stream file counts by its `name:`, not its file name."""
        return f"{safe_name(stream_title(self.stream.name))}-{label or self.method}-seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.run_name

    def method_config(self) -> Any:
        cls = METHODS.get(self.method).config_class
        return from_dict(cls, self.method_options, f"method ({self.method})")

    def identity(self) -> dict[str, Any]:
        """The settings that must match for a run directory to be resumed (not names or progress bars)."""
        data = to_dict(self)
        data.pop("runs_dir")
        for key in ("progress", "log_every", "log_with", "num_workers"):  # how, not what, is computed
            data["train"].pop(key)
        for key in ("cache_items", "allow_unknown_tokens", "allow_images_outside_root"):  # refusals, not numbers
            data["stream"].pop(key)
        data["eval"].pop("batch_size")
        data["method_options"] = to_dict(self.method_config())
        return data


def safe_name(text: str) -> str:
    """`text` as one folder name: runs of characters other than letters, digits, '.', '_' and '-' become '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "stream"


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Set each `--set NAME=VALUE` in `data`; `method.X` goes to the method's options (`method_options.X`)."""
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "method" and len(path) > 1:
            path = ["method_options", *path[1:]]
        set_path(data, path, value)
    return data


def build_run_config(base: dict[str, Any] | None = None, overrides: list[str] = (), **top: Any) -> RunConfig:
    """A RunConfig from a dict (e.g. a YAML preset), `--set` overrides and top-level keyword values."""
    data: dict[str, Any] = dict(base or {})
    for key, value in top.items():
        if value is not None:
            data[key] = value
    return from_dict(RunConfig, apply_overrides(data, overrides))


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return data


def with_name(config: RunConfig, name: str) -> RunConfig:
    return replace(config, name=name)
