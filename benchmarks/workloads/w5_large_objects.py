"""W5: large payloads. A numpy array into a task and back out (identity), and send_object of a large
object followed by a task that reads it. MB/s and peak RSS of every process of the system."""

import numpy as np

from benchmarks import measure, task_functions
from benchmarks.workloads.common import Stopwatch, named_processes


def _random_payload(megabytes):
    return np.random.default_rng(0).integers(0, 256, size=megabytes * measure.MB, dtype=np.uint8)


def _summarise(payload_mb, moved_mb, seconds, monitor):
    peaks = monitor.peaks_mb()
    largest_role = max(peaks, key=peaks.get)
    growth = {name: peaks[name] - monitor.start_rss.get(name, 0) / measure.MB for name in peaks}
    return {
        "payload_mb": payload_mb,
        "seconds": round(seconds, 4),
        "mb_per_s": round(moved_mb / seconds, 1),
        "max_peak_rss_mb": peaks[largest_role],
        "max_peak_rss_role": largest_role,
        "max_peak_over_payload": round(peaks[largest_role] / payload_mb, 2),
        "max_growth_over_payload": round(max(growth.values()) / payload_mb, 2),
        "peak_rss_mb_by_process": peaks,
    }


def run_array_round_trip(system, payload_mb):
    """MB/s counts the payload twice: into the task and back out."""
    array = _random_payload(payload_mb)
    roles = named_processes(system)
    with measure.PeakRssMonitor(roles) as monitor, Stopwatch() as watch:
        if hasattr(system, "echo_large"):
            returned = np.frombuffer(system.echo_large(array), dtype=np.uint8)
        else:
            returned = system.result(system.submit(task_functions.identity, array))
    if returned.nbytes != array.nbytes or returned[-1] != array[-1]:
        raise AssertionError("array came back different")
    return _summarise(payload_mb, 2 * payload_mb, watch.seconds, monitor)


def run_send_object(system, payload_mb):
    """send_object(payload) then a task that receives the reference and reads the object's size.
    The floor is a one-way acknowledged transfer of the same bytes."""
    payload = _random_payload(payload_mb)
    roles = named_processes(system)
    with measure.PeakRssMonitor(roles) as monitor, Stopwatch() as watch:
        if hasattr(system, "send_large"):
            system.send_large(payload)
            size = payload.nbytes
            send_call_seconds = None
        else:
            with Stopwatch() as send_watch:
                reference = system.send_object(payload)
            send_call_seconds = send_watch.seconds
            size = system.result(system.submit(task_functions.payload_size, reference))
    if size != payload.nbytes:
        raise AssertionError(f"task saw {size} bytes, expected {payload.nbytes}")
    metrics = _summarise(payload_mb, payload_mb, watch.seconds, monitor)
    if send_call_seconds is not None:
        metrics["send_call_seconds"] = round(send_call_seconds, 4)
    return metrics
