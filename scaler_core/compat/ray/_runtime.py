"""The runtime of one session: one client, an optional embedded cluster, actor processes, and
the dispatcher that submits calls once their arguments are ready."""

from __future__ import annotations

import os
import queue
import threading
import uuid
import weakref
from typing import Callable, Dict, Optional

from scaler_core import task_context
from scaler_core.compat.ray import _actor_host
from scaler_core.compat.ray._refs import _Call, _changed, _dependencies_ready, _notify, _resolve_arguments
from scaler_core.compat.ray.exceptions import ActorDiedError, RayError

class _ActorState:
    def __init__(self, actor_id: str, process=None):
        self.actor_id = actor_id
        self.capabilities = {f"actor-{actor_id}": 1}
        self.process = process  # the actor's one-worker cluster, when started by this process
        self.dead: Optional[str] = None
        self.queued = 0  # calls waiting in the dispatcher: later calls queue behind them, keeping order
        self.calls: "weakref.WeakSet[_Call]" = weakref.WeakSet()
        self.creation: Optional[_Call] = None


class _Runtime:
    def __init__(self, address: Optional[str], num_cpus: Optional[int], cluster_options: Optional[dict] = None):
        from scaler_core import Client, SchedulerClusterCombo
        from scaler_core.launch import ChildProcesses

        self.combo = None
        if address is None and not task_context.in_worker():
            # capability placement: actors are routed to their own worker by capability
            options = dict(allocate_policy="capability", logging_level="WARNING")
            options.update(cluster_options or {})
            self.combo = SchedulerClusterCombo(n_workers=num_cpus or os.cpu_count() or 1, **options)
        try:
            self.client = Client(self.combo.address if self.combo else address)
        except BaseException:
            if self.combo is not None:
                self.combo.shutdown()
            raise
        self.address = self.client.address
        self.actors: Dict[str, _ActorState] = {}
        self.processes = ChildProcesses()
        self.lock = threading.Lock()
        self.stopping = False
        self.queue: "queue.SimpleQueue" = queue.SimpleQueue()
        self.dispatcher: Optional[threading.Thread] = None

    # Submission: at once when every top-level and nested ref is ready (and no earlier call of the
    # same actor waits), else through one dispatcher thread, FIFO, so `.remote()` never blocks.
    def submit(self, call: _Call, fn: Callable, args: tuple, kwargs: dict, capabilities: Optional[Dict[str, int]],
               actor: Optional[_ActorState] = None, pack: Optional[Callable] = None) -> None:
        ready = _dependencies_ready(args, kwargs, actor is not None)
        item = (call, fn, args, kwargs, capabilities, ready, actor, pack)
        with self.lock:
            if ready() and (actor is None or actor.queued == 0):
                self._submit_now(item, raise_errors=True)
                return
            if actor is not None:
                actor.queued += 1
            if self.dispatcher is None:
                self.dispatcher = threading.Thread(target=self._dispatch_loop, name="ray-compat-dispatch", daemon=True)
                self.dispatcher.start()
        self.queue.put(item)

    def _submit_now(self, item, raise_errors: bool) -> None:
        call, fn, args, kwargs, capabilities, _dependencies, _actor, pack = item
        if call.error is not None:
            return
        try:
            args, kwargs = _resolve_arguments(args, kwargs, self.client)
        except BaseException as error:  # a dependency failed: so does this call, with its error
            call.fail(error)
            return
        if pack is not None:
            args, kwargs = pack(args, kwargs)
        try:
            future = self.client.submit_verbose(fn, args, kwargs, capabilities=capabilities)
        except Exception as error:
            if raise_errors:
                raise
            call.fail(error)
            return
        call.attach(future, self.client)

    def _dispatch_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            call, ready, actor = item[0], item[5], item[6]
            try:
                with _changed:
                    while not self.stopping and call.error is None and not ready():
                        _changed.wait(1.0)
                if self.stopping:
                    call.fail(RayError("ray.shutdown() was called before the task was submitted"))
                else:
                    with self.lock:
                        self._submit_now(item, raise_errors=False)
            except Exception as error:  # the one dispatcher must outlive a bad call: that call fails
                call.fail(error)
            finally:
                if actor is not None:
                    with self.lock:
                        actor.queued -= 1

    # --- actors ---------------------------------------------------------------------------------

    def create_actor(self, cls: type, args: tuple, kwargs: dict) -> "_ActorState":
        from scaler_core.settings import WorkerSettings

        actor_id = uuid.uuid4().hex[:16]
        state = _ActorState(actor_id)
        # The actor's own one-worker cluster, joining this scheduler and the only one offering the
        # actor's capability (quantity 1: one call at a time, in the scheduler's FIFO order).
        state.process = self.processes.start_cluster(self.address, 1, WorkerSettings(capabilities=state.capabilities),
                                                     "WARNING", ())
        self.actors[actor_id] = state
        call = _Call(state)
        state.calls.add(call)
        state.creation = call
        self.submit(call, _actor_host.create, args, kwargs, state.capabilities, state,
                    pack=lambda a, k: ((actor_id, cls, a, k), {}))
        return state

    def actor_state(self, actor_id: str) -> _ActorState:
        state = self.actors.get(actor_id)
        if state is None:  # a handle that travelled here: calls route by capability all the same
            state = self.actors[actor_id] = _ActorState(actor_id)
        return state

    def kill_actor(self, actor_id: str) -> None:
        state = self.actors.get(actor_id)
        if state is None or state.process is None:
            raise RayError(f"ray.kill: actor {actor_id} was created by another process, which alone can stop it")
        self._fail_calls(state, "it was killed by ray.kill()")
        self.processes.stop(state.process)

    def _fail_calls(self, state: _ActorState, reason: str) -> None:
        state.dead = reason
        for call in list(state.calls):
            if not call.done():
                call.fail(ActorDiedError(f"actor {state.actor_id} cannot run the call: {reason}"))
                if call.future is not None:
                    call.future.cancel()

    def close(self) -> None:
        self.stopping = True
        _notify()
        if self.dispatcher is not None:
            self.queue.put(None)
            self.dispatcher.join(10)
        for state in self.actors.values():
            if state.process is not None and not state.dead:
                self._fail_calls(state, "ray.shutdown() was called")
        self.processes.stop_all()
        try:
            self.client.disconnect()
        finally:
            if self.combo is not None:
                self.combo.shutdown()
