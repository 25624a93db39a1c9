"""`citkit.federated.run(FedRunConfig)`: a federated continual run, in-process (no Ray, no network).

The ServerApp and ClientApp are Flower's; the Grid between them is `grid.InProcessGrid`, which hands each
message to the ClientApp in this process. Clients run one after another and share one worker (one model
with the method's structure); each keeps its own method state in its Flower `Context`. The same apps
run under Flower's simulation engine and on a SuperLink + SuperNodes (docs/federated.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.logging import get_logger
from flwr.app import Context, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID

from citkit.errors import ConfigError
from citkit.eval.matrix import AccuracyMatrix
from citkit.federated.client_app import build_client_app
from citkit.federated.config import FedRunConfig
from citkit.federated.federation import ClientWorker, Federation
from citkit.federated.grid import InProcessGrid, server_identity
from citkit.federated.report import finish_federated
from citkit.federated.rundir import ContextStore, FederatedRunDirectory
from citkit.federated.server import FederatedServer
from citkit.federated.server_app import build_server_app
from citkit.rundir import environment

logger = get_logger(__name__)

ClientCallable = Callable[[Message, Context], Message]


@dataclass
class FedRunResult:
    """What a finished (or partly finished) federated run produced."""

    run_dir: Path
    matrix: AccuracyMatrix
    metrics: dict[str, float | None]


BACKENDS = ("in-process", "simulation")


def run(config: FedRunConfig, stop_after: int | None = None,
        wrap_client: Callable[[ClientCallable], ClientCallable] | None = None,
        backend: str = "in-process") -> FedRunResult:
    """Run (or resume) a federated continual stream.

    `backend`: 'in-process' (the Grid hands messages to the ClientApp in this process) or 'simulation'
    (Flower's simulation engine, Ray: clients in worker processes, each keeping its own model; needs
    `pip install 'citkit[simulation]'`; the clients' own method states are then kept by Flower, not saved
    with the checkpoints). `stop_after` ends after that many stages (tests of resume); `wrap_client` wraps
    the in-process ClientApp (tests inject a failing client)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r}: use {' or '.join(BACKENDS)}")
    federation = Federation(config)  # data, model path, schedule and split: every input error comes here
    for stage in range(federation.num_stages):
        federation.client_samples(stage)
    run_dir = FederatedRunDirectory(config.run_dir)
    resuming = run_dir.check_or_write_config(config.identity(), FedRunConfig().identity())
    run_dir.resuming = resuming
    server_worker = ClientWorker(federation)
    run_dir.write_environment(environment(config.run.seed, str(server_worker.engine.accelerator.device))
                              | {"model": str(federation.model_path), "flwr": _flwr_version(),
                                 "backend": backend, "torch_threads": torch.get_num_threads()})
    if backend == "simulation":
        return _simulate(config, federation, server_worker, run_dir, stop_after)
    client_worker = ClientWorker(federation, accelerator=server_worker.engine.accelerator)
    client_worker.build()  # the clients' model, loaded once before the first round
    client_app: ClientCallable = build_client_app(lambda context: client_worker)
    if wrap_client is not None:
        client_app = wrap_client(client_app)
    grid = InProcessGrid(client_app, config.federated.num_clients)
    server = FederatedServer(federation, server_worker, run_dir, client_store=ContextStore(grid.contexts),
                             stop_after=stop_after)
    server_app = build_server_app(lambda context: server)
    with server_identity(grid.run.run_id), _quiet_flower(not config.run.train.progress):
        server_app(grid, Context(run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={},
                                 state=RecordDict(), run_config={}))
    metrics = finish_federated(run_dir, config, federation, server.matrix)
    return FedRunResult(run_dir.path, server.matrix, metrics)


@contextlib.contextmanager
def _quiet_flower(quiet: bool) -> Iterator[None]:
    """Flower logs every configure/aggregate at INFO; citkit logs the rounds itself, so --quiet hides them."""
    flower = logging.getLogger("flwr")
    level = flower.level
    if quiet:
        flower.setLevel(logging.WARNING)
    try:
        yield
    finally:
        flower.setLevel(level)


def _flwr_version() -> str:
    import flwr

    return str(getattr(flwr, "__version__", "unknown"))


def _simulate(config: FedRunConfig, federation: Federation, server_worker: ClientWorker,
              run_dir: FederatedRunDirectory, stop_after: int | None) -> FedRunResult:
    """The same ServerApp and ClientApp under Flower's simulation engine (Ray)."""
    try:
        from flwr.simulation import run_simulation
    except ImportError as error:
        raise ConfigError(f"the simulation backend needs Flower's simulation extra ({error}); "
                          "pip install 'citkit[simulation]'") from None
    from citkit.federated.apps import client_app_for

    server = FederatedServer(federation, server_worker, run_dir, stop_after=stop_after)
    run_simulation(server_app=build_server_app(lambda context: server), client_app=client_app_for(config),
                   num_supernodes=config.federated.num_clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    metrics = finish_federated(run_dir, config, federation, server.matrix)
    return FedRunResult(run_dir.path, server.matrix, metrics)
