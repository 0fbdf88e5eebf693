"""``from scaler.cluster.combo import SchedulerClusterCombo`` with the package name changed."""

from scaler_core.combo import SchedulerClusterCombo  # noqa: F401  (re-exported)
