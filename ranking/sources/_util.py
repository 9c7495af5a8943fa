"""Helpers shared by candidate sources."""

from __future__ import annotations

import numpy as np
import polars as pl

from ranking.state import FeedState


def rows_to_candidates(state: FeedState, rows: np.ndarray, scores: np.ndarray) -> pl.DataFrame:
    """Turn clip rows and scores into a candidate frame (``item_id``, ``source_score``)."""
    return pl.DataFrame(
        {
            "item_id": state.catalogue.item_ids[rows].astype(np.int64),
            "source_score": np.asarray(scores, dtype=np.float64),
        }
    )
