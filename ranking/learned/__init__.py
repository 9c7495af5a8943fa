"""Learned rankers: LightGBM lambdarank over retrieval candidates."""
