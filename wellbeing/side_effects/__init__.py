"""side_effects package."""
