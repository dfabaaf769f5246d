"""Runners execute a model and return named outputs (final, or every layer's)."""
