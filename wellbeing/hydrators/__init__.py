"""hydrators package."""
