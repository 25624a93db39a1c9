"""Federated continual instruction tuning on Flower (FCIT; Guo et al., ICCV 2025).

The Flower apps (`client_app`, `server_app`) only translate messages; clients train through
`Engine.fit_task` with the same methods as a centralised run. `run(FedRunConfig)` runs in-process.
"""

from citkit.federated.config import FederatedConfig, FedRunConfig
from citkit.federated.runner import FedRunResult, run
from citkit.federated.strategies import STRATEGIES

__all__ = ["STRATEGIES", "FedRunConfig", "FedRunResult", "FederatedConfig", "run"]
