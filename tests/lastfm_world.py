"""A tiny LastFM-shaped data set written as the hetrec Parquet files (for tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl


def write_tiny_lastfm(folder: Path, *, users: int = 80, artists: int = 90, seed: int = 0) -> Path:
    """Write ``user_artists``, ``user_friends``, ``artists``, ``tags``, ``user_taggedartists``
    and ``split_seed0`` Parquet files: three taste groups, each listening mostly to its third
    of the artists, friends within a group, tags naming the group."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[int, int, int]] = []
    group = np.arange(users) % 3
    for u in range(users):
        own = [a for a in range(artists) if a % 3 == group[u]]
        other = [a for a in range(artists) if a % 3 != group[u]]
        picks = list(rng.choice(own, size=12, replace=False)) + list(
            rng.choice(other, size=2, replace=False)
        )
        rows += [(u + 1, int(a) + 1, int(rng.integers(1, 500))) for a in picks]
    ua = pl.DataFrame(rows, schema=["userID", "artistID", "weight"], orient="row")
    ua.write_parquet(folder / "user_artists.parquet")
    friends = [
        (u + 1, v + 1)
        for u in range(users)
        for v in range(users)
        if u != v and group[u] == group[v] and (u + v) % 7 == 0
    ]
    pl.DataFrame(friends, schema=["userID", "friendID"], orient="row").write_parquet(
        folder / "user_friends.parquet"
    )
    pl.DataFrame(
        {
            "id": np.arange(1, artists + 1),
            "name": [f"artist {a}" for a in range(1, artists + 1)],
            "url": [""] * artists,
            "pictureURL": [""] * artists,
        }
    ).write_parquet(folder / "artists.parquet")
    pl.DataFrame({"tagID": [1, 2, 3], "tagValue": ["rock", "jazz", "pop"]}).write_parquet(
        folder / "tags.parquet"
    )
    tagged = ua.select(
        "userID", "artistID", tagID=((pl.col("artistID") - 1) % 3 + 1).cast(pl.Int64)
    ).with_columns(day=pl.lit(1), month=pl.lit(1), year=pl.lit(2010))
    tagged.write_parquet(folder / "user_taggedartists.parquet")
    is_test = rng.random(ua.height) < 0.2
    ua.select("userID", "artistID").with_columns(
        split=pl.Series(np.where(is_test, "test", "train"))
    ).write_parquet(folder / "split_seed0.parquet")
    return folder
