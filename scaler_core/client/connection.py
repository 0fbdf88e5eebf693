"""The client's shell: `ClientState` (state.py) decides, `PeerIO` (peer_io.py) moves the bytes.

The I/O loop runs in a thread of its own. User threads register futures with the state and post
messages to the loop (a task batch goes out from the user's thread itself when the loop is idle:
`PeerIO.send_now_if_idle`). Every call into the state holds one lock; the futures the state
settles are settled after it is released, since settling runs the user's callbacks.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from typing import Optional

from scaler_core import protocol
from scaler_core.client.state import (
    AddWarnings, ClientState, DeliverObject, MarkStarted, Settle, SettleCancelled, SettleKept, Welcomed, WriteOutput,
)
from scaler_core.client.futures import KeptOnCluster
from scaler_core.errors import SchedulerDiedError
from scaler_core.host_store import PENDING, HostStore, LocatedObjects, close_process_store, open_process_store
from scaler_core.serialization import frames_size
from scaler_core.instructions import Leave, ToScheduler, ToStorage
from scaler_core.peer_io import PeerIO
from scaler_core.security import CurveKeys

logger = logging.getLogger(__name__)

# Objects at least this large go to the client's own host store instead of through the object storage.
HOST_STORE_MIN_BYTES = 1024 * 1024


class _Disconnect:
    """A user's disconnect (or shutdown request), carried out in the loop after what it queued before."""

    __slots__ = ("shutdown_scheduler",)

    def __init__(self, shutdown_scheduler: bool):
        self.shutdown_scheduler = shutdown_scheduler


class ClientConnection:
    def __init__(self, address: str, client_id: bytes, timeout_seconds: float, heartbeat_interval_seconds: float,
                 keys: CurveKeys = CurveKeys()):
        self.address = address
        self.client_id = client_id
        self.state = ClientState(client_id, address, timeout_seconds, heartbeat_interval_seconds, time.monotonic())
        self._lock = threading.Lock()  # every call into `state`
        self.io = PeerIO(self, name="client", identity=client_id, scheduler_address=address, keys=keys,
                         tick_interval_seconds=heartbeat_interval_seconds, accept_direct_results=True)
        self.located = LocatedObjects(self._arrived_from_another_host)
        self._keys = keys
        self._store: Optional[HostStore] = None  # made with the first large object sent
        self._object_server = None
        self._store_unavailable = False
        self._store_lock = threading.Lock()
        self.welcomed = threading.Event()  # set once welcomed, or once closed (the constructor stops waiting)
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scaler-client-io", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def failure(self):
        return self.state.failure

    @property
    def futures(self):
        return self.state.futures

    @property
    def graph_warnings(self):
        return self.state.graph_warnings

    @property
    def shutdown_response(self):
        return self.state.shutdown_response

    # --- called from user threads ---------------------------------------------------------------

    def register(self, futures) -> None:
        with self._lock:
            self.state.register(futures)

    def forget(self, task_id: bytes):
        """Stop tracking a task's future (a cancel took it); the future, or None if it was gone."""
        with self._lock:
            return self.state.futures.pop(task_id, None)

    def send_tasks(self, encoded_batch: bytes, task_ids=(), graph_id: bytes = b"", blobs=()) -> None:
        if self.state.resend_log is not None:
            with self._lock:
                self.state.remember_tasks(encoded_batch, task_ids, graph_id, blobs)
        if not self.io.send_now_if_idle(encoded_batch):
            self._post(ToScheduler(encoded_batch))

    def send(self, message) -> None:
        self._post(ToScheduler(message))

    def send_cancel(self, task_id: bytes, pending_only: bool) -> None:
        if pending_only and self.state.resend_log is not None:
            with self._lock:
                self.state.remember_cancel(task_id)
        self._post(ToScheduler(protocol.TaskCancel(task_ids=[task_id], pending_only=pending_only)))

    def send_graph(self, submit, kept: bool = False) -> None:
        if self.state.resend_log is not None:
            with self._lock:
                self.state.remember_graph(submit, kept)
        self._post(ToScheduler(submit))

    def send_to_storage(self, message, frames=()) -> None:
        self._post(ToStorage(message, frames))

    def put_object(self, object_id: bytes, frames) -> None:
        """Send an object to the cluster: a large one is written to this client's host store (the
        object storage learns where; workers on this host map it, others fetch it from this
        process's object server), anything else goes to the object storage itself."""
        store = self._host_store_for(frames)
        if store is not None:
            try:
                size = store.put(object_id, frames)
            except OSError as error:
                logger.warning("client: could not keep an object in the host store (%s); sending it", error)
            else:
                self.send_to_storage(protocol.ObjectPut(object_id=object_id, owner_id=self.client_id,
                                                        location=store.encoded_location, size=size))
                return
        self.send_to_storage(protocol.ObjectPut(object_id=object_id, owner_id=self.client_id), frames)

    def _host_store_for(self, frames) -> Optional[HostStore]:
        if self._store_unavailable or frames_size(frames) < HOST_STORE_MIN_BYTES:
            return None
        with self._store_lock:
            if self._store is None and not self._store_unavailable:
                self._store, self._object_server = open_process_store(self.address, self._keys, "Client")
                self._store_unavailable = self._store is None
                if self._store is not None:
                    self._store.recycle_deleted_files()  # trimmed at each tick
            return self._store

    def fetch_kept(self, object_id: bytes) -> list:
        """The frames of a result that stayed on the cluster (blocks until they are here)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a kept result cannot be read on the client's I/O thread (e.g. in a done-callback): "
                               "read it from another thread")
        waiter = _ObjectWaiter()
        instructions = self._decide(self.state.request_object, object_id, waiter)
        for instruction in instructions:
            if type(instruction) is DeliverObject:
                self.perform(instruction)
            else:
                self._post(instruction)
        frames = waiter.wait()
        if frames is None:
            raise LookupError(f"the result of task {object_id.hex()} is gone from the cluster"
                              f"{'' if self.state.failure is None else f' ({self.state.failure})'}")
        return frames

    def disconnect(self, shutdown_scheduler: bool) -> None:
        self._post(_Disconnect(shutdown_scheduler))

    def _post(self, instruction) -> None:
        if self.closed.is_set() or not self.io.post(instruction):
            raise self.state.failure or SchedulerDiedError("the client is closed")

    # --- the I/O loop's handler (its thread) ----------------------------------------------------

    def _run(self) -> None:
        try:
            self.io.run(protocol.ClientHello(client_id=self.client_id, version=protocol.PROTOCOL_VERSION))
        finally:  # even if closing itself failed: nobody may wait on a connection that is gone
            self.located.stop()
            with self._lock:  # readers of kept results still waiting: nothing will answer them now
                waiting = [waiter for waiters in self.state.on_demand.values() for waiter in waiters]
                self.state.on_demand.clear()
            for waiter in waiting:
                waiter.deliver(None)
            with self._store_lock:
                close_process_store(self._store, self._object_server)
                self._store, self._store_unavailable = None, True
            self.closed.set()
            self.welcomed.set()

    def _decide(self, event, *args):
        with self._lock:
            instructions = event(*args)
            self.io.tick_interval_seconds = self.state.heartbeat_interval_seconds
            if self.state.closed:
                self.io.direct_sends = False
                self.closed.set()
        return instructions

    def on_scheduler(self, message, frames, now):
        return self._decide(self.state.on_scheduler, message, now)

    def on_inbox(self, message, frames, now):
        return self._decide(self.state.on_direct_results, message)

    def on_storage(self, message, frames, now):
        self.state.storage_heard(now)  # one attribute: no lock needed
        if type(message) is protocol.ObjectData and message.found and message.location:
            # a worker's result in a host store: mapped from its file on this host, else fetched
            frames = self.located.read(message.object_id, message.location)
            if frames is PENDING:
                with self._lock:
                    self.state.on_storage_answered(message.object_id)
                return ()
            if frames is None:
                message = protocol.ObjectData(object_id=message.object_id, found=False)
        return self._decide(self.state.on_storage, message, frames)

    def _arrived_from_another_host(self, object_id: bytes, frames) -> None:
        message = protocol.ObjectData(object_id=object_id, found=frames is not None)
        instructions = self._decide(self.state.on_storage, message, frames or ())
        if instructions:
            self.io.post(*instructions)

    def on_tick(self, now):
        store = self._store
        if store is not None:
            store.trim_recycled()
        return self._decide(self.state.on_tick, now)

    def on_leave(self, leave):
        return ()

    def end_of_cycle(self):
        return self._decide(self.state.end_of_cycle) if self.state.released else ()

    def on_loop_error(self, error: BaseException) -> None:
        instructions = self._decide(self.state.close, SchedulerDiedError(f"the client's I/O loop crashed: {error!r}"))
        for instruction in instructions:
            if not isinstance(instruction, Leave):
                self.perform(instruction)

    def perform(self, instruction) -> None:
        kind = type(instruction)
        if kind is Settle:
            future = instruction.future
            future._profiling = instruction.profiling
            future._settle(instruction.value, instruction.error)
        elif kind is MarkStarted:
            instruction.future._mark_started()
        elif kind is SettleCancelled:
            instruction.future._settle_cancelled()
        elif kind is SettleKept:
            future = instruction.future
            future._profiling = instruction.profiling
            # released (deleted on the cluster) once nobody holds the future any more
            weakref.finalize(future, release_when_collected, weakref.ref(self), instruction.object_id, True)
            future._settle(KeptOnCluster(instruction.object_id, self.fetch_kept))
        elif kind is DeliverObject:
            instruction.waiter.deliver(instruction.frames)
        elif kind is AddWarnings:
            target = instruction.target
            if hasattr(target, "_add_warnings"):
                target._add_warnings(instruction.warnings)
            else:
                target.extend(instruction.warnings)
        elif kind is WriteOutput:
            stream = sys.stdout if instruction.stream == "stdout" else sys.stderr
            stream.write(instruction.text)
            stream.flush()
        elif kind is Welcomed:
            self.io.direct_sends = not self.closed.is_set()
            self.welcomed.set()
        elif kind is _Disconnect:
            self.io.carry_out(self._decide(self.state.on_disconnect, instruction.shutdown_scheduler,
                                            time.monotonic()))
        else:
            raise TypeError(f"client: no way to carry out {instruction!r}")


class _ObjectWaiter:
    __slots__ = ("event", "frames")

    def __init__(self):
        self.event = threading.Event()
        self.frames = None

    def deliver(self, frames) -> None:
        self.frames = frames
        self.event.set()

    def wait(self):
        self.event.wait()
        return self.frames


def release_when_collected(connection_ref, object_id: bytes, through_scheduler: bool) -> None:
    """A weakref.finalize callback: what kept an object alive is gone. A task's result is released
    through the scheduler (it decides when dependents are done with it), an object the client put
    itself is deleted from the storage directly."""
    connection = connection_ref()
    if connection is not None and not connection.closed.is_set():
        message = protocol.ObjectDelete(object_ids=[object_id])
        try:
            connection.send(message) if through_scheduler else connection.send_to_storage(message)
        except Exception:
            pass  # closed meanwhile: the client's objects go when it leaves
