"""Workloads W1-W7. Each entry point takes (system, **params) and returns a dict of metrics."""
