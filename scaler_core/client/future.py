"""``from scaler.client.future import ScalerFuture`` with the package name changed."""

from scaler_core.client.futures import ScalerFuture  # noqa: F401  (re-exported)
