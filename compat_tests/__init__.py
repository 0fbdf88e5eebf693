"""Compatibility suites: Dask's get contract, Dask's own tests, concurrent.futures conformance.

A package so that helpers (``compat_tests.executor_helpers``) are importable by
reference in worker processes, which get the repository root on PYTHONPATH.
"""
