"""Side-by-side benchmark harness: this engine versus the reference Scaler, Dask and ProcessPoolExecutor.

Run ``python -m benchmarks.run --help``. See ``benchmarks/README.md``.
"""
