"""Dask drop-in for the Scaler engine.

* :func:`scaler_get` - a Dask scheduler ``get``:
  ``dask.compute(x, scheduler=scaler_get)``.
* :func:`get_for` - the same, bound to an explicit engine client.
* :func:`persist` - ``dask.persist`` with the results left on the cluster.
* :class:`ScalerExecutor` - a ``concurrent.futures.Executor`` on the engine.
"""

from scaler_dask.executor import BrokenScalerExecutor, ScalerExecutor
from scaler_dask.get import get_for, scaler_get
from scaler_dask.persist import persist

__all__ = ["scaler_get", "get_for", "persist", "ScalerExecutor", "BrokenScalerExecutor"]
