"""An in-process Flower Grid: messages go straight to a ClientApp in this process, no Ray, no network.

Flower's `Grid` (flwr.serverapp.grid) is what a ServerApp talks to; in simulation and deployment it is
backed by the SuperLink. Here `push_messages` runs the ClientApp on each message at once, with one
`Context` per node that persists across rounds (`context.state`, as a SuperNode keeps it), and keeps
the reply for `pull_messages`. Two things a real Grid does implicitly are done explicitly:

- each message is deep-copied before delivery: a strategy sends one RecordDict object to every node, and
  a client must not see another's changes;
- an exception in the ClientApp becomes an error reply (`Message(Error(...), reply_to=...)`), as the
  SuperNode reports a failed ClientApp; the server then aggregates the others.
"""

from __future__ import annotations

import contextlib
import copy
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator

from accelerate.logging import get_logger
from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

logger = get_logger(__name__)


ClientCallable = Callable[[Message, Context], Message]


FIRST_NODE_ID = 101  # node ids 101, 102, ...: clear of the SuperLink's own id (1)


class InProcessGrid(Grid):
    """Delivers messages to `client_app` for `num_nodes` nodes with ids FIRST_NODE_ID + i; node i's data
    partition i is in its context's `node_config["partition-id"]`, as `flower-supernode --node-config`
    sets it in a deployment."""

    def __init__(self, client_app: ClientCallable, num_nodes: int, run_id: int = 1,
                 run_config: dict[str, object] | None = None) -> None:
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        self.contexts = {
            node: Context(run_id=run_id, node_id=node, node_config={"partition-id": node - FIRST_NODE_ID,
                                                                    "num-partitions": num_nodes},
                          state=RecordDict(), run_config=dict(run_config or {}))
            for node in range(FIRST_NODE_ID, FIRST_NODE_ID + num_nodes)}
        self._replies: dict[str, Message] = {}
        self.failures: list[tuple[int, str]] = []  # (node, reason) of every error reply so far

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message = copy.deepcopy(message)
            message_id = uuid.uuid4().hex
            # The SuperLink assigns message ids; Flower's own InMemoryGrid sets this field the same way.
            message.metadata.__dict__["_message_id"] = message_id
            node = message.metadata.dst_node_id
            if node not in self.contexts:
                raise ValueError(f"no node {node} in this in-process grid")
            self._replies[message_id] = self._deliver(message, self.contexts[node])
            ids.append(message_id)
        return ids

    def _deliver(self, message: Message, context: Context) -> Message:
        try:
            reply = self.client_app(message, context)
        except Exception as error:  # noqa: BLE001 - any client failure becomes an error reply, as in Flower
            reason = f"{type(error).__name__}: {error}"
            logger.warning(f"node {context.node_id} failed: {reason}")
            logger.debug(traceback.format_exc())
            self.failures.append((context.node_id, reason))
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason), reply_to=message)
        reply.metadata.__dict__["_message_id"] = uuid.uuid4().hex
        return reply

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Replies in the order of the messages (clients run one after another in this process)."""
        return self.pull_messages(list(self.push_messages(messages)))


class NodeSubset(Grid):
    """A view of a grid that shows only `nodes`: the server samples clients itself (seeded, and among
    those holding data in the stage) and lets the Flower strategy configure exactly those."""

    def __init__(self, grid: Grid, nodes: list[int]) -> None:
        self.grid = grid
        self.nodes = list(nodes)

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.grid.send_and_receive(messages, timeout=timeout)


@contextlib.contextmanager
def server_identity(run_id: int) -> Iterator[None]:
    """Name this process the ServerApp of run `run_id`, as Flower's runtime does before calling a ServerApp
    (new messages take their run id and source node from it); the previous identity is restored after."""
    previous = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, run_id, SUPERLINK_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = previous
