"""Tests for the importers: generic Parquet/CSV files, LastFM hetrec-2k and MicroLens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.importers import (
    LASTFM_AUTHOR_OFFSET,
    ImporterError,
    artist_clips,
    import_frame,
    import_lastfm,
    import_microlens,
    import_table,
    load_lastfm_split,
    load_microlens_categories,
    parse_hashtags,
)
from storage.store import Store

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
LASTFM_DIR = SHARED_DATA / "lastfm_hetrec2k"
MICROLENS_DIR = SHARED_DATA / "microlens"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.duckdb")
    yield s
    s.close()


def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    cur = store.cursor()
    try:
        return cur.execute(sql).fetchall()
    finally:
        cur.close()


def frame(store: Store, sql: str) -> pl.DataFrame:
    cur = store.cursor()
    try:
        result = cur.execute(sql)
        names = [d[0] for d in result.description or []]
        return pl.DataFrame(result.fetchall(), schema=names, orient="row")
    finally:
        cur.close()


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


EVENTS_CSV = """
user_id,event_type,ts,item_id,watch_frac,session_id
1,view,2024-01-01T00:00:00Z,10,0.5,
2,like,2024-01-02 10:00:00,11,,s1
3,share,2024-01-03T08:00:00+02:00,12,,
"""


# -- generic ---------------------------------------------------------------------------------------
def test_parquet_clips_round_trip_into_the_store(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "clips.parquet"
    pl.DataFrame(
        {
            "item_id": pl.Series([1, 2], dtype=pl.Int32),
            "author_id": [7, 8],
            "caption": ["cats on skis", "a quiet lake"],
            "topics": [["cats", "ski"], []],
            "cameo_user_ids": [[3], None],
            "prior_views": [100, None],
        }
    ).write_parquet(path)

    report = import_table(store, "clips", path)

    assert (report.kind, report.rows_read, report.rows_inserted) == ("clips", 2, 2)
    got = rows(
        store,
        "SELECT item_id, author_id, caption, topics, cameo_user_ids, prior_views, duration_s,"
        " safety_label FROM clips ORDER BY item_id",
    )
    assert got == [
        (1, 7, "cats on skis", ["cats", "ski"], [3], 100, 15.0, "safe"),
        (2, 8, "a quiet lake", [], [], 0, 15.0, "safe"),
    ]


def test_csv_list_columns_are_pipe_separated_and_defaults_fill_empty_cells(
    store: Store, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "clips.csv",
        """
item_id,author_id,caption,topics,hashtags,cameo_user_ids,is_generated,created_at
1,5,hello,cats|dogs,,3|4,true,2024-05-01T12:00:00
2,5,bye,,#x,,,
""",
    )

    report = import_table(store, "clips", path)

    assert report.rows_inserted == 2
    got = rows(
        store,
        "SELECT item_id, topics, hashtags, cameo_user_ids, is_generated, created_at"
        " FROM clips ORDER BY item_id",
    )
    assert got[0] == (1, ["cats", "dogs"], [], [3, 4], True, datetime(2024, 5, 1, 12))
    assert got[1][:5] == (2, [], ["#x"], [], False)
    assert got[1][5] is not None


def test_users_and_follows_import_from_csv(store: Store, tmp_path: Path) -> None:
    users = write_csv(tmp_path / "users.csv", "user_id,is_teen,age_band\n1,false,\n2,yes,13-17")
    follows = write_csv(tmp_path / "follows.csv", "follower_id,followee_id\n1,2\n2,1\n1,2")

    assert import_table(store, "users", users).rows_inserted == 2
    assert import_table(store, "follows", follows).rows_inserted == 2
    assert rows(store, "SELECT user_id, is_teen, age_band FROM users ORDER BY user_id") == [
        (1, False, "25-34"),
        (2, True, "13-17"),
    ]


def test_missing_required_column_is_named(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "clips.parquet"
    pl.DataFrame({"item_id": [1], "caption": ["x"]}).write_parquet(path)

    with pytest.raises(ImporterError, match=r"missing required column\(s\) \['author_id'\]"):
        import_table(store, "clips", path)


def test_unknown_column_lists_the_valid_ones(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "users.csv", "user_id,nickname\n1,bob")

    with pytest.raises(ImporterError, match=r"\['nickname'\].*valid: user_id, age_band"):
        import_table(store, "users", path)


def test_unknown_event_type_names_the_value_and_row_count_and_writes_nothing(
    store: Store, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "events.csv",
        "user_id,event_type,ts\n1,view,2024-01-01\n1,clik,2024-01-01\n2,clik,2024-01-02",
    )

    with pytest.raises(ImporterError, match=r"unknown event_type 'clik' \(2 rows\); valid: "):
        import_table(store, "events", path)
    assert store.count("events") == 0


def test_unreadable_value_names_column_and_first_value(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "follows.csv", "follower_id,followee_id\n1,2\nabc,3")

    with pytest.raises(ImporterError, match=r"'follower_id': 1 value\(s\).*'abc'"):
        import_table(store, "follows", path)


def test_clip_ids_repeated_within_a_file_are_rejected(store: Store) -> None:
    df = pl.DataFrame({"item_id": [1, 1], "author_id": [1, 2], "caption": ["a", "b"]})

    with pytest.raises(ImporterError, match="repeat an id"):
        import_frame(store, "clips", df)


def test_reimporting_events_without_ids_inserts_nothing(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "events.csv", EVENTS_CSV)

    first = import_table(store, "events", path, progress=True, batch_rows=2)
    again = import_table(store, "events", path)

    assert (first.rows_read, first.rows_inserted) == (3, 3)
    assert (again.rows_read, again.rows_inserted) == (3, 0)
    assert store.count("events") == 3
    ts = rows(store, "SELECT user_id, ts FROM events ORDER BY user_id")
    assert ts[0][1] == datetime(2024, 1, 1)
    assert ts[2][1] == datetime(2024, 1, 3, 6)  # +02:00 converted to UTC


def test_same_events_from_parquet_get_the_same_generated_ids(store: Store, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "events.csv", EVENTS_CSV)
    import_table(store, "events", csv_path)
    parquet_path = tmp_path / "events.parquet"
    pl.read_csv(csv_path, infer_schema=False).drop("session_id").with_columns(
        session_id=pl.Series([None, "s1", None], dtype=pl.String),
        user_id=pl.col("user_id").cast(pl.Int32),
    ).write_parquet(parquet_path)

    assert import_table(store, "events", parquet_path).rows_inserted == 0


def test_unknown_file_type_is_an_error(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "users.json", "{}")

    with pytest.raises(ImporterError, match=r"unknown file type '.json'"):
        import_table(store, "users", path)


# -- adapters on tiny inputs -----------------------------------------------------------------------
def test_artist_captions_use_tags_of_imported_pairs_only() -> None:
    artists = pl.DataFrame({"id": [1, 2], "name": ["Alpha", "Beta "]})
    tags = pl.DataFrame({"tagID": [1, 2, 3], "tagValue": ["Rock", "leaked", "pop"]})
    tagged = pl.DataFrame(
        {"userID": [10, 11, 10, 12], "artistID": [1, 1, 1, 2], "tagID": [1, 1, 3, 2]}
    )
    train = pl.DataFrame({"userID": [10, 11], "artistID": [1, 1]})  # (12, 2) is a test pair

    clips = artist_clips(artists, tagged, tags, train)

    assert clips.rows() == [
        (1, LASTFM_AUTHOR_OFFSET + 1, "Alpha: rock, pop", ["rock", "pop"]),
        (2, LASTFM_AUTHOR_OFFSET + 2, "Beta", []),
    ]


def test_hashtags_are_parsed_from_hash_segments() -> None:
    titles = pl.DataFrame(
        {
            "t": [
                "leader # summer attack # Cartoon recommendation!",
                "no tags here",
                "# 7 # this segment is far too long to be a real hashtag at all #game #Game",
            ]
        }
    )

    got = titles.select(parse_hashtags(pl.col("t")))["hashtags"].to_list()

    assert got == [["summer attack", "cartoon recommendation"], [], ["game"]]


# -- shared data -----------------------------------------------------------------------------------
needs_lastfm = pytest.mark.skipif(not LASTFM_DIR.is_dir(), reason="../shared/data is absent")
needs_microlens = pytest.mark.skipif(not MICROLENS_DIR.is_dir(), reason="../shared/data is absent")


@pytest.fixture
def lastfm_subset(tmp_path: Path) -> Path:
    """The hetrec files cut to the first 40 users (and their friends among them)."""
    out = tmp_path / "lastfm"
    out.mkdir()
    listens = pl.read_parquet(LASTFM_DIR / "user_artists.parquet")
    users = listens["userID"].unique().sort().head(40).implode()
    listens = listens.filter(pl.col("userID").is_in(users))
    listens.write_parquet(out / "user_artists.parquet")
    pl.read_parquet(LASTFM_DIR / "user_friends.parquet").filter(
        pl.col("userID").is_in(users) & pl.col("friendID").is_in(users)
    ).write_parquet(out / "user_friends.parquet")
    pl.read_parquet(LASTFM_DIR / "artists.parquet").filter(
        pl.col("id").is_in(listens["artistID"].implode())
    ).write_parquet(out / "artists.parquet")
    pl.read_parquet(LASTFM_DIR / "tags.parquet").write_parquet(out / "tags.parquet")
    pl.read_parquet(LASTFM_DIR / "user_taggedartists.parquet").filter(
        pl.col("userID").is_in(users)
    ).write_parquet(out / "user_taggedartists.parquet")
    pl.read_parquet(LASTFM_DIR / "split_seed0.parquet").filter(
        pl.col("userID").is_in(users)
    ).write_parquet(out / "split_seed0.parquet")
    return out


@pytest.mark.shared
@needs_lastfm
def test_lastfm_train_import_never_holds_a_test_pair(store: Store, lastfm_subset: Path) -> None:
    counts = import_lastfm(store, lastfm_subset, split_file=Path("split_seed0.parquet"))
    train, test = load_lastfm_split(lastfm_subset, Path("split_seed0.parquet"))

    events = frame(store, "SELECT user_id, item_id, weight, event_type, event_id FROM events")
    assert counts["events"] == events.height == train.height > 0
    assert events.join(test, on=["user_id", "item_id"], how="semi").height == 0
    assert set(events["event_type"]) == {"view"}
    assert events.sort("user_id", "item_id")["weight"].to_list() == train["weight"].to_list()
    # Every caption tag was given by some user to that artist on a train pair.
    tagged = (
        pl.read_parquet(lastfm_subset / "user_taggedartists.parquet")
        .join(pl.read_parquet(lastfm_subset / "tags.parquet"), on="tagID")
        .select(user_id="userID", item_id="artistID", tag=pl.col("tagValue").str.to_lowercase())
        .join(train, on=["user_id", "item_id"], how="semi")
    )
    clip_tags = frame(store, "SELECT item_id, hashtags FROM clips").explode("hashtags")
    clip_tags = clip_tags.drop_nulls("hashtags").rename({"hashtags": "tag"})
    assert clip_tags.height > 0
    assert clip_tags.join(tagged, on=["item_id", "tag"], how="anti").height == 0
    # Importing again changes nothing.
    again = import_lastfm(store, lastfm_subset, split_file=Path("split_seed0.parquet"))
    assert (again["events"], again["follows"]) == (0, 0)


@pytest.mark.shared
@needs_lastfm
def test_lastfm_friendships_become_mutual_follows(store: Store, lastfm_subset: Path) -> None:
    import_lastfm(store, lastfm_subset)

    follows = frame(store, "SELECT follower_id, followee_id FROM follows")
    reverse = follows.select(follower_id="followee_id", followee_id="follower_id")
    assert follows.height > 0
    assert follows.join(reverse, on=["follower_id", "followee_id"], how="anti").height == 0


@pytest.mark.shared
@needs_lastfm
def test_lastfm_split_frames_are_disjoint_and_complete(lastfm_subset: Path) -> None:
    train, test = load_lastfm_split(lastfm_subset, lastfm_subset / "split_seed0.parquet")

    listens = pl.read_parquet(lastfm_subset / "user_artists.parquet")
    assert train.columns == ["user_id", "item_id", "weight"]
    assert train.height + test.height == listens.height
    assert train.join(test, on=["user_id", "item_id"], how="semi").height == 0


@pytest.mark.shared
@needs_lastfm
def test_lastfm_unknown_split_lists_the_valid_ones(store: Store, lastfm_subset: Path) -> None:
    with pytest.raises(ImporterError, match="unknown split 'dev'; valid: test, train"):
        import_lastfm(store, lastfm_subset, split_file=Path("split_seed0.parquet"), split="dev")


@pytest.mark.shared
@needs_microlens
def test_microlens_clips_never_carry_the_category(store: Store) -> None:
    inserted = import_microlens(store, MICROLENS_DIR, limit=200)

    clips = frame(store, "SELECT * FROM clips ORDER BY item_id")
    assert inserted == clips.height == 200
    assert "category" not in clips.columns
    assert clips["topics"].list.len().sum() == 0
    assert (clips["author_id"] - clips["item_id"] == 2_000_000_000).all()
    assert (clips["prior_views"] > 0).all()
    assert clips.filter(pl.col("caption") != "").height > 190
    assert clips["hashtags"].list.len().sum() > 0

    categories = load_microlens_categories(MICROLENS_DIR)
    assert categories.columns == ["item_id", "category"]
    assert categories["item_id"].is_unique().all()


@pytest.mark.shared
@needs_microlens
@needs_lastfm
def test_microlens_refuses_to_overwrite_lastfm_clips(store: Store, lastfm_subset: Path) -> None:
    import_lastfm(store, lastfm_subset)

    with pytest.raises(ImporterError, match="separate store"):
        import_microlens(store, MICROLENS_DIR, limit=50)


def test_clip_cities_are_normalised_and_coordinates_refused(store: Store, tmp_path: Path) -> None:
    good = write_csv(
        tmp_path / "clips.csv", "item_id,author_id,caption,city\n1,5,a, São  Paulo \n2,5,b,\n"
    )
    assert import_table(store, "clips", good).rows_inserted == 2
    assert rows(store, "SELECT item_id, city FROM clips ORDER BY item_id") == [
        (1, "são paulo"),
        (2, None),
    ]
    bad = write_csv(
        tmp_path / "bad.csv", 'item_id,author_id,caption,city\n3,5,c,lisbon\n4,5,d,"38.7,-9.1"\n'
    )
    with pytest.raises(ImporterError, match=r"1 clip city value\(s\).*row 1.*coordinates"):
        import_table(store, "clips", bad)
    assert store.count("clips") == 2  # nothing of the bad file was written
