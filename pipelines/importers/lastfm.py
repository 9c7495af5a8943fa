"""Import the LastFM hetrec-2011 (2k users) data set as users, clips, follows and view events.

Mapping, chosen so the engine can be evaluated on the fixed LastFM split:

- every user (``userID``) becomes a user;
- every artist becomes a clip: ``item_id = artistID``, a synthetic creator per artist
  (``author_id = 1_000_000_000 + artistID``), and a caption of the artist's name followed by up
  to five of its most frequent tags (also stored as ``hashtags``);
- every (user, artist) listen row of the imported split becomes one ``view`` event with
  ``weight`` = listen count, ``watch_frac = 1.0``, a fixed synthetic timestamp and the id
  ``lastfm-{user}-{artist}`` (so importing twice inserts nothing new);
- every friendship becomes two follows, one each way.

Tags are counted only over (user, artist) pairs of the imported split: a tag that a user gave
an artist they listened to in the test split would leak the answer into the captions. All
artists are imported (also those only listened to in test), so they stay rankable candidates.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Final

import polars as pl

from pipelines.importers.errors import ImporterError
from pipelines.importers.generic import ImportKind, check_clip_authors, import_frame
from storage.store import Store

logger = logging.getLogger(__name__)

LASTFM_AUTHOR_OFFSET: Final = 1_000_000_000
"""Added to ``artistID`` to give each artist's clip its own synthetic creator."""

LASTFM_EVENT_TS: Final = datetime(2011, 5, 1)
"""The one timestamp of every imported listen (the data set has none; it was published 2011)."""

CAPTION_TAGS: Final = 5
"""Most frequent tags appended to an artist's caption."""

LISTENS_FILE: Final = "user_artists.parquet"
FRIENDS_FILE: Final = "user_friends.parquet"
ARTISTS_FILE: Final = "artists.parquet"
TAGS_FILE: Final = "tags.parquet"
TAGGED_FILE: Final = "user_taggedartists.parquet"

_PAIR: Final = ("userID", "artistID")


def import_lastfm(
    store: Store,
    data_dir: Path,
    *,
    split_file: Path | None = None,
    split: str = "train",
    progress: bool = False,
) -> dict[str, int]:
    """Import LastFM hetrec-2k into the store.

    Parameters
    ----------
    store
        The store to write into.
    data_dir
        The folder holding the hetrec Parquet files (``user_artists.parquet`` and friends).
    split_file
        A Parquet file of ``userID, artistID, split``; a bare name is looked up in
        ``data_dir``. When given, only listens (and tags) of pairs marked ``split`` are
        imported; when ``None``, all of them.
    split
        Which split to import (``"train"`` for the evaluation protocol).
    progress
        Show rich progress bars while inserting.

    Returns
    -------
    dict[str, int]
        Rows inserted per table: ``users``, ``clips``, ``follows``, ``events``.

    Raises
    ------
    ImporterError
        A file is missing, ``split`` is not a value of the split file, or the store holds
        clips of another data set under the artists' ids (nothing is written then).
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    all_listens = _read(data_dir, LISTENS_FILE)
    listens = all_listens
    if split_file is not None:
        listens = _split_rows(all_listens, _read_split(data_dir, split_file), split)
    friends = _read(data_dir, FRIENDS_FILE)

    frames: dict[ImportKind, pl.DataFrame] = {
        "users": _users(all_listens, friends),
        "clips": artist_clips(
            _read(data_dir, ARTISTS_FILE),
            _read(data_dir, TAGGED_FILE),
            _read(data_dir, TAGS_FILE),
            listens,
        ),
        "follows": _mutual_follows(friends),
        "events": _view_events(listens),
    }
    check_clip_authors(store, frames["clips"], source="lastfm:clips")
    counts: dict[str, int] = {}
    for kind, frame in frames.items():
        report = import_frame(
            store,
            kind,
            frame,
            progress=progress,
            source=f"lastfm:{kind}",
        )
        counts[kind] = report.rows_inserted
    logger.info(
        "import_lastfm split=%s users=%d clips=%d follows=%d events=%d ms=%d",
        split if split_file is not None else "all",
        counts["users"],
        counts["clips"],
        counts["follows"],
        counts["events"],
        round((time.perf_counter() - started) * 1000),
    )
    return counts


def load_lastfm_split(data_dir: Path, split_file: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return the train and test listens of a LastFM split, for evaluation.

    Parameters
    ----------
    data_dir
        The folder holding ``user_artists.parquet``.
    split_file
        A Parquet file of ``userID, artistID, split``; a bare name is looked up in ``data_dir``.

    Returns
    -------
    tuple[polars.DataFrame, polars.DataFrame]
        ``(train, test)``, each with ``user_id``, ``item_id`` (Int64) and ``weight`` (Float64,
        the listen count), sorted by user then item.

    Raises
    ------
    ImporterError
        A file is missing or the split file has no ``train`` or no ``test`` rows.
    """
    data_dir = Path(data_dir)
    listens = _read(data_dir, LISTENS_FILE)
    splits = _read_split(data_dir, split_file)
    frames = []
    for name in ("train", "test"):
        rows = _split_rows(listens, splits, name)
        frames.append(
            rows.select(
                user_id=pl.col("userID").cast(pl.Int64),
                item_id=pl.col("artistID").cast(pl.Int64),
                weight=pl.col("weight").cast(pl.Float64),
            ).sort("user_id", "item_id")
        )
    return frames[0], frames[1]


def artist_clips(
    artists: pl.DataFrame,
    tagged: pl.DataFrame,
    tags: pl.DataFrame,
    listens: pl.DataFrame,
) -> pl.DataFrame:
    """Build one clip per artist, captioned with tags counted over ``listens`` pairs only.

    Parameters
    ----------
    artists
        ``id, name`` (other columns are ignored).
    tagged
        ``userID, artistID, tagID``: who tagged which artist with what.
    tags
        ``tagID, tagValue``.
    listens
        ``userID, artistID`` pairs whose tags may be used (the imported split).

    Returns
    -------
    polars.DataFrame
        ``item_id, author_id, caption, hashtags``, one row per artist, sorted by ``item_id``.
        Tags are lower-cased; ties in frequency are broken alphabetically.
    """
    top_tags = (
        tagged.join(listens.select(_PAIR), on=list(_PAIR), how="semi")
        .join(tags, on="tagID", how="inner")
        .with_columns(tag=pl.col("tagValue").str.strip_chars().str.to_lowercase())
        .filter(pl.col("tag") != "")
        .group_by("artistID", "tag")
        .len()
        .sort(["artistID", "len", "tag"], descending=[False, True, False])
        .group_by("artistID", maintain_order=True)
        .agg(pl.col("tag").head(CAPTION_TAGS).alias("hashtags"))
    )
    name = pl.col("name").str.strip_chars()
    return (
        artists.join(top_tags, left_on="id", right_on="artistID", how="left")
        .with_columns(pl.col("hashtags").fill_null(pl.lit([], dtype=pl.List(pl.String))))
        .select(
            item_id=pl.col("id").cast(pl.Int64),
            author_id=pl.col("id").cast(pl.Int64) + LASTFM_AUTHOR_OFFSET,
            caption=pl.when(pl.col("hashtags").list.len() > 0)
            .then(pl.concat_str(name, pl.lit(": "), pl.col("hashtags").list.join(", ")))
            .otherwise(name),
            hashtags=pl.col("hashtags"),
        )
        .sort("item_id")
    )


def _users(listens: pl.DataFrame, friends: pl.DataFrame) -> pl.DataFrame:
    ids = pl.concat([listens["userID"], friends["userID"], friends["friendID"]]).cast(pl.Int64)
    return pl.DataFrame({"user_id": ids.unique().sort()})


def _mutual_follows(friends: pl.DataFrame) -> pl.DataFrame:
    """Both directions of every friendship (the file has both already; this makes sure)."""
    pairs = friends.select(
        follower_id=pl.col("userID").cast(pl.Int64), followee_id=pl.col("friendID").cast(pl.Int64)
    )
    reverse = pairs.select(follower_id="followee_id", followee_id="follower_id")
    return (
        pl.concat([pairs, reverse])
        .filter(pl.col("follower_id") != pl.col("followee_id"))
        .unique()
        .sort("follower_id", "followee_id")
    )


def _view_events(listens: pl.DataFrame) -> pl.DataFrame:
    return listens.select(
        event_id=pl.format("lastfm-{}-{}", "userID", "artistID"),
        user_id=pl.col("userID").cast(pl.Int64),
        item_id=pl.col("artistID").cast(pl.Int64),
        event_type=pl.lit("view"),
        ts=pl.lit(LASTFM_EVENT_TS, dtype=pl.Datetime("us")),
        watch_frac=pl.lit(1.0),
        weight=pl.col("weight").cast(pl.Float64),
    )


def _split_rows(listens: pl.DataFrame, splits: pl.DataFrame, split: str) -> pl.DataFrame:
    valid = sorted(splits["split"].unique().drop_nulls().to_list())
    if split not in valid:
        msg = f"unknown split {split!r}; valid: {', '.join(valid)}"
        raise ImporterError(msg)
    chosen = splits.filter(pl.col("split") == split).select(_PAIR)
    return listens.join(chosen, on=list(_PAIR), how="semi")


def _read_split(data_dir: Path, split_file: Path) -> pl.DataFrame:
    path = Path(split_file)
    if not path.exists() and not path.is_absolute():
        path = data_dir / path
    splits = _read_path(path)
    missing = [c for c in (*_PAIR, "split") if c not in splits.columns]
    if missing:
        msg = f"{path}: missing column(s) {missing}; a split file has userID, artistID, split"
        raise ImporterError(msg)
    return splits


def _read(data_dir: Path, name: str) -> pl.DataFrame:
    return _read_path(data_dir / name)


def _read_path(path: Path) -> pl.DataFrame:
    if not path.is_file():
        msg = f"LastFM file not found: {path}"
        raise ImporterError(msg)
    return pl.read_parquet(path)
