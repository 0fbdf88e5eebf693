"""A client's decisions, without sockets or threads: events in, instructions out.

`ClientState` knows the futures waiting for results, the stored results being fetched from the
object storage, and whether the connection is still alive. Its shell (`connection.py`) feeds it
what the scheduler and the object storage send, the passing of time and the user's requests, and
carries out the returned instructions: messages through the I/O loop (`peer_io.PeerIO`), and
futures settled outside any lock, since settling runs the user's callbacks.

    welcome -> open -> (disconnect | shutdown answered | scheduler gone | silent) -> closed
"""

from __future__ import annotations

import pickle
import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional

from scaler_core import protocol
from scaler_core.client.futures import EncodedResult
from scaler_core.client.resend_log import ResendLog
from scaler_core.errors import ObjectStorageSilentError, SchedulerDiedError, SerializationError
from scaler_core.instructions import ConnectStorage, Leave, ToScheduler, ToStorage
from scaler_core.serialization import loads_exception, loads_warnings
from scaler_core.settings import OBJECT_STORAGE_SILENCE_SECONDS

# a shutdown request waits this long for the scheduler's answer before the client leaves anyway
SHUTDOWN_ANSWER_SECONDS = 5.0

# --- instructions for the shell -----------------------------------------------------------------


@dataclass(slots=True)  # one per result: a frozen dataclass costs twice as much to build
class Settle:
    """Give the future its value (or error); `profiling` is the task's cost, when known."""
    future: object
    value: object = None
    error: Optional[BaseException] = None
    profiling: object = None


@dataclass(slots=True)
class SettleKept:
    """A stored result that stays on the cluster (persist): the future is done without its bytes."""
    future: object
    object_id: bytes
    profiling: object = None


@dataclass(slots=True)
class DeliverObject:
    """An object a reader asked for on demand arrived (frames), or is gone (None)."""
    waiter: object
    frames: object


@dataclass(slots=True)
class SettleCancelled:
    future: object


@dataclass(slots=True)
class MarkStarted:
    future: object


@dataclass(frozen=True)
class AddWarnings:
    """Warnings a task raised: for its future, or for its graph's results (a WarningSink)."""
    target: object
    warnings: list


@dataclass(frozen=True)
class WriteOutput:
    stream: str  # "stdout" or "stderr"
    text: str


@dataclass(frozen=True)
class Welcomed:
    """The scheduler accepted us: direct sends may start, the constructor may return."""


_FETCH = object()  # _on_result's answer for a stored result: fetch it from the object storage


class ClientState:
    def __init__(self, client_id: bytes, address: str, timeout_seconds: float, heartbeat_interval_seconds: float,
                 now: float):
        self.client_id = client_id
        self.address = address
        self.timeout_seconds = timeout_seconds
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.started = now
        self.last_heard = now
        self.futures: Dict[bytes, object] = {}         # task id -> ScalerFuture, until resolved
        # graph id -> where its intermediate tasks' warnings wait; gone with the graph's futures
        self.graph_warnings: "weakref.WeakValueDictionary[bytes, object]" = weakref.WeakValueDictionary()
        self.fetching: Dict[bytes, protocol.TaskResult] = {}  # stored results asked from the storage
        self.released: List[bytes] = []                 # fetched results the scheduler may delete
        self.on_demand: Dict[bytes, List[object]] = {}  # kept results being read -> their waiters
        self.welcomed = False
        self.closed = False
        self.failure: Optional[BaseException] = None
        self.shutdown_response: Optional[protocol.ShutdownResponse] = None
        self.shutdown_deadline: Optional[float] = None  # a shutdown request waiting for its answer
        self.epoch = 0  # the scheduler's start we talk to (journaled schedulers count their starts)
        self.resend_log: Optional[ResendLog] = None  # kept when the scheduler may restart
        self._fetched_elsewhere: set = set()  # asked objects the storage located on another host
        self._storage_heard: Optional[float] = None  # last message from the storage while we waited on it

    # --- from the user's threads ----------------------------------------------------------------

    def register(self, futures) -> None:
        """Track futures until their results come; refused once closed, so none can slip in after
        the others were settled."""
        if self.closed:
            raise self.failure or SchedulerDiedError("the client is closed")
        for future in futures:
            if future is not None:
                self.futures[future.task_id] = future

    def request_object(self, object_id: bytes, waiter) -> List:
        """A reader wants a result that stayed on the cluster: `waiter` gets a DeliverObject."""
        if self.closed:
            return [DeliverObject(waiter, None)]
        waiters = self.on_demand.setdefault(object_id, [])
        waiters.append(waiter)
        return [ToStorage(protocol.ObjectGet(object_ids=[object_id]))] if len(waiters) == 1 else []

    def remember_tasks(self, encoded_batch: bytes, task_ids, graph_id: bytes = b"", blobs=()) -> None:
        """Sent work a restarted scheduler may need again (kept only when it may restart); `blobs`:
        the argument blobs its tasks stored, freed by this client once they are done."""
        if self.resend_log is not None:
            self.resend_log.add_tasks(encoded_batch, task_ids, graph_id, blobs)

    def remember_cancel(self, task_id: bytes) -> None:
        """A cancel of a task only if it has not started (its future stays until the scheduler says)."""
        if self.resend_log is not None:
            self.resend_log.add_cancel(task_id)

    def remember_graph(self, submit, kept: bool = False) -> None:
        if self.resend_log is not None:
            self.resend_log.add_graph(submit, kept)

    def on_disconnect(self, shutdown_scheduler: bool, now: float) -> List:
        if self.closed:
            return []
        instructions: List = [ToScheduler(protocol.ClientDisconnect(shutdown_scheduler=shutdown_scheduler))]
        if shutdown_scheduler and self.shutdown_response is None:
            self.shutdown_deadline = now + min(SHUTDOWN_ANSWER_SECONDS, self.timeout_seconds)
            return instructions
        return instructions + self.close(SchedulerDiedError("the client disconnected"), on_purpose=True)

    # --- from the scheduler ---------------------------------------------------------------------

    def on_scheduler(self, message, now: float) -> List:
        self.last_heard = now
        kind = type(message)
        if kind is protocol.ResultBatch:
            return self._on_results(message)
        if kind is protocol.TaskStarted:
            return [MarkStarted(future) for future in map(self.futures.get, message.task_ids) if future is not None]
        if kind is protocol.TaskWarnings:
            return self._on_warnings(message)
        if kind is protocol.TaskLog:
            return [WriteOutput("stdout" if message.stream == "stdout" else "stderr", message.text)]
        if kind is protocol.Welcome:
            return self._on_welcome(message)
        if kind is protocol.ShutdownResponse:
            self.shutdown_response = message
            if self.shutdown_deadline is not None:
                return self.close(SchedulerDiedError("the client disconnected"), on_purpose=True)
            return []
        if kind is protocol.SchedulerShutdown:
            return self.close(SchedulerDiedError(f"the scheduler shut down: {message.reason}"))
        if kind is protocol.Reintroduce:
            return self._on_reintroduce(message)
        return []  # HeartbeatEcho: hearing from the scheduler is all it says

    def on_direct_results(self, message) -> List:
        """Results a worker on this host sent straight to this client's inbox (direct_results.py);
        the scheduler does not forward them. Not a sign of the scheduler's life."""
        return self._on_results(message)

    def _on_results(self, message) -> List:
        instructions: List = []
        fetch: List[bytes] = []
        for result in message.results:
            outcome = self._on_result(result)
            if outcome is _FETCH:
                fetch.append(result.task_id)
            elif outcome is not None:
                instructions.append(outcome)
        if fetch:  # one request for every stored result of the batch
            instructions.append(ToStorage(protocol.ObjectGet(object_ids=fetch)))
        return instructions

    def _on_reintroduce(self, message) -> List:
        """The scheduler restarted from its journal: hello again, then everything not finished."""
        if message.epoch <= self.epoch:
            return []  # asked again (several of our messages reached it first): answered already
        if self.resend_log is None:
            return self.close(SchedulerDiedError("the scheduler restarted, and this client kept nothing to resume "
                                                 "with (the scheduler it first met had no journal)"))
        self.epoch = message.epoch
        self.fetching = {task_id: result for task_id, result in self.fetching.items() if task_id in self.futures}
        resent = self.resend_log.replay(self.futures, self.fetching)
        cancels = self.resend_log.pending_cancels(self.futures)
        if cancels:  # asked while the scheduler was away, or not acted on before it went
            resent.append(protocol.TaskCancel(task_ids=cancels, pending_only=True))
        return [ToScheduler(protocol.ClientHello(client_id=self.client_id, version=protocol.PROTOCOL_VERSION)),
                *(ToScheduler(message) for message in resent)]

    def _on_welcome(self, message) -> List:
        instructions: List = []
        self.epoch = max(self.epoch, message.epoch)
        if message.resumable and self.resend_log is None and not self.welcomed:
            self.resend_log = ResendLog()
        if not self.welcomed:
            instructions.append(ConnectStorage(message.object_storage_address))
        if message.client_timeout_seconds > 0:  # beat well within what the scheduler tolerates
            self.heartbeat_interval_seconds = min(self.heartbeat_interval_seconds,
                                                  message.client_timeout_seconds / 3)
        self.welcomed = True
        return instructions + [Welcomed()]

    def _on_warnings(self, message) -> List:
        future = self.futures.get(message.task_id)
        if future is not None:
            return [AddWarnings(future, loads_warnings(message.warnings))]
        sink = self.graph_warnings.get(message.graph_id) if message.graph_id else None
        if sink is not None:
            return [AddWarnings(sink, loads_warnings(message.warnings))]
        return []

    def _on_result(self, result):
        """What one result asks for: a Settle or SettleCancelled, _FETCH (a stored result to fetch
        from the object storage first), or None (nobody waits for it any more)."""
        future = self.futures.get(result.task_id)
        if future is None:
            return None  # cancelled or already resolved
        status = result.status
        if status == "success" and result.stored:
            if future._kept:
                del self.futures[result.task_id]
                return SettleKept(future, result.task_id, result.profiling)
            self.fetching[result.task_id] = result
            return _FETCH
        del self.futures[result.task_id]
        if status == "success":
            try:
                return Settle(future, pickle.loads(result.value), None, result.profiling)
            except Exception as error:
                return Settle(future, error=SerializationError(
                    f"the task's result could not be unpickled here: {error!r}"), profiling=result.profiling)
        if status == "cancelled":
            return SettleCancelled(future)
        return Settle(future, error=loads_exception(result.value), profiling=result.profiling)

    # --- from the object storage ----------------------------------------------------------------

    def storage_heard(self, now: float) -> None:
        self._storage_heard = now

    def on_storage(self, message, frames) -> List:
        if type(message) is not protocol.ObjectData:
            return []
        self._fetched_elsewhere.discard(message.object_id)
        waiters = self.on_demand.pop(message.object_id, None)
        if waiters is not None:
            return [DeliverObject(waiter, frames if message.found else None) for waiter in waiters]
        result = self.fetching.pop(message.object_id, None)
        future = self.futures.pop(message.object_id, None)
        if result is None or future is None:
            return []
        self.released.append(message.object_id)
        if not message.found:
            return [Settle(future, error=LookupError(
                f"the result of task {message.object_id.hex()} is gone from the object storage"),
                profiling=result.profiling)]
        # unpickled by whoever reads it: a large result must not stall heartbeats here
        return [Settle(future, EncodedResult(frames), profiling=result.profiling)]

    def end_of_cycle(self) -> List:
        if not self.released:
            return []
        released, self.released = self.released, []
        return [ToScheduler(protocol.ObjectDelete(object_ids=released))]

    # --- time -----------------------------------------------------------------------------------

    def on_tick(self, now: float) -> List:
        if not self.welcomed and now - self.started > self.timeout_seconds:
            return self.close(SchedulerDiedError(
                f"no scheduler answered at {self.address} within {self.timeout_seconds:g}s"))
        if self.shutdown_deadline is not None and now >= self.shutdown_deadline:
            return self.close(SchedulerDiedError("the client disconnected"), on_purpose=True)
        if now - self.last_heard > self.timeout_seconds:
            return self.close(SchedulerDiedError(
                f"the scheduler at {self.address} stopped answering (silent for {now - self.last_heard:.0f}s)"))
        instructions = self._check_storage(now)
        if self.resend_log is not None:
            freed = self.resend_log.prune(self.futures)
            if freed:
                instructions.append(ToStorage(protocol.ObjectDelete(object_ids=freed)))
        return instructions + [ToScheduler(protocol.Heartbeat())] if self.welcomed else instructions

    def _check_storage(self, now: float) -> List:
        """While reads wait on the storage: ask it whether it is alive, and fail them once it has said
        nothing for too long (it is gone: waiting longer is a hang)."""
        awaited = [object_id for object_id in (*self.fetching, *self.on_demand)
                   if object_id not in self._fetched_elsewhere]
        if not awaited or self._storage_heard is None:
            self._storage_heard = now  # silence counts only while we wait
            return []
        if now - self._storage_heard <= OBJECT_STORAGE_SILENCE_SECONDS:
            return [ToStorage(protocol.Heartbeat())]
        self._storage_heard = now
        instructions: List = []
        for object_id in awaited:
            error = ObjectStorageSilentError(f"the result of task {object_id.hex()} never came: the object storage "
                                             f"has said nothing for {OBJECT_STORAGE_SILENCE_SECONDS:.0f}s")
            result = self.fetching.pop(object_id, None)
            future = self.futures.pop(object_id, None) if result is not None else None
            if future is not None:
                instructions.append(Settle(future, error=error, profiling=result.profiling))
            instructions += [DeliverObject(waiter, None) for waiter in self.on_demand.pop(object_id, ())]
        return instructions

    def on_storage_answered(self, object_id: bytes) -> None:
        """The storage said where the object is: it is read from its host, under that fetch's deadlines."""
        self._fetched_elsewhere.add(object_id)

    # --- the end --------------------------------------------------------------------------------

    def close(self, error: BaseException, on_purpose: bool = False) -> List:
        """Every pending future fails with `error` (or is cancelled when we leave on purpose)."""
        if self.closed:
            return []
        self.failure = error
        self.closed = True
        futures, self.futures = list(self.futures.values()), {}
        self.fetching.clear()
        settle = (SettleCancelled(future) if on_purpose else Settle(future, error=error) for future in futures)
        waiters = [waiter for waiting in self.on_demand.values() for waiter in waiting]
        self.on_demand.clear()
        return [*settle, *(DeliverObject(waiter, None) for waiter in waiters), Leave()]
