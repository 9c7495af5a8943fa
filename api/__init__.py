"""api: the FastAPI app and the steerfeed CLI."""
