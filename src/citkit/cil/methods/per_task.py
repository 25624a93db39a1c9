"""One LoRA adapter per task on the ViT, earlier ones frozen but in the forward pass (O-LoRA, InfLoRA, SD-LoRA)."""

from __future__ import annotations

from typing import Any

from torch import nn

from citkit.cil.backbone import add_lora, set_active_adapters
from citkit.cil.methods.base import CILMethod, as_classifier
from citkit.cil.stream import CILTask
from citkit.errors import ConfigError


def adapter_name(task_index: int) -> str:
    return f"task_{task_index}"


class PerTaskLoRA(CILMethod):
    """Adds adapter `task_<t>` before task t; all adapters active, the newest trains."""

    def __init__(self, config: Any = None, adapter: Any = None) -> None:
        super().__init__(config, adapter)
        self.adapters: list[str] = []

    def attach(self, model: nn.Module) -> nn.Module:
        self._add(model, 0)
        self.activate(model)
        return model

    def resume(self, model: nn.Module, finished: list[str]) -> nn.Module:
        for index in range(len(self.adapters), len(finished)):
            self._add(model, index)
        self.activate(model)
        return model

    def before_task(self, task: CILTask, model: nn.Module) -> None:
        if task.index not in (len(self.adapters) - 1, len(self.adapters)):
            raise ConfigError(f"{type(self).__name__}: task {task.name} (index {task.index}) after adapters "
                              f"{self.adapters}; tasks must come in stream order")
        if task.index == len(self.adapters):
            self._add(model, task.index)
        self.activate(model)
        super().before_task(task, model)

    def activate(self, model: nn.Module) -> None:
        set_active_adapters(as_classifier(model), list(self.adapters), [self.adapters[-1]])

    def prepare_inference(self, model: nn.Module) -> None:
        self.activate(model)

    def _add(self, model: nn.Module, index: int) -> None:
        add_lora(as_classifier(model), self.adapter, adapter_name(index))
        self.adapters.append(adapter_name(index))

    def extra_state(self) -> dict[str, Any]:
        return {"adapters": list(self.adapters)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        saved = list(state.get("adapters", []))
        if saved and saved != self.adapters[:len(saved)]:
            raise ConfigError(f"{type(self).__name__}: checkpoint adapters {saved} differ from the rebuilt "
                              f"{self.adapters}")
