"""post_hydrators package."""
