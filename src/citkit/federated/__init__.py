"""Federated continual instruction tuning on Flower (FCIT; Guo et al., ICCV 2025).

The Flower apps (`client_app`, `server_app`) only translate messages; clients train through
`Engine.fit_task` with the same methods as a centralised run. `run(FedRunConfig)` runs in-process.
Flower itself (`pip install 'citkit[federated]'`) is imported when a federated run is built, so the
rest of citkit works without it.
"""

from __future__ import annotations

from typing import Any

from citkit.federated.config import FederatedConfig, FedRunConfig

__all__ = ["STRATEGIES", "FedRunConfig", "FedRunResult", "FederatedConfig", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "FedRunResult"):
        from citkit.federated import runner

        return getattr(runner, name)
    if name == "STRATEGIES":
        from citkit.federated.strategies import STRATEGIES

        return STRATEGIES
    raise AttributeError(name)
