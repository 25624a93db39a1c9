"""The settings of a federated continual run: clients, rounds, data split, scenario, server strategy.

Vocabulary (defined once, see docs/federated.md): a *stage* is one step of the continual stream (FCIT's
"task" or "capability" stage); a *round* is one communication round inside a stage; a *unit* is what a
stage's data is drawn from (one task of the stream, or a group of tasks in the capability scenario).
After each stage the global model fills one row of the accuracy matrix, whose columns are the units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from citkit.config import to_dict
from citkit.errors import ConfigError
from citkit.run_config import RunConfig

Setting = Literal["homogeneous", "heterogeneous"]
Scenario = Literal["task", "capability"]
Partition = Literal["dirichlet", "answer-skew"]


@dataclass(frozen=True)
class FederatedConfig:
    """How the stream is spread over clients and how the server combines them (FCIT, Guo et al. ICCV 2025)."""

    num_clients: int = field(default=10, metadata={"help": "C: clients in the federation (paper: 50)."})
    clients_per_round: int = field(default=3, metadata={"help": (
        "Clients sampled (seeded) in each round among those holding data in the stage (paper: 5).")})
    rounds_per_stage: int = field(default=10, metadata={"help": (
        "R: communication rounds per stage (paper: 10). With the defaults a stage's data is seen about "
        "R x clients_per_round / num_clients x local_epochs = 3 times, as centrally with train.epochs=3.")})
    local_epochs: float = field(default=1.0, metadata={"help": (
        "Passes over its own data a sampled client makes per round (replaces train.epochs; paper: 1).")})
    beta: float = field(default=1.0, metadata={"help": (
        "Dirichlet concentration of the split of each unit's data over the clients holding it; smaller is "
        "more skewed (paper: 0.5, 1.0, 5.0).")})
    partition: Partition = field(default="dirichlet", metadata={"help": (
        "'dirichlet': quantity skew, client shares ~ Dir(beta); 'answer-skew': every distinct answer's "
        "samples are split with their own Dir(beta) draw, so clients differ in which answers they hold.")})
    allow_empty_clients: bool = field(default=False, metadata={"help": (
        "Let the split leave a client with no sample of a unit (it is then never sampled in that stage). "
        "False: every client holding a unit gets at least one of its samples.")})
    setting: Setting = field(default="homogeneous", metadata={"help": (
        "'homogeneous': in stage s every client holds unit s. 'heterogeneous': a stage's clients hold "
        "different units, past and future ones, recurring (federated.schedule_file or the seeded generator); "
        "the model is scored on the units met so far (metrics fcit_last, fcit_avg).")})
    scenario: Scenario = field(default="task", metadata={"help": (
        "'task': one stream task per unit. 'capability': units are groups of tasks "
        "(federated.capability_groups), each stage the union of its group's data.")})
    capability_groups: tuple[str, ...] = field(default=(), metadata={"help": (
        "Capability units as 'name=task1+task2' (or 'task1+task2'); default: consecutive pairs of the "
        "stream's tasks.")})
    schedule_file: str | None = field(default=None, metadata={"help": (
        "YAML of the heterogeneous stages: `stages: [[unit, ...], ...]`, one list per stage of the units "
        "its clients hold (as the FCIT authors' per-stage lists; a unit listed twice gets twice the clients). "
        "Default: the FCIT authors' own lists for the packaged fcit-task and fcit-capability streams "
        "(configs/streams/schedules/), the seeded generator for any other stream.")})
    units_per_stage: int = field(default=3, metadata={"help": (
        "Heterogeneous generator (streams without packaged lists, no schedule_file): units present in each "
        "stage (stage s always holds unit s plus others, past or future, drawn with the run's seed).")})
    checkpoint_rounds: bool = field(default=True, metadata={"help": (
        "Checkpoint the server after every round (global model, strategy and method state, the clients' "
        "states in-process), so a killed run resumes after its last finished round, not at the start of "
        "its stage. Only the last round's checkpoint is kept; false saves the writes (stage checkpoints only).")})
    strategy: str = field(default="fedavg", metadata={"help": (
        "Server strategy from Flower's flwr.serverapp.strategy: fedavg, fedavgm, fedadam, fedadagrad, fedyogi, "
        "fedprox, fedmedian, fedtrimmedavg (see `citkit fed strategies`). DISCO aggregates per subspace "
        "(fedavg only, as the authors' code).")})
    strategy_options: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "Keyword options of the strategy, e.g. proximal_mu=0.01 (fedprox), server_momentum=0.9 (fedavgm), "
        "eta=0.01 (fedadam); set with --set federated.strategy_options.NAME=VALUE.")})

    def __post_init__(self) -> None:
        try:
            from citkit.federated.strategies import STRATEGIES, check_strategy_options
        except ImportError as error:
            raise ConfigError(f"federated runs need Flower ({error}); install it with "
                              "pip install 'citkit[federated]'") from None
        if self.num_clients < 1:
            raise ConfigError(f"federated.num_clients must be >= 1, got {self.num_clients}")
        if not 1 <= self.clients_per_round <= self.num_clients:
            raise ConfigError(f"federated.clients_per_round={self.clients_per_round} must be between 1 and "
                              f"federated.num_clients={self.num_clients}")
        if self.rounds_per_stage < 1:
            raise ConfigError(f"federated.rounds_per_stage must be >= 1, got {self.rounds_per_stage}")
        if self.local_epochs <= 0:
            raise ConfigError(f"federated.local_epochs must be > 0, got {self.local_epochs}")
        if not self.beta > 0:
            raise ConfigError(f"federated.beta must be > 0 (Dirichlet concentration), got {self.beta}")
        if self.units_per_stage < 1:
            raise ConfigError(f"federated.units_per_stage must be >= 1, got {self.units_per_stage}")
        for name, allowed in (("setting", Setting), ("scenario", Scenario), ("partition", Partition)):
            if getattr(self, name) not in allowed.__args__:
                raise ConfigError(f"federated.{name} {getattr(self, name)!r}: use one of {', '.join(allowed.__args__)}")
        check_strategy_options(STRATEGIES.get(self.strategy), self.strategy, self.strategy_options)


@dataclass(frozen=True)
class FedRunConfig:
    """A federated continual run: the centralised run's settings (stream, method, model, adapter, train,
    eval, seed) plus the federation's."""

    run: RunConfig = field(default_factory=RunConfig, metadata={"help": "Stream, method, model and training."})
    federated: FederatedConfig = field(default_factory=FederatedConfig, metadata={"help": "The federation."})

    def __post_init__(self) -> None:
        from citkit.federated.local_methods import check_federated_method

        check_federated_method(self.run.method, self.federated.strategy)

    @property
    def run_name(self) -> str:
        if self.run.name:
            return self.run.name
        return self.run.default_name(self.default_label())

    def default_label(self, method: str = "") -> str:
        """`fed-<method>-<strategy>-<setting>-<scenario>-b<beta>`, the middle of a default run name."""
        fed = self.federated
        return f"fed-{method or self.run.method}-{fed.strategy}-{fed.setting}-{fed.scenario}-b{fed.beta:g}"

    @property
    def run_dir(self):  # type: ignore[no-untyped-def]
        from pathlib import Path

        return Path(self.run.runs_dir) / self.run_name

    def identity(self) -> dict[str, Any]:
        """Settings that must match for a run directory to be resumed."""
        return {**self.run.identity(), "federated": to_dict(self.federated)}
