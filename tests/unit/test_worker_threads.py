"""Each worker's share of the cores for numerical libraries (worker/cluster.py)."""

import os

from scaler_core.worker.cluster import NUMERICAL_THREAD_VARIABLES, numerical_thread_limits


def test_workers_split_the_cores_and_an_exported_value_wins(monkeypatch):
    for name in NUMERICAL_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert numerical_thread_limits(8) == {name: "1" for name in NUMERICAL_THREAD_VARIABLES}
    assert numerical_thread_limits(2)["OPENBLAS_NUM_THREADS"] == "4"
    assert numerical_thread_limits(16)["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert "OMP_NUM_THREADS" not in numerical_thread_limits(8)
