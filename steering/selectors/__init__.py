"""Selectors of the steering package."""
