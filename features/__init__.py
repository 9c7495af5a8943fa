"""Features: the feature registry, embeddings and feature computation for training and serving."""
