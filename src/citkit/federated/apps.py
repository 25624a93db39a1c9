"""Flower apps that build their client worker from the run's settings, for Flower's engines.

Under the simulation engine (Ray) or a deployment, each ClientApp runs in a process of its own that has
only the message and its Context; `client_app_for(config)` gives a ClientApp whose worker is built, once
per process, from the run's settings (a JSON string, so it travels to Ray's workers and through a
Flower run config). The in-process runner shares one worker instead.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.clientapp import ClientApp

from citkit.config import from_dict
from citkit.federated.client_app import build_client_app
from citkit.federated.config import FedRunConfig
from citkit.federated.federation import ClientWorker, Federation
from citkit.run_config import build_run_config

CONFIG_KEY = "citkit-config"  # the Flower run-config key that holds the settings as JSON


def config_to_json(config: FedRunConfig) -> str:
    """The settings of a run as JSON (with where its data lives), to rebuild it in another process."""
    return json.dumps({**config.identity(), "runs_dir": str(Path(config.run.runs_dir).resolve())}, sort_keys=True)


def config_from_json(text: str) -> FedRunConfig:
    data: dict[str, Any] = json.loads(text)
    federated = data.pop("federated")
    return from_dict(FedRunConfig, {"run": build_run_config(data), "federated": federated})


@functools.lru_cache(maxsize=1)  # one worker per process: the model is loaded once, not every round
def process_worker(settings: str) -> ClientWorker:
    torch.set_num_threads(1)  # several client processes share the CPU cores
    worker = ClientWorker(Federation(config_from_json(settings)))
    worker.build()
    return worker


def _worker_for(settings: str, context: Context) -> ClientWorker:
    return process_worker(str(context.run_config.get(CONFIG_KEY, settings)))


def client_app_for(config: FedRunConfig) -> ClientApp:
    """A ClientApp for any Flower engine; a `citkit-config` run-config value, if given, takes precedence."""
    return build_client_app(functools.partial(_worker_for, config_to_json(config)))
