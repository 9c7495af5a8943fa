"""Post-selection hydrators of the steering package."""
