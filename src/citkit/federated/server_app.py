"""The Flower ServerApp: its main hands the Grid to the citkit server loop (`server.FederatedServer`)."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from citkit.federated.server import FederatedServer


def build_server_app(server_for: Callable[[Context], FederatedServer]) -> ServerApp:
    """A ServerApp whose main runs `server_for(context).run(grid)`."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        server_for(context).run(grid)

    return app
