"""query_hydrators package."""
