"""Upstream Scaler's module paths for names code written for it imports (re-exports only)."""
