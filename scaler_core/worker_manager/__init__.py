"""Worker managers: processes that start and stop groups of workers when the scheduler asks.

`agent.py` speaks the protocol with the scheduler; a `GroupBackend` (backend.py) knows one resource
manager: `native.py` starts clusters on this machine, `slurm.py` submits batch jobs. Another resource
manager (PBS, Kubernetes, a cloud API) is one more backend: start, stop, and report what ended.
"""
