"""Upstream Scaler's ``scaler.utility.graph`` path (graph helpers code written for it imports)."""
