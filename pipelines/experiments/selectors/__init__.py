"""selectors package."""
