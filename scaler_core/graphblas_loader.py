"""python-graphblas, loaded once and checked before anyone relies on it.

The native SuiteSparse library can be missing, or built for another CPU, or simply wrong on an
unusual machine. Both graph users (client-side ordering and the scheduler's graph frontier) ask
here; a library that fails to import or fails the self-test is reported once in the log and
never used, so a graph always falls back to the pure-Python path instead of breaking.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from scaler_core.optional import require

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_module = None
_checked = False


def _self_test(gb) -> None:
    # A 3-node chain 0 -> 1 -> 2: pushing node 0 through the adjacency must reach exactly node 1.
    matrix = gb.Matrix.from_coo(np.array([0, 1]), np.array([1, 2]), np.ones(2, dtype=np.int32), nrows=3, ncols=3)
    vector = gb.Vector.from_coo(np.array([0]), np.ones(1, dtype=np.int32), size=3)
    reached, counts = gb.semiring.plus_times(vector @ matrix).new().to_coo()
    if reached.tolist() != [1] or counts.tolist() != [1]:
        raise RuntimeError(f"self-test pushed node 0 of a chain to {reached.tolist()} with counts {counts.tolist()}")


def graphblas_module():
    """The `graphblas` module if importable and sane here, else None (with one warning)."""
    global _module, _checked
    with _lock:
        if _checked:
            return _module
        _checked = True
        try:
            graphblas = require("graphblas", "GraphBLAS for large graphs")
            _self_test(graphblas)
            _module = graphblas
        except Exception as error:  # noqa: BLE001 - any failure of the native library means "do not use"
            logger.warning("GraphBLAS unavailable (%s); large graphs use the pure-Python path", error)
            _module = None
        return _module
