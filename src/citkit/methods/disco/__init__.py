"""DISCO: `config` (options), `layers` (K LoRA subspaces per layer), `slots` (matching, grouping, tokens,
activation as pure functions), `method` (the registered method), `federated` (its server side)."""

from citkit.methods.disco.config import DiscoConfig
from citkit.methods.disco.federated import DiscoCoordinator, client_slot
from citkit.methods.disco.layers import DiscoLinear, add_disco
from citkit.methods.disco.method import Disco

__all__ = ["Disco", "DiscoConfig", "DiscoCoordinator", "DiscoLinear", "add_disco", "client_slot"]
