"""Import MicroLens short-video titles as clips; keep the category labels out of the store.

Each item becomes a clip: ``item_id = video_id``, an unknown creator per item
(``author_id = 2_000_000_000 + video_id``), the English title as caption, hashtags parsed from
the ``#`` segments of the title, and ``prior_likes``/``prior_views`` from ``likes``/``views``.

The ``category`` label is never read by the importer: steering is scored against it, so it must
not be an input to steering. :func:`load_microlens_categories` returns it for evaluation only.

Data quirk: ``title_100k`` is the MicroLens-100k title, cut at the first comma (and sometimes
reduced to a later comma-separated piece such as ``"453"``), an artefact of the CSV it came
from; ``title_full_50k`` is the whole title but is missing for 518 items. The caption is
therefore ``title_full_50k`` where present and ``title_100k`` otherwise.

MicroLens video ids overlap LastFM artist ids: import the two into separate stores (the importer
refuses to overwrite clips stored under another author).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Final

import polars as pl

from pipelines.importers.errors import ImporterError
from pipelines.importers.generic import check_clip_authors, import_frame
from storage.store import Store

logger = logging.getLogger(__name__)

MICROLENS_AUTHOR_OFFSET: Final = 2_000_000_000
"""Added to ``video_id`` to give each item its own (unknown) creator."""

ITEMS_FILE: Final = "microlens_items.parquet"

MAX_HASHTAG_WORDS: Final = 6
"""Longer ``#`` segments are a tag run into the rest of the sentence; they are dropped."""

MAX_HASHTAG_CHARS: Final = 40

# Everything the importer reads; ``category`` is deliberately absent.
_CLIP_SOURCE_COLUMNS: Final = ("video_id", "title_full_50k", "title_100k", "likes", "views")


def import_microlens(
    store: Store, data_dir: Path, *, limit: int | None = None, progress: bool = False
) -> int:
    """Import MicroLens items as clips.

    Parameters
    ----------
    store
        The store to write into.
    data_dir
        The folder holding ``microlens_items.parquet``.
    limit
        Import only the first ``limit`` items by ``video_id``.
    progress
        Show a rich progress bar while inserting.

    Returns
    -------
    int
        Clips inserted (or replaced, when importing again).

    Raises
    ------
    ImporterError
        The items file or one of its columns is missing, ``limit`` is negative, or the store
        holds clips of another data set (LastFM artists) under the same ids.
    """
    started = time.perf_counter()
    if limit is not None and limit < 0:
        msg = f"limit must be zero or more, got {limit}"
        raise ImporterError(msg)
    items = _read_items(Path(data_dir), _CLIP_SOURCE_COLUMNS).sort("video_id")
    if limit is not None:
        items = items.head(limit)
    clips = microlens_clips(items)
    check_clip_authors(store, clips, source="microlens:clips")
    report = import_frame(store, "clips", clips, progress=progress, source="microlens:clips")
    logger.info(
        "import_microlens clips=%d empty_captions=%d ms=%d",
        report.rows_inserted,
        clips.filter(pl.col("caption") == "").height,
        round((time.perf_counter() - started) * 1000),
    )
    return report.rows_inserted


def load_microlens_categories(data_dir: Path) -> pl.DataFrame:
    """Return each item's category label, for scoring steering (never for steering itself).

    Parameters
    ----------
    data_dir
        The folder holding ``microlens_items.parquet``.

    Returns
    -------
    polars.DataFrame
        ``item_id`` (Int64) and ``category`` (String), sorted by ``item_id``.

    Raises
    ------
    ImporterError
        The items file or one of its columns is missing.
    """
    items = _read_items(Path(data_dir), ("video_id", "category"))
    return items.select(
        item_id=pl.col("video_id").cast(pl.Int64), category=pl.col("category")
    ).sort("item_id")


def microlens_clips(items: pl.DataFrame) -> pl.DataFrame:
    """Turn MicroLens item rows into clip rows.

    Parameters
    ----------
    items
        ``video_id, title_full_50k, title_100k, likes, views``; any other column (``category``
        in particular) is ignored.

    Returns
    -------
    polars.DataFrame
        ``item_id, author_id, caption, hashtags, prior_likes, prior_views``. Items with no title
        at all get an empty caption.
    """
    caption = (
        pl.coalesce(
            pl.col("title_full_50k").str.strip_chars().replace("", None),
            pl.col("title_100k").str.strip_chars(),
        )
        .fill_null("")
        .alias("caption")
    )
    return items.select(
        item_id=pl.col("video_id").cast(pl.Int64),
        author_id=pl.col("video_id").cast(pl.Int64) + MICROLENS_AUTHOR_OFFSET,
        caption=caption,
        hashtags=parse_hashtags(caption),
        prior_likes=pl.col("likes").cast(pl.Int64),
        prior_views=pl.col("views").cast(pl.Int64),
    )


def parse_hashtags(text: pl.Expr) -> pl.Expr:
    """Parse ``#`` tags out of titles.

    MicroLens titles are machine-translated, so a tag is the text after a ``#`` up to the next
    ``#`` or the end, often several words (``"# summer attack # cartoon recommendation"``).
    Each segment is trimmed of punctuation and emoji at both ends, whitespace-collapsed and
    lower-cased; segments with no letter, more than :data:`MAX_HASHTAG_WORDS` words or more than
    :data:`MAX_HASHTAG_CHARS` characters (a tag run into the rest of the sentence) are dropped,
    and repeats removed keeping the first.

    Parameters
    ----------
    text
        An expression of titles.

    Returns
    -------
    polars.Expr
        A ``List(String)`` expression of tags, empty where there are none.
    """
    tag = (
        pl.element()
        .str.replace_all(r"\s+", " ")
        .str.replace(r"^[^\p{L}\p{N}]+", "")
        .str.replace(r"[^\p{L}\p{N}]+$", "")
        .str.to_lowercase()
    )
    keep = (
        pl.element().str.contains(r"\p{L}")
        & (pl.element().str.count_matches(" ") < MAX_HASHTAG_WORDS)
        & (pl.element().str.len_chars() <= MAX_HASHTAG_CHARS)
    )
    return (
        text.str.split("#")
        .list.slice(1)
        .list.eval(tag)
        .list.eval(pl.element().filter(keep))
        .list.unique(maintain_order=True)
        .fill_null(pl.lit([], dtype=pl.List(pl.String)))
        .alias("hashtags")
    )


def _read_items(data_dir: Path, columns: tuple[str, ...]) -> pl.DataFrame:
    path = data_dir / ITEMS_FILE
    if not path.is_file():
        msg = f"MicroLens file not found: {path}"
        raise ImporterError(msg)
    available = pl.read_parquet_schema(path)
    missing = [c for c in columns if c not in available]
    if missing:
        msg = f"{path}: missing column(s) {missing}; it has {', '.join(available)}"
        raise ImporterError(msg)
    return pl.read_parquet(path, columns=list(columns))
