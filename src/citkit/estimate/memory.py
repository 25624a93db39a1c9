"""`estimate(config)`: the memory a run will need per device, before anything runs.

Every figure is in bytes (parameter counts where named so). Parameter counts are exact: the model
is built on the meta device and the method attached as a run does (`estimate.structure`). State
and activations follow the formulas below and in `estimate.activations`:

- gradients: one per trainable parameter, in its dtype;
- optimizer: torch's AdamW keeps two moments shaped like each trainable parameter (same dtype).
  citkit keeps no separate float32 master copy: under mixed precision the weights stay in
  `model.dtype` and autocast casts, and peft keeps the adapters of half-precision models in float32;
- method state kept on the device: EWC/MAS importance (float32) + owner task (int16) + anchor
  (a copy of the trainable parameters), with TIR one more float32 importance (the rescaled one);
  LwF's teacher, a copy of the trainable parameters; HiDe-LLaVA and EProj anchors or keys (one
  vector per task). Replay keeps sample ids on the host: nothing on the device. Experts and
  per-task adapters are parameters, counted in `added`;
- DDP (processes > 1, sharding none): everything replicated, plus DDP's gradient buckets (one more
  copy of the gradients); zero2 divides gradients and optimizer state by the processes; zero3 (FSDP
  full sharding) also the weights, plus two gathered decoder layers (the one computing and the one
  prefetched). Activations and method state are per device in every case.

The total is the sum of everything, an upper bound of the training peak by at most the gradients
(citkit frees them after each step, so they never coexist with a whole forward pass).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Literal

from citkit.errors import ConfigError
from citkit.estimate.activations import block_bytes_per_token, logits_bytes_per_token
from citkit.estimate.streams import stream_task_count
from citkit.estimate.structure import Structure, structure_after

if TYPE_CHECKING:
    from citkit.run_config import RunConfig

Sharding = Literal["none", "zero2", "zero3"]
DEFAULT_TEXT_TOKENS = 256  # text tokens per sample when --seq-len is not given (prompt + answer)


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory of one training run, per device. Bytes unless the name says parameters."""

    model: str
    method: str
    stream: str
    tasks: int
    batch_size: int
    seq_len: int
    processes: int
    sharding: str
    attention: str
    base_parameters: int
    added_parameters: int
    trainable_parameters: int
    stored_parameters: int
    base_bytes: int
    added_bytes: int
    stored_bytes: int           # one task's checkpoint: stored parameters + method tensors
    gradient_bytes: int
    optimizer_bytes: int
    method_state_bytes: int
    method_activation_bytes: int  # extra activations of the method's loss (LwF's teacher logits)
    activation_bytes: int         # one micro-batch, no gradient checkpointing (incl. backward transient)
    activation_checkpointed_bytes: int
    communication_bytes: int      # DDP buckets or ZeRO-3 gathered layers
    total_bytes: int
    total_checkpointed_bytes: int

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) rows for a table; sizes in GiB/MiB, counts with thousands separators."""
        shard = f", {self.sharding}" if self.processes > 1 else ""
        return [
            ("setting", f"{self.method} on {self.model}, {self.stream} ({self.tasks} tasks), batch {self.batch_size} "
                        f"x seq {self.seq_len}, {self.attention} attention, {self.processes} process(es){shard}"),
            ("base parameters", f"{self.base_parameters:,} ({human(self.base_bytes)})"),
            ("added parameters (adapters, experts)", f"{self.added_parameters:,} ({human(self.added_bytes)})"),
            ("trainable parameters", f"{self.trainable_parameters:,}"),
            ("stored per task checkpoint", f"{self.stored_parameters:,} parameters ({human(self.stored_bytes)} "
                                           "with method state)"),
            ("weights on device", human(self._weights())),
            ("gradients", human(self.gradient_bytes)),
            ("optimizer (AdamW)", human(self.optimizer_bytes)),
            ("method state", human(self.method_state_bytes)),
            ("activations", human(self.activation_bytes + self.method_activation_bytes)),
            ("activations, gradient checkpointing", human(self.activation_checkpointed_bytes
                                                          + self.method_activation_bytes)),
            ("communication buffers", human(self.communication_bytes)),
            ("total per device", human(self.total_bytes)),
            ("total per device, gradient checkpointing", human(self.total_checkpointed_bytes)),
        ]

    def to_markdown(self) -> str:
        lines = ["| what | per device |", "|---|---|"]
        lines += [f"| {what} | {value} |" for what, value in self.rows()]
        return "\n".join(lines)

    def _weights(self) -> int:
        return self.total_bytes - self.gradient_bytes - self.optimizer_bytes - self.method_state_bytes \
            - self.activation_bytes - self.method_activation_bytes - self.communication_bytes


def human(size: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def estimate(config: RunConfig, seq_len: int | None = None, processes: int = 1,
             sharding: Sharding = "none") -> MemoryEstimate:
    """Memory per device of training `config` on its stream's last task, without loading weights.

    Args:
        config: the run (model, method, adapter, stream, train.batch_size, train.mixed_precision).
        seq_len: tokens per sample; default the model's image tokens + 256 text tokens, capped at
            the model's maximum positions.
        processes: data-parallel processes (devices).
        sharding: 'none' (DDP: all replicated), 'zero2' (gradients and optimizer sharded) or 'zero3'
            (FSDP / ZeRO-3: weights too).
    """
    if processes < 1:
        raise ConfigError(f"estimate: processes must be >= 1, got {processes}")
    if sharding not in ("none", "zero2", "zero3"):
        raise ConfigError(f"estimate: sharding {sharding!r} is unknown; use none, zero2 or zero3")
    if seq_len is not None and seq_len < 1:
        raise ConfigError(f"estimate: seq_len must be >= 1, got {seq_len}")
    tasks = stream_task_count(config.stream)
    structure = structure_after(config, tasks)
    if seq_len is None:
        seq_len = structure.image_tokens + DEFAULT_TEXT_TOKENS
        if structure.max_positions:
            seq_len = min(seq_len, structure.max_positions)
    state, checkpointed_state = method_state_bytes(config, structure, tasks)
    act_bytes = 2 if config.train.mixed_precision in ("bf16", "fp16") else _dtype_bytes(config.model.dtype)
    activation, checkpointed = activation_bytes(structure, config.train.batch_size, seq_len, act_bytes)
    method_activation = method_activation_bytes(config, structure, config.train.batch_size, seq_len, act_bytes)

    weights = structure.base_bytes + structure.added_bytes
    gradients = structure.trainable_bytes
    optimizer = 2 * structure.trainable_bytes
    communication = 0
    if processes > 1 and sharding == "none":
        communication = gradients  # DDP's gradient buckets
    if processes > 1 and sharding in ("zero2", "zero3"):
        gradients, optimizer = _ceil(gradients, processes), _ceil(optimizer, processes)
    if processes > 1 and sharding == "zero3":
        weights = _ceil(weights, processes)
        communication = 2 * structure.largest_layer_bytes
    fixed = weights + gradients + optimizer + state + method_activation + communication
    return MemoryEstimate(
        model=config.model.path, method=config.method, stream=config.stream.name, tasks=tasks,
        batch_size=config.train.batch_size, seq_len=seq_len, processes=processes, sharding=sharding,
        attention=structure.text.attention,
        base_parameters=structure.base_parameters, added_parameters=structure.added_parameters,
        trainable_parameters=structure.trainable_parameters, stored_parameters=structure.stored_parameters,
        base_bytes=structure.base_bytes, added_bytes=structure.added_bytes,
        stored_bytes=structure.stored_bytes + checkpointed_state,
        gradient_bytes=gradients, optimizer_bytes=optimizer, method_state_bytes=state,
        method_activation_bytes=method_activation, activation_bytes=activation,
        activation_checkpointed_bytes=checkpointed, communication_bytes=communication,
        total_bytes=fixed + activation, total_checkpointed_bytes=fixed + checkpointed)


def activation_bytes(structure: Structure, batch_size: int, seq_len: int, act_bytes: int) -> tuple[int, int]:
    """(without, with gradient checkpointing) activation bytes of one micro-batch; see `activations`."""
    tokens = batch_size * seq_len
    block = block_bytes_per_token(structure.text, seq_len, act_bytes)
    per_layer = [block + adapters for adapters in structure.adapter_bytes_per_token]
    kept, transient = logits_bytes_per_token(structure.text, act_bytes)
    projector = batch_size * structure.image_tokens * structure.projector_bytes_per_token
    outside = tokens * (kept + transient) + projector
    fixed = sum(structure.adapter_bytes_per_call)
    full = tokens * sum(per_layer) + fixed + outside
    checkpointed = (tokens * (len(per_layer) * structure.text.hidden * act_bytes + max(per_layer))
                    + max(structure.adapter_bytes_per_call) + outside)
    return full, checkpointed


def method_state_bytes(config: RunConfig, structure: Structure, tasks: int) -> tuple[int, int]:
    """(kept on the device while training, saved in each task's checkpoint) bytes of method tensors."""
    from citkit.methods import METHODS
    from citkit.methods.eproj.method import EProj
    from citkit.methods.ewc import EWC
    from citkit.methods.hide_llava.method import HiDeLLaVA
    from citkit.methods.lwf import LwF

    cls = METHODS.get(config.method)
    trainable = structure.trainable_parameters
    if issubclass(cls, EWC):
        saved = trainable * (4 + 2)  # importance (float32) + owner task (int16)
        anchor = structure.trainable_bytes
        rescaled = 4 * trainable if config.method_config().tir.enabled else 0
        return saved + anchor + rescaled, saved
    if issubclass(cls, LwF):
        return structure.trainable_bytes, 0  # the teacher is rebuilt from the adapter on resume
    if issubclass(cls, (HiDeLLaVA, EProj)):
        keys = 4 * tasks * (structure.text.hidden + _vision_hidden(config))  # one image + one text vector per task
        return keys, keys
    return 0, 0


def method_activation_bytes(config: RunConfig, structure: Structure, batch_size: int, seq_len: int,
                            act_bytes: int) -> int:
    """Activations a method's loss adds: LwF keeps the student's float32 log-softmax and the teacher's
    probabilities for the KL (2 x 4 V per token) and briefly holds the teacher's logits (V d) and
    log-softmax (4 V)."""
    from citkit.methods import METHODS
    from citkit.methods.lwf import LwF

    if issubclass(METHODS.get(config.method), LwF):
        return batch_size * seq_len * structure.text.vocab * (8 + act_bytes + 4)
    return 0


def _vision_hidden(config: RunConfig) -> int:
    from citkit.estimate.structure import read_model_config

    vision = getattr(read_model_config(config), "vision_config", None)
    return int(getattr(vision, "hidden_size", 0) or 0)


def _dtype_bytes(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]


def _ceil(size: int, parts: int) -> int:
    return -(-size // parts)


def with_batch_size(config: RunConfig, batch_size: int) -> RunConfig:
    """`config` with another per-device batch size (for comparing estimates)."""
    return replace(config, train=replace(config.train, batch_size=batch_size))
