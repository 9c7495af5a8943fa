"""pipelines: jobs, importers, demo world, evaluation, simulation and generation."""
