"""Selectors of the generation domain."""
