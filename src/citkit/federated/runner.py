"""`citkit.federated.run(FedRunConfig)`: a federated continual run, in-process (no Ray, no network).

The ServerApp and ClientApp are Flower's; the Grid between them is `grid.InProcessGrid`, which hands each
message to the ClientApp in this process. Clients run one after another and share one worker (one model
with the method's structure); each keeps its own method state in its Flower `Context`. The same apps
run under Flower's simulation engine and on a SuperLink + SuperNodes (docs/federated.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.logging import get_logger
from flwr.app import Context, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID

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


def run(config: FedRunConfig, stop_after: int | None = None,
        wrap_client: Callable[[ClientCallable], ClientCallable] | None = None) -> FedRunResult:
    """Run (or resume) a federated continual stream in this process.

    `stop_after` ends after that many stages (tests of resume); `wrap_client` wraps the ClientApp
    (tests inject a failing client)."""
    federation = Federation(config)  # data, model path, schedule and split: every input error comes here
    for stage in range(federation.num_stages):
        federation.client_samples(stage)
    run_dir = FederatedRunDirectory(config.run_dir)
    resuming = run_dir.check_or_write_config(config.identity(), FedRunConfig().identity())
    run_dir.resuming = resuming
    server_worker = ClientWorker(federation)
    run_dir.write_environment(environment(config.run.seed, str(server_worker.engine.accelerator.device))
                              | {"model": str(federation.model_path), "flwr": _flwr_version(),
                                 "backend": "in-process", "torch_threads": torch.get_num_threads()})
    client_worker = ClientWorker(federation, accelerator=server_worker.engine.accelerator)
    client_worker.build()  # the clients' model, loaded once before the first round
    client_app: ClientCallable = build_client_app(lambda context: client_worker)
    if wrap_client is not None:
        client_app = wrap_client(client_app)
    grid = InProcessGrid(client_app, config.federated.num_clients)
    server = FederatedServer(federation, server_worker, run_dir, client_store=ContextStore(grid.contexts),
                             stop_after=stop_after)
    server_app = build_server_app(lambda context: server)
    with server_identity(grid.run.run_id):
        server_app(grid, Context(run_id=grid.run.run_id, node_id=SUPERLINK_NODE_ID, node_config={},
                                 state=RecordDict(), run_config={}))
    metrics = finish_federated(run_dir, config, federation, server.matrix)
    return FedRunResult(run_dir.path, server.matrix, metrics)


def _flwr_version() -> str:
    import flwr

    return str(getattr(flwr, "__version__", "unknown"))
