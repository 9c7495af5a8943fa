"""products package."""
