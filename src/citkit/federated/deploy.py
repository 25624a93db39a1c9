"""Module-level Flower apps for a deployment (SuperLink + SuperNodes) or `flwr run`.

    [tool.flwr.app.components]                  (the Flower app's pyproject.toml)
    serverapp = "citkit.federated.deploy:server_app"
    clientapp = "citkit.federated.deploy:client_app"
    [tool.flwr.app.config]
    citkit-config = "/path/to/settings.json"    # a FedRunConfig as written by apps.config_to_json

Both apps read the run's settings from the run config key `citkit-config` (a JSON file path, or the JSON
itself). The ServerApp writes the run directory as `citkit fed run` does; each SuperNode's ClientApp
builds its client worker from the same settings (docs/federated.md, "Three ways").
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from citkit.federated.apps import CONFIG_KEY, config_from_json, process_worker
from citkit.federated.client_app import build_client_app
from citkit.federated.config import FedRunConfig
from citkit.federated.federation import ClientWorker, Federation
from citkit.federated.report import finish_federated
from citkit.federated.rundir import FederatedRunDirectory
from citkit.federated.server import FederatedServer


def settings_of(context: Context) -> str:
    """The JSON settings named by the run config (a file path or the JSON text)."""
    value = str(context.run_config.get(CONFIG_KEY, ""))
    if not value:
        raise ValueError(f"the run config has no {CONFIG_KEY!r}: set it to a settings JSON file")
    return Path(value).read_text(encoding="utf-8") if not value.lstrip().startswith("{") else value


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    config: FedRunConfig = config_from_json(settings_of(context))
    federation = Federation(config)
    run_dir = FederatedRunDirectory(config.run_dir)
    run_dir.resuming = run_dir.check_or_write_config(config.identity(), FedRunConfig().identity())
    server = FederatedServer(federation, ClientWorker(federation), run_dir)
    server.run(grid)
    finish_federated(run_dir, config, federation, server.matrix)


client_app = build_client_app(lambda context: process_worker(settings_of(context)))
