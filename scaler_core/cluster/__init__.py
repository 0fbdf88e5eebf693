"""Upstream Scaler's ``scaler.cluster`` path (``from scaler.cluster.combo import SchedulerClusterCombo``)."""
