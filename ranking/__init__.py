"""ranking: the ranking pipeline framework, its components and products."""
