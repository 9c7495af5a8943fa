"""Importers: files and public data sets into the DuckDB store.

- :func:`import_table` / :func:`import_frame`: clips, users, follows or events from Parquet, CSV
  or a polars frame, validated against the store's schema.
- :func:`import_lastfm` / :func:`load_lastfm_split`: LastFM hetrec-2k as users, artist clips,
  mutual follows and view events; the train/test listens for evaluation.
- :func:`import_microlens` / :func:`load_microlens_categories`: MicroLens titles as clips; the
  category labels, kept out of the store, for scoring steering.
"""

from __future__ import annotations

from pipelines.importers.errors import ImporterError
from pipelines.importers.generic import (
    IMPORT_KINDS,
    REQUIRED_COLUMNS,
    ImportKind,
    ImportReport,
    check_clip_authors,
    content_event_ids,
    import_frame,
    import_table,
    prepare_frame,
    read_table,
)
from pipelines.importers.lastfm import (
    LASTFM_AUTHOR_OFFSET,
    artist_clips,
    import_lastfm,
    load_lastfm_split,
)
from pipelines.importers.microlens import (
    MICROLENS_AUTHOR_OFFSET,
    import_microlens,
    load_microlens_categories,
    microlens_clips,
    parse_hashtags,
)

__all__ = [
    "IMPORT_KINDS",
    "LASTFM_AUTHOR_OFFSET",
    "MICROLENS_AUTHOR_OFFSET",
    "REQUIRED_COLUMNS",
    "ImportKind",
    "ImportReport",
    "ImporterError",
    "artist_clips",
    "check_clip_authors",
    "content_event_ids",
    "import_frame",
    "import_lastfm",
    "import_microlens",
    "import_table",
    "load_lastfm_split",
    "load_microlens_categories",
    "microlens_clips",
    "parse_hashtags",
    "prepare_frame",
    "read_table",
]
