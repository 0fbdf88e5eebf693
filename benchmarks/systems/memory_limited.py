"""Restart an already started system with a bounded memory and a spill directory (W8 spill case).

The harness starts every system without options; the spill case needs one started with a limit, so the
workload stops the plain one and starts the same kind again in place. The adapter object is kept (only
its cluster/client attributes change), so the harness's own `stop()` at the end of the run stops the
restarted cluster.

- ours: `SchedulerClusterCombo(..., object_memory_limit_bytes=L, spill_directory=D)` when the combo
  accepts those keywords (issue 15), else `NotSupported` (N/A) without touching the running system.
  L is the limit for the whole cluster's objects: `limit_per_worker x n_workers`.
- distributed: `LocalCluster(..., memory_limit=limit_per_worker, local_directory=D)` with Dask's default
  spill thresholds (target 0.6, spill 0.7, pause 0.8, terminate 0.95 of the limit, per worker process).
"""

import inspect
import logging

from benchmarks.systems.base import NotSupported

OURS_KEYWORDS = ("object_memory_limit_bytes", "spill_directory")


def ours_accepts_spill_keywords():
    """None when SchedulerClusterCombo takes the issue-15 keywords, else why not."""
    from scaler_core import SchedulerClusterCombo
    try:
        parameters = inspect.signature(SchedulerClusterCombo).parameters
    except (TypeError, ValueError) as error:
        return f"cannot inspect SchedulerClusterCombo: {error}"
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    missing = [name for name in OURS_KEYWORDS if name not in parameters]
    if missing:
        return f"SchedulerClusterCombo has no {', '.join(missing)} keyword (issue 15 not implemented yet)"
    return None


def restart_with_memory_limit(system, limit_per_worker_bytes, spill_directory):
    """Stop `system` and start it again bounded; returns a description of the limit applied."""
    if system.name in ("ours", "ours-held"):
        return _restart_ours(system, limit_per_worker_bytes, spill_directory)
    if system.name == "distributed":
        return _restart_distributed(system, limit_per_worker_bytes, spill_directory)
    raise NotSupported(f"{system.name}: no memory limit with spilling")


def _restart_ours(system, limit_per_worker_bytes, spill_directory):
    problem = ours_accepts_spill_keywords()
    if problem:
        raise NotSupported(problem)
    from scaler_core import Client, SchedulerClusterCombo
    limit = limit_per_worker_bytes * system.n_workers
    system.stop()
    # the system's own held budget (ours-held: its share of the limit); ours takes the default, none
    options = dict(getattr(system, "combo_options", None) or {})
    system.combo = SchedulerClusterCombo(address=None, n_workers=system.n_workers,
                                         object_memory_limit_bytes=limit, spill_directory=spill_directory, **options)
    system.address = system.combo.address
    system.client = Client(address=system.address)
    system.wait_for_all_workers()
    return {"object_memory_limit_bytes": limit, "limit_scope": "cluster objects"}


def _restart_distributed(system, limit_per_worker_bytes, spill_directory):
    from distributed import Client, LocalCluster
    system.stop()
    system.cluster = LocalCluster(n_workers=system.n_workers, processes=True, threads_per_worker=1,
                                  memory_limit=limit_per_worker_bytes, local_directory=spill_directory,
                                  dashboard_address=None, silence_logs=logging.ERROR)
    system.client = Client(system.cluster)
    system.client.wait_for_workers(system.n_workers)
    system.wait_for_all_workers()
    return {"memory_limit_per_worker_bytes": limit_per_worker_bytes, "limit_scope": "worker process"}
