"""The feature registry: every ranking feature declared once, for serving and training alike.

Serving computes these columns in candidate hydrators
(:class:`ranking.hydrators.clip_features.ClipFeaturesHydrator` and
:class:`ranking.hydrators.learned_features.LearnedFeaturesHydrator`); the impression side effect
logs their values as JSON; training reads that JSON back through :func:`decode_logged` and never
recomputes a feature after the fact. A feature missing from a logged row takes its
:attr:`FeatureSpec.default`, the value that says "nothing known yet".

Entities say what a feature describes:

``clip``
    the clip itself (its counters, age, labels);
``author``
    the clip's creator, independent of the viewer;
``social``
    the viewer's graph around the clip (follows, friends, cameos);
``user_clip``
    the viewer and the clip (taste similarity);
``user_author``
    the viewer and the creator (past interaction strength);
``user``
    the viewer alone (how much history they have);
``context``
    the request (local hour, depth in the session).

Example
-------
>>> spec("like_rate").entity
'clip'
>>> "author_credibility" in feature_names(entities=("author",))
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

Entity = Literal["clip", "author", "user", "user_author", "social", "user_clip", "context"]
ENTITIES: tuple[Entity, ...] = (
    "clip",
    "author",
    "user",
    "user_author",
    "social",
    "user_clip",
    "context",
)


class FeatureRegistryError(KeyError):
    """An unknown feature name or a malformed feature declaration."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class FeatureSpec:
    """One declared feature.

    Parameters
    ----------
    name
        Column name in the candidate frame, the impression log and the training matrix.
    entity
        What the feature describes (see the module docstring).
    dtype
        Polars dtype of the served column (training casts every feature to Float64).
    default
        Value for a row where the feature was not logged or is unknown.
    freshness
        How current the value is when served (what updates it and how often).
    description
        What the number means.
    """

    name: str
    entity: Entity
    dtype: type[pl.DataType]
    default: float
    freshness: str
    description: str


_LIVE = "live: in-memory counters updated by every committed event"
_REQUEST = "per request: the social graph in memory"
_JOB = "job 'author_stats' (every 15 min; defaults until its first run)"

FEATURES: tuple[FeatureSpec, ...] = (
    # -- clip ---------------------------------------------------------------------------------
    FeatureSpec(
        "age_hours",
        "clip",
        pl.Float64,
        24.0,
        "per request: clock",
        "hours since the clip was created",
    ),
    FeatureSpec("views_log", "clip", pl.Float64, 0.0, _LIVE, "log(1 + views)"),
    FeatureSpec("completion_rate", "clip", pl.Float64, 0.4, _LIVE, "smoothed mean watch fraction"),
    FeatureSpec("like_rate", "clip", pl.Float64, 0.05, _LIVE, "smoothed likes per view"),
    FeatureSpec("comment_rate", "clip", pl.Float64, 0.0, _LIVE, "smoothed comments per view"),
    FeatureSpec("remix_rate", "clip", pl.Float64, 0.0, _LIVE, "smoothed remixes per view"),
    FeatureSpec("share_rate", "clip", pl.Float64, 0.0, _LIVE, "smoothed shares per view"),
    FeatureSpec("skip_rate", "clip", pl.Float64, 0.0, _LIVE, "smoothed skips per impression"),
    FeatureSpec("see_less_rate", "clip", pl.Float64, 0.0, _LIVE, "smoothed 'see less' per view"),
    FeatureSpec("report_rate", "clip", pl.Float64, 0.0, _LIVE, "smoothed reports per view"),
    FeatureSpec(
        "velocity_log",
        "clip",
        pl.Float64,
        0.0,
        _LIVE,
        "log(1 + positive engagement decayed with a 6 h half-life)",
    ),
    FeatureSpec(
        "is_generated",
        "clip",
        pl.Float64,
        0.0,
        "static: catalogue",
        "1 when the clip is AI-generated",
    ),
    FeatureSpec(
        "maturity", "clip", pl.Int64, 0.0, "static: catalogue", "0 all ages, 1 teen+, 2 adults"
    ),
    FeatureSpec(
        "safety",
        "clip",
        pl.Int64,
        0.0,
        "catalogue: re-labelled by moderation",
        "0 safe, 1 borderline, 2 violative",
    ),
    # -- social -------------------------------------------------------------------------------
    FeatureSpec(
        "follows_author",
        "social",
        pl.Float64,
        0.0,
        _REQUEST,
        "1 when the viewer follows the creator",
    ),
    FeatureSpec(
        "author_is_friend",
        "social",
        pl.Float64,
        0.0,
        _REQUEST,
        "1 when the viewer and the creator follow each other",
    ),
    FeatureSpec(
        "friends_engaged",
        "social",
        pl.Float64,
        0.0,
        _REQUEST,
        "friends of the viewer who engaged with the clip",
    ),
    FeatureSpec(
        "friend_cameo", "social", pl.Float64, 0.0, _REQUEST, "1 when a friend appears in the clip"
    ),
    FeatureSpec(
        "remix_of_friend",
        "social",
        pl.Float64,
        0.0,
        _REQUEST,
        "1 when the clip remixes a friend's clip",
    ),
    # -- author -------------------------------------------------------------------------------
    FeatureSpec(
        "author_followers_log",
        "author",
        pl.Float64,
        0.0,
        _REQUEST,
        "log(1 + the creator's followers)",
    ),
    FeatureSpec(
        "author_follower_growth_7d",
        "author",
        pl.Float64,
        0.0,
        _JOB,
        "log(1 + followers the creator gained in the last 7 days)",
    ),
    FeatureSpec(
        "author_engagement_rate",
        "author",
        pl.Float64,
        0.05,
        _JOB,
        "smoothed positive engagements per impression over the creator's clips",
    ),
    FeatureSpec(
        "author_credibility",
        "author",
        pl.Float64,
        1.0,
        _JOB,
        "PageRank of the creator on the follow graph, scaled so the mean user is 1",
    ),
    # -- user x clip, user x author ---------------------------------------------------------------
    FeatureSpec(
        "user_clip_cosine",
        "user_clip",
        pl.Float64,
        0.0,
        "live: user vector rebuilt after each positive event",
        "cosine of the caption vector and the viewer's taste vector",
    ),
    FeatureSpec(
        "same_city",
        "user_clip",
        pl.Float64,
        0.0,
        "per request: the city the viewer allows (data controls), the clip's city",
        "1 when the clip was made in the viewer's city (0 with location off or unknown)",
    ),
    FeatureSpec(
        "user_author_affinity",
        "user_author",
        pl.Float64,
        0.0,
        "live: the viewer's engagement history in memory",
        "log(1 + the viewer's positive engagement with the creator, 7 day half-life)",
    ),
    # -- context ------------------------------------------------------------------------------
    FeatureSpec(
        "hour_of_day",
        "context",
        pl.Float64,
        12.0,
        "per request: clock",
        "hour in the viewer's time zone, with fraction (0-24)",
    ),
    FeatureSpec(
        "session_depth",
        "context",
        pl.Float64,
        0.0,
        "per request: cursor",
        "clips served earlier in this session (page * limit)",
    ),
)

#: Where the retriever features come from: the retrievers saved with the serving model.
_RETRIEVERS = "model: the retrievers fitted with the serving model (train job), per request"
#: Retrievers of the candidate features (EASE, two collaborative factorisations, item kNN,
#: RP3beta), each giving a raw score, the score over the user's best, and the rank.
RETRIEVER_NAMES: tuple[str, ...] = ("ease", "collab", "collab_alt", "knn", "rp3")
#: Rank of an item a retriever cannot score (worse than any real rank).
UNRANKED = 100_000.0

_RETRIEVER_KINDS = {
    "score": (0.0, "raw score of the user x clip pair"),
    "norm": (0.0, "score divided by the user's best score"),
    "rank": (UNRANKED, "rank of the clip among everything the user has not engaged with"),
}

#: The candidate features of :mod:`ranking.learned.candidate_features`, computed from the
#: engagement history by the retrievers the ranker was trained with.
CANDIDATE_FEATURES: tuple[FeatureSpec, ...] = (
    *(
        FeatureSpec(f"{r}_{kind}", "user_clip", pl.Float64, default, _RETRIEVERS, f"{r}: {text}")
        for r in RETRIEVER_NAMES
        for kind, (default, text) in _RETRIEVER_KINDS.items()
    ),
    FeatureSpec("item_listeners", "clip", pl.Float64, 0.0, _RETRIEVERS, "people who engaged"),
    FeatureSpec(
        "item_log_listens_mean",
        "clip",
        pl.Float64,
        0.0,
        _RETRIEVERS,
        "mean log(1 + engagement weight) over the clip's people",
    ),
    FeatureSpec(
        "item_pop_rank", "clip", pl.Float64, UNRANKED, _RETRIEVERS, "rank by people who engaged"
    ),
    FeatureSpec("user_items", "user", pl.Float64, 0.0, _RETRIEVERS, "clips the viewer engaged"),
    FeatureSpec(
        "user_log_listens_mean",
        "user",
        pl.Float64,
        0.0,
        _RETRIEVERS,
        "mean log(1 + engagement weight) over the viewer's clips",
    ),
    FeatureSpec(
        "user_mean_item_pop",
        "user",
        pl.Float64,
        0.0,
        _RETRIEVERS,
        "mean popularity of the clips the viewer engaged with",
    ),
    FeatureSpec("user_friends", "user", pl.Float64, 0.0, _RETRIEVERS, "the viewer's friends"),
    FeatureSpec("friends_listened", "social", pl.Float64, 0.0, _RETRIEVERS, "friends who engaged"),
    FeatureSpec(
        "friends_listened_frac",
        "social",
        pl.Float64,
        0.0,
        _RETRIEVERS,
        "share of the viewer's friends who engaged",
    ),
    FeatureSpec(
        "friends_log_listens",
        "social",
        pl.Float64,
        0.0,
        _RETRIEVERS,
        "sum of the friends' log(1 + engagement weight)",
    ),
    FeatureSpec(
        "top_items_similarity",
        "user_clip",
        pl.Float64,
        0.0,
        _RETRIEVERS,
        "item-kNN similarity to the viewer's five most engaged clips",
    ),
    FeatureSpec(
        "tag_similarity",
        "user_clip",
        pl.Float64,
        0.0,
        _RETRIEVERS,
        "cosine of the viewer's and the clip's tag profiles (tags of engaged pairs only)",
    ),
    FeatureSpec(
        "item_tag_count", "clip", pl.Float64, 0.0, _RETRIEVERS, "distinct tags on the clip"
    ),
)
FEATURES = (*FEATURES, *CANDIDATE_FEATURES)

REGISTRY: dict[str, FeatureSpec] = {f.name: f for f in FEATURES}


def _check_declarations(features: Sequence[FeatureSpec]) -> None:
    names = [f.name for f in features]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        msg = f"features declared twice: {dupes}"
        raise FeatureRegistryError(msg)
    bad = [f.name for f in features if f.entity not in ENTITIES]
    if bad:
        msg = f"features with an unknown entity: {bad}; valid: {list(ENTITIES)}"
        raise FeatureRegistryError(msg)


_check_declarations(FEATURES)


def spec(name: str) -> FeatureSpec:
    """Return the declaration of one feature.

    Raises
    ------
    FeatureRegistryError
        When the name is not declared (the message lists the valid names).
    """
    try:
        return REGISTRY[name]
    except KeyError:
        msg = f"unknown feature {name!r}; valid: {', '.join(REGISTRY)}"
        raise FeatureRegistryError(msg) from None


def feature_names(*, entities: Iterable[Entity] | None = None) -> tuple[str, ...]:
    """Names of the declared features in declaration order, optionally of some entities only."""
    if entities is None:
        return tuple(REGISTRY)
    want = set(entities)
    unknown = sorted(want - set(ENTITIES))
    if unknown:
        msg = f"unknown entities {unknown}; valid: {list(ENTITIES)}"
        raise FeatureRegistryError(msg)
    return tuple(f.name for f in FEATURES if f.entity in want)


def validate_names(names: Iterable[str]) -> tuple[str, ...]:
    """Return ``names`` as a tuple after checking each is declared."""
    out = tuple(names)
    unknown = [n for n in out if n not in REGISTRY]
    if unknown:
        msg = f"unknown features {unknown}; valid: {', '.join(REGISTRY)}"
        raise FeatureRegistryError(msg)
    return out


def defaults(names: Iterable[str] | None = None) -> dict[str, float]:
    """Default value of each named feature (all declared features when ``names`` is None)."""
    return {n: spec(n).default for n in (REGISTRY if names is None else names)}


def decode_logged(features_json: pl.Series, names: Sequence[str] | None = None) -> pl.DataFrame:
    """Parse logged impression features (JSON strings) into one Float64 column per feature.

    Keys that are not declared features (``score``, old names) are ignored; a missing key, a
    null value or a null row takes the feature's default.

    Parameters
    ----------
    features_json
        The ``features`` column of impression events.
    names
        Features to return (default: every declared feature), in this column order.

    Returns
    -------
    polars.DataFrame
        ``len(features_json)`` rows, one Float64 column per name.
    """
    cols = validate_names(names if names is not None else REGISTRY)
    dtype = pl.Struct([pl.Field(n, pl.Float64) for n in cols])
    s = features_json.cast(pl.String).fill_null("{}")
    decoded = s.str.json_decode(dtype).struct.unnest()
    return decoded.select(
        pl.col(n).cast(pl.Float64).fill_nan(None).fill_null(spec(n).default) for n in cols
    )


def matrix(frame: pl.DataFrame, names: Sequence[str]) -> np.ndarray:
    """A float64 ``(rows, len(names))`` matrix of feature columns; absent or null -> default.

    Used by both training and serving so a feature is always read the same way.
    """
    have = set(frame.columns)
    out = np.empty((frame.height, len(names)), dtype=np.float64)
    for j, n in enumerate(names):
        if n in have:
            col = frame.get_column(n)
            # nulls come out of ``to_numpy`` as NaN; both take the default below
            out[:, j] = (col if col.dtype == pl.Float64 else col.cast(pl.Float64)).to_numpy()
        else:
            out[:, j] = spec(n).default
    # One NaN test over the whole matrix, not a null count and a NaN test per column (the
    # serving path builds this matrix on every page).
    bad = np.isnan(out)
    if bad.any():
        out = np.where(bad, np.asarray([spec(n).default for n in names], dtype=np.float64), out)
    return out
