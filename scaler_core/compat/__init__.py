"""Compatibility layers that run code written for other engines on scaler_core (see docs/ray-compat.md)."""
