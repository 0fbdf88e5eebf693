"""W2: sequential submit -> result round trips; latency percentiles.
The pyzmq floor system answers with a raw broker ping-pong instead of a task."""

import time

from benchmarks import measure, task_functions

WARM_UP_TRIPS = 20


def run_round_trips(system, n_trips):
    if hasattr(system, "ping_pong"):
        def one_trip(i):
            system.ping_pong(b"%d" % i)
    else:
        def one_trip(i):
            system.result(system.submit(task_functions.increment, i))
    for i in range(WARM_UP_TRIPS):
        one_trip(i)
    latencies = []
    for i in range(n_trips):
        start = time.perf_counter()
        one_trip(i)
        latencies.append(time.perf_counter() - start)
    return {
        "n_trips": n_trips,
        "p50_ms": round(measure.percentile(latencies, 0.5) * 1000, 4),
        "p99_ms": round(measure.percentile(latencies, 0.99) * 1000, 4),
        "mean_ms": round(sum(latencies) / len(latencies) * 1000, 4),
    }
