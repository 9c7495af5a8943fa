"""Post-selection hydrator: "why am I seeing this" from the learned model's feature contributions.

It removes nothing. It annotates the rows of the selected page (not the thousand scored
candidates: explaining costs a TreeSHAP pass per model, so it runs on ~20 rows) with

``_contributions``
    the strongest signed feature contributions to the learned value
    (``[{"feature": name, "value": contribution}]``, LightGBM ``pred_contrib`` on every head
    weighted like the value model, see
    :meth:`ranking.learned.value_model.LearnedValueModel.contributions`);
``_explain``
    the same in words: ``{"model": version, "why": [...], "held_back": [...]}``.

:meth:`pipelines.serving.engine.Engine._to_page` turns ``_contributions`` into the item's ``reason``
and merges ``_explain`` into its ``explanation``. Pages scored by the hand-weighted fallback
(no learned model serves) pass through untouched.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pyarrow as pa

from ranking.explain import contribution_phrases
from ranking.learned.registry import HAND_WEIGHTED
from ranking.learned.serving import LearnedModels
from ranking.learned.value_model import LearnedModelError
from ranking.pipeline import FeedQuery, set_columns
from ranking.scorers.lightgbm_scorer import LightGbmScorer

logger = logging.getLogger(__name__)

CONTRIBUTIONS_DTYPE = pl.List(pl.Struct({"feature": pl.String, "value": pl.Float64}))


class LearnedExplanationsPostHydrator:
    """Adds ``_contributions`` and ``_explain`` to the page rows (keeps every row).

    Parameters
    ----------
    models
        The engine's learned models.
    top_k
        Contributions kept per item.
    """

    name = "learned_explanations"

    def __init__(self, models: LearnedModels, *, top_k: int = 4) -> None:
        self.models = models
        self.top_k = top_k

    def hydrate(self, query: FeedQuery, candidates: pl.DataFrame) -> pl.DataFrame:
        """Return every row, annotated when the learned model scored this request."""
        used = query.context.learned_ranker
        version = used.model if used is not None else None
        score_col = f"score_{LightGbmScorer.name}"
        if (
            not version
            or version == HAND_WEIGHTED
            or candidates.height == 0
            or score_col not in candidates.columns
        ):
            return candidates
        try:
            model = self.models.get(str(version))
        except LearnedModelError:
            return candidates
        weights = model.weights
        if used is not None and used.weights:
            weights = model.weights.model_copy(update=used.weights)
        contribs = model.contributions(model.matrix(candidates), weights, k=self.top_k)
        # The clips' own values of the features named, so every phrase is true of the clip.
        named = sorted(
            {str(c["feature"]) for row in contribs for c in row} & set(candidates.columns)
        )
        values = candidates.select(named).to_dicts() if named else [{}] * candidates.height
        explain = []
        for row, vals in zip(contribs, values, strict=True):
            pairs = [(str(c["feature"]), float(c["value"])) for c in row]
            why, held_back = contribution_phrases(pairs, values=vals)
            explain.append({"model": str(version), "why": why, "held_back": held_back})
        new_explain = pl.Series(
            "_explain",
            explain,
            dtype=pl.Struct(
                {"model": pl.String, "why": pl.List(pl.String), "held_back": pl.List(pl.String)}
            ),
        )
        if "_explain" in candidates.columns and isinstance(
            candidates.schema["_explain"], pl.Struct
        ):
            # Keep what the steering filter wrote (mood, mood_match, rules_applied): replacing
            # the struct dropped them from every page a learned model explained.
            prev = candidates["_explain"].struct.unnest()
            prev = prev.drop([c for c in ("model", "why", "held_back") if c in prev.columns])
            new_explain = pl.concat(
                [prev, new_explain.struct.unnest()], how="horizontal"
            ).to_struct("_explain")
        annotated = set_columns(
            candidates,
            {
                "_contributions": contributions_series(contribs),
                "_explain": new_explain,
            },
        )
        return annotated


def contributions_series(contribs: list[list[dict[str, float | str]]]) -> pl.Series:
    """``_contributions`` as a ``List(Struct(feature, value))`` series, one row per item.

    Built from flat columns and list offsets (Arrow), not from the dicts: polars infers a
    nested type row by row, which costs ~3x more on a page.
    """
    lengths = [len(row) for row in contribs]
    flat = pl.DataFrame(
        {
            "feature": [str(c["feature"]) for row in contribs for c in row],
            "value": [float(c["value"]) for row in contribs for c in row],
        },
        schema={"feature": pl.String, "value": pl.Float64},
    ).to_struct("item")
    offsets = np.zeros(len(contribs) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    lists = pa.ListArray.from_arrays(pa.array(offsets), flat.to_arrow())
    return pl.Series("_contributions", lists, dtype=CONTRIBUTIONS_DTYPE)
