"""The server side of a federated continual run: stages of rounds, aggregation, one matrix row per stage.

For each stage s (`FederatedServer.run`, called by the ServerApp's main with a Flower Grid):

    global model <- structure of stage s (server worker), its trainable state
    for each round r:
        sample clients (seeded, among those holding data in s)
        strategy.configure_train -> messages (arrays: what clients may change; frozen: the rest)
        grid.send_and_receive -> replies; error replies are counted and logged, the others aggregated
        strategy.aggregate_train -> new tensors of the global model; method coordinator (DISCO) updates
        checkpoint the round (global model, strategy and method state, clients' states, random generators)
    evaluate the global model on every task's test set -> matrix row s + 1; checkpoint the stage

The run directory is written as for a centralised run (matrix, predictions, checkpoints, report), plus
`rounds.json` (clients sampled, replied, failed, bytes each way per round).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
from accelerate.logging import get_logger
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from torch import Tensor

from citkit.errors import ConfigError
from citkit.eval.matrix import AccuracyMatrix
from citkit.federated.federation import ClientWorker, Federation, full_state
from citkit.federated.local_methods import changeable_keys
from citkit.federated.payload import from_record, record_bytes, tensor_bytes, to_record
from citkit.federated.rundir import FederatedRunDirectory, RoundCheckpoint, rng_state, set_rng_state
from citkit.federated.schedule import Schedule
from citkit.federated.strategies import build_strategy, load_strategy_state, strategy_state
from citkit.runner import evaluate_row

logger = get_logger(__name__)


class FederatedServer:
    """Drives the stages and rounds; owns the global model (a `ClientWorker` that never trains)."""

    def __init__(self, federation: Federation, worker: ClientWorker, run_dir: FederatedRunDirectory,
                 client_store: Any = None, stop_after: int | None = None) -> None:
        """`client_store`: where the clients' own states can be saved with a stage and restored on resume
        (the in-process grid's contexts); None where clients keep them (a deployment)."""
        self.federation = federation
        self.worker = worker
        self.run_dir = run_dir
        self.stop_after = stop_after
        self.client_store = client_store
        config = federation.config
        self.fed = config.federated
        coordinator_class = getattr(worker.method, "federated_coordinator", None)
        self.coordinator = coordinator_class(worker.method) if coordinator_class is not None else None
        self.matrix = AccuracyMatrix.empty(federation.schedule.unit_names)
        self.rounds: list[dict[str, Any]] = []
        self.stages_log: list[dict[str, Any]] = []
        self.task_scores: list[dict[str, float]] = []
        self.state: dict[str, Tensor] = {}

    # --- the loop ---
    def run(self, grid: Grid) -> AccuracyMatrix:
        done = self._start()
        for stage in range(done, self.federation.num_stages):
            model = self.worker.prepare(stage)
            fresh = full_state(self.worker.method, model)  # a new per-stage part starts from its seeded init
            self.state = {k: self.state.get(k, v) for k, v in fresh.items()}
            keys = changeable_keys(self.worker.method, model)
            strategy = build_strategy(self.fed.strategy, self.fed.strategy_options,
                                      per_key=self.coordinator is not None)
            progress: dict[str, Any] = {"steps": 0, "seconds": 0.0}  # of the stage so far
            first_round = 0
            checkpoint = self.run_dir.load_round(stage) if self.run_dir.resuming and stage == done else None
            if checkpoint is not None:
                first_round, progress = self._resume_round(checkpoint, strategy), checkpoint.info
            for round_index in range(first_round, self.fed.rounds_per_stage):
                start = time.perf_counter()
                progress["steps"] += self._round(grid, strategy, stage, round_index, keys)
                progress["seconds"] += time.perf_counter() - start
                if self.fed.checkpoint_rounds:
                    self.run_dir.save_round(RoundCheckpoint(
                        stage, round_index, self.state, strategy_state(strategy),
                        self.coordinator.state() if self.coordinator is not None else ({}, {}),
                        self.client_store.dump() if self.client_store is not None else {}, progress, rng_state()))
            self._finish_stage(stage, progress["seconds"], progress["steps"])
            self.run_dir.clear_rounds()  # the stage's checkpoint and matrix row supersede them
            if self.stop_after is not None and stage + 1 >= self.stop_after:
                break
        return self.matrix

    def _resume_round(self, checkpoint: RoundCheckpoint, strategy: Any) -> int:
        """Continue a stage after its last checkpointed round; returns the round to run next."""
        self.state = dict(checkpoint.state)
        load_strategy_state(strategy, checkpoint.strategy)
        if self.coordinator is not None:
            self.coordinator.load_state(checkpoint.method)
        if self.client_store is not None:
            self.client_store.load(checkpoint.clients)
        set_rng_state(checkpoint.rng)
        self.rounds, _, _ = self.run_dir.read_logs(checkpoint.stage, checkpoint.round_index + 1)
        logger.info(f"resuming {self.run_dir.path} at stage {checkpoint.stage + 1}, after round "
                    f"{checkpoint.round_index + 1}")
        return checkpoint.round_index + 1

    def _start(self) -> int:
        """Row 0 (base model) for a new run; the last finished stage's state for a resumed one."""
        base = self.worker.load_base()
        if self.run_dir.resuming:
            self.matrix = AccuracyMatrix.load(self.run_dir.path)
            done = self.matrix.finished_rows - 1
            self.rounds, self.stages_log, self.task_scores = self.run_dir.read_logs(done)
        else:
            done = -1
        if done < 0:
            scores, _, _ = evaluate_row(base, None, self.federation.tasks, self.federation.config.run,
                                        self.run_dir, 0, self.worker.engine)
            self._commit_row(0, scores)
            done = 0
        self.worker.build(base)
        if done > 0:
            self.worker.prepare(done - 1)
            self.state, coordinator_state, clients = self.run_dir.load_stage(done - 1)
            if self.coordinator is not None:
                self.coordinator.load_state(coordinator_state)
            if self.client_store is not None:
                self.client_store.load(clients)
            logger.info(f"resuming {self.run_dir.path} after stage {done}")
        return done

    def _round(self, grid: Grid, strategy: Any, stage: int, round_index: int, keys: list[str]) -> int:
        from citkit.federated.grid import NodeSubset

        start = time.perf_counter()
        nodes = self._sample(grid, stage, round_index)
        partition = {n: i for i, n in enumerate(sorted(grid.get_node_ids()))}
        config = ConfigRecord({"stage": stage, "round": round_index})
        extra = self.coordinator.round_config(stage, round_index) if self.coordinator is not None else {}
        for key, value in extra.items():
            config[key] = value
        changeable = {k: self.state[k] for k in keys}
        frozen = {k: v for k, v in self.state.items() if k not in changeable}
        server_round = stage * self.fed.rounds_per_stage + round_index + 1
        messages = list(strategy.configure_train(server_round, to_record(changeable), config,
                                                 NodeSubset(grid, nodes)))
        shared = messages[0].content if messages else None  # a Flower strategy sends one RecordDict to all
        if shared is not None and frozen:
            shared["frozen"] = to_record(frozen)
        if shared is not None and self.coordinator is not None:
            records = self.coordinator.round_records(stage, round_index)
            if records:
                shared["method"] = to_record(records)
        down = sum(record_bytes(r) for r in shared.array_records.values()) if shared is not None else 0
        for message in messages:  # the server says which data partition each sampled node trains
            config_for_node = ConfigRecord(dict(shared["config"].items()))
            config_for_node["partition-id"] = partition[message.metadata.dst_node_id]
            message.content = RecordDict({**dict(shared.items()), "config": config_for_node})
        # Replies in node order, so the aggregation's sums do not depend on the strategy's sampling order.
        replies = sorted(grid.send_and_receive(messages), key=lambda r: r.metadata.src_node_id)
        good = [r for r in replies if not r.has_error()]
        failed = [(r.metadata.src_node_id, r.error.reason) for r in replies if r.has_error()]
        for node, reason in failed:
            logger.warning(f"stage {stage} round {round_index}: client {partition[node]} failed ({reason}); "
                           f"aggregating the other {len(good)}")
        arrays, metrics = strategy.aggregate_train(server_round, replies) if good else (None, None)
        if arrays is not None:
            for key, value in from_record(arrays).items():
                self.state[key] = value.to(self.state[key].dtype)
        if self.coordinator is not None and good:
            self.coordinator.observe(stage, round_index, [self._report(r, stage) for r in good])
        up = sum(record_bytes(r.content["arrays"]) + (record_bytes(r.content["report"]) if "report" in r.content
                                                      else 0) for r in good)
        whole = tensor_bytes(self.state)
        self.rounds.append({
            "stage": stage, "round": round_index, "clients": [partition[n] for n in nodes],
            "replied": [int(r.content["metrics"]["partition-id"]) for r in good],
            "failed": [{"client": partition[n], "reason": reason} for n, reason in failed],
            "bytes_down": down * len(nodes), "bytes_up": up, "bytes_whole_state": whole,
            "train_loss": None if metrics is None else float(metrics.get("train-loss", float("nan"))),
            "assignment": self.coordinator.last_assignment() if self.coordinator is not None else None,
            "seconds": time.perf_counter() - start})
        self.run_dir.write_rounds(self.rounds)
        return sum(int(r.content["metrics"]["steps"]) for r in good)

    def _sample(self, grid: Grid, stage: int, round_index: int) -> list[int]:
        """Seeded sample of `clients_per_round` nodes among those holding data in `stage`."""
        sizes = [len(s) for s in self.federation.client_samples(stage)]
        nodes = sorted(grid.get_node_ids())  # the i-th smallest node id holds partition i
        if len(nodes) != len(sizes):
            raise ConfigError(f"the grid has {len(nodes)} nodes but federated.num_clients={len(sizes)}")
        eligible = [n for n, size in zip(nodes, sizes, strict=True) if size > 0]
        rng = np.random.default_rng([self.federation.config.run.seed, stage, round_index, 5])
        count = min(self.fed.clients_per_round, len(eligible))
        # Indices, not ids: Flower's node ids are 64-bit and numpy would hold a mix of them as float64.
        return sorted(eligible[int(i)] for i in rng.choice(len(eligible), count, replace=False))

    def _report(self, reply: Message, stage: int) -> dict[str, Any]:
        """A client's reply for the method's coordinator, with the tasks its data holds (the simulation's
        ground truth, for diagnostics such as DISCO's routing report; no method trains on it)."""
        report = from_record(reply.content["report"]) if "report" in reply.content else {}
        metrics = reply.content["metrics"]
        client = int(metrics["partition-id"])
        tasks = Counter(s.task for s in self.federation.client_samples(stage)[client])
        return {"client": client, "samples": int(metrics["num-examples"]), "tasks": dict(tasks), **report}

    # --- after a stage ---
    def _finish_stage(self, stage: int, seconds: float, steps: int) -> None:
        method_state = self.coordinator.method_state() if self.coordinator is not None else None
        model = self.worker.load_global(stage, self.state, method_state)
        run = self.federation.config.run
        scores, eval_seconds, count = evaluate_row(model, self.worker.method, self.federation.tasks, run,
                                                   self.run_dir, stage + 1, self.worker.engine)
        self.stages_log.append({
            "task": self.federation.schedule.unit_names[stage], "stage": stage,
            "units": list(self.federation.schedule.stages[stage]), "steps": steps, "train_seconds": seconds,
            "train_samples": sum(len(s) for s in self.federation.client_samples(stage)),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "stored_parameters": sum(t.numel() for t in self.state.values()),
            "eval_seconds_per_sample": eval_seconds / max(1, count), "final_loss": {}, "log": [],
            "inference": unit_inference(self.worker.method.inference_report(self.federation.tasks, model),
                                        self.federation.schedule)})
        self.run_dir.save_stage(stage, self.state, self.coordinator.state() if self.coordinator else ({}, {}),
                                self.client_store.dump() if self.client_store is not None else {})
        self.run_dir.write_stages(self.stages_log)
        self._commit_row(stage + 1, scores)
        logger.info(f"stage {stage + 1}/{self.federation.num_stages}: " +
                    ", ".join(f"{k} {v:.1f}" for k, v in scores.items()))

    def _commit_row(self, row: int, task_scores: dict[str, float]) -> None:
        """Unit scores (a unit's tasks averaged) into the matrix; the saved row is a stage's commit point."""
        self.task_scores = self.task_scores[:row] + [task_scores]
        schedule = self.federation.schedule
        units = {u.name: float(np.mean([task_scores[t] for t in u.tasks])) for u in schedule.units}
        self.matrix.set_row(row, units)
        self.run_dir.write_task_scores(self.task_scores)
        self.matrix.save(self.run_dir.path)


def fcit_metrics(matrix: AccuracyMatrix, met: list[list[str]]) -> dict[str, float | None]:
    """FCIT's Last and Avg: the mean score over the units met so far after the last stage, and that mean
    averaged over stages. In the homogeneous setting they equal MFN and MAA."""
    means = []
    for stage, units in enumerate(met):
        row = matrix.rows[stage + 1]
        values = [row[matrix.task_names.index(u)] for u in units]
        if any(v is None for v in values):
            break
        means.append(float(np.mean(values)))
    if not means:
        return {"fcit_last": None, "fcit_avg": None}
    return {"fcit_last": means[-1] if len(means) == len(met) else None, "fcit_avg": float(np.mean(means))}




def unit_inference(report: dict[str, Any], schedule: Schedule) -> dict[str, Any]:
    """A method's inference report with its per-task routing numbers averaged into the schedule's units (the
    matrix's columns), weighted by test samples; a unit of one task keeps that task's numbers."""
    routing = report.get("routing")
    if not routing:
        return report
    units: dict[str, dict[str, float]] = {}
    for unit in schedule.units:
        rows = [routing[t] for t in unit.tasks if t in routing]
        n = sum(r["samples"] for r in rows)
        if not rows or n == 0:
            continue
        units[unit.name] = {"argmax": sum(r["argmax"] * r["samples"] for r in rows) / n,
                            "weight": sum(r["weight"] * r["samples"] for r in rows) / n, "samples": n}
    return report | {"routing": units, "task_routing": routing}
