"""The declared products: one file per product lists every stage and component in order."""
