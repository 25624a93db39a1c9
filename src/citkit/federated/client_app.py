"""The Flower ClientApp: unpack the server's message, train through the worker (`Engine.fit_task`), reply.

A train message carries
    arrays   (ArrayRecord)   the tensors this stage's clients may change (what the strategy aggregates)
    frozen   (ArrayRecord)   the rest of the global model (earlier O-LoRA adapters); absent when empty
    method   (ArrayRecord)   method-specific server state (DISCO: the global identity tokens); optional
    config   (ConfigRecord)  stage, round, proximal-mu (FedProx), method settings
and the reply carries
    arrays   (ArrayRecord)   only what this client changed (DISCO: its slot)
    metrics  (MetricRecord)  num-examples (FedAvg's weight), steps, train-loss, seconds
    report   (ArrayRecord)   method-specific report (DISCO: identity token, slot); optional

The client's own method state (EWC's importances, ...) stays on the client, in `context.state`, which a
SuperNode keeps across rounds. Rounds of one stage all start from the state the client had at the end
of its last earlier stage; the state after its last round of a stage is kept for later stages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import Tensor

from citkit.federated.federation import ClientWorker
from citkit.federated.payload import from_record, to_record

STATE_KEY = "citkit"


def read_client_state(context: Context, stage: int) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """The method state this client starts `stage` from: the state after its last round of an earlier
    stage (None: the method's initial state)."""
    records = context.state
    if f"{STATE_KEY}.info" not in records:
        return None
    info = records[f"{STATE_KEY}.info"]
    if int(info["pending-stage"]) < stage:  # the pending state's stage is over: it becomes the committed one
        records[f"{STATE_KEY}.committed"] = records[f"{STATE_KEY}.pending"]
        info["committed-extra"] = info["pending-extra"]
        info["committed-stage"] = info["pending-stage"]
    if int(info["committed-stage"]) < 0:
        return None
    return from_record(records[f"{STATE_KEY}.committed"]), json.loads(str(info["committed-extra"]))


def write_client_state(context: Context, stage: int, state: tuple[dict[str, Tensor], dict[str, Any]]) -> None:
    """Keep the state after this round as the pending state of `stage`."""
    records = context.state
    info = records.get(f"{STATE_KEY}.info")
    if info is None:
        info = ConfigRecord({"committed-stage": -1, "committed-extra": "{}"})
        records[f"{STATE_KEY}.committed"] = ArrayRecord()
    tensors, extra = state
    records[f"{STATE_KEY}.pending"] = to_record(tensors)
    info["pending-stage"] = stage
    info["pending-extra"] = json.dumps(extra)
    records[f"{STATE_KEY}.info"] = info


def build_client_app(worker_for: Callable[[Context], ClientWorker]) -> ClientApp:
    """A ClientApp whose train function uses `worker_for(context)` (in-process: one shared worker; under
    Flower's engines: one per process, built from the run config)."""
    app = ClientApp()

    @app.train()
    def train(message: Message, context: Context) -> Message:
        content = message.content
        config = content["config"]
        stage, round_index = int(config["stage"]), int(config["round"])
        state = from_record(content["arrays"])
        if "frozen" in content:
            state |= from_record(content["frozen"])
        server_info: dict[str, Any] = {k: v for k, v in config.items()}
        if "method" in content:
            server_info |= from_record(content["method"])
        worker = worker_for(context)
        # The server assigns partitions (it samples among clients holding data); a node's own
        # `--node-config partition-id=...` is the fallback.
        client = int(config.get("partition-id", context.node_config.get("partition-id", -1)))
        if client < 0:
            raise ValueError("the message names no partition-id and the node has none in its node config")
        result = worker.train(client, stage, round_index, state, read_client_state(context, stage), server_info,
                              float(config.get("proximal-mu", 0.0)))
        write_client_state(context, stage, result.method_state)
        reply = RecordDict({"arrays": to_record(result.payload),
                            "metrics": MetricRecord({"num-examples": result.samples, "steps": result.steps,
                                                     "train-loss": result.loss, "seconds": result.seconds,
                                                     "partition-id": client})})
        if result.report:
            reply["report"] = to_record(result.report)
        return Message(reply, reply_to=message)

    return app
