"""Typed storage settings (env prefix ``STEERFEED_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class StorageSettings(BaseSettings):
    """Where the stores live.

    ``db_url`` and ``index_url`` default to files under ``data_dir``:
    ``duckdb:///<data_dir>/steerfeed.duckdb`` and ``qdrant-edge:///<data_dir>/vectors``.
    ``db_url`` (``STEERFEED_DB_URL``) may be a path, ``duckdb://<file>`` or
    ``postgresql://user@host:port/db`` (a PostgreSQL server; see docs/deploying.md).
    ``index_url`` may also be ``http(s)://host:6333`` (a Qdrant server or cluster) or
    ``qdrant-local:///path`` (qdrant-client's embedded local mode). ``duckdb_memory_limit``
    bounds DuckDB's buffer pool and operators (``STEERFEED_DUCKDB_MEMORY_LIMIT``; ``None``:
    DuckDB's default of 80% of RAM). ``pseudonym_key`` (``STEERFEED_PSEUDONYM_KEY``) is the
    secret behind erased users' pseudonyms; unset, a random key is kept in
    ``<data_dir>/pseudonym.key`` (outside the database). Set it from a secret manager in
    production so that a copy of the data folder does not carry it. ``secret_key``
    (``STEERFEED_SECRET_KEY``) is the secret that signs cursors and media links; unset, a
    random key is kept in ``<data_dir>/cursor.key``. Workers on several machines set the same
    ``secret_key`` and ``pseudonym_key`` (a cursor signed by one is read by another).

    ``event_writer_max_wait_s`` and ``event_writer_max_batch_rows`` bound the background
    writer of the engine's own events (impressions): a batch is committed when its oldest row
    has waited that long or it has that many rows, whichever comes first. A crash loses at most
    the rows of that window (``STEERFEED_EVENT_WRITER_MAX_WAIT_S``).

    ``index_sync_s`` (``STEERFEED_INDEX_SYNC_S``): with several workers over a shared store
    and an embedded index (each worker has its own shard or copy), how often each compares
    its index with the store and applies what other workers added, refreshed or deleted
    (docs/deploying.md, "Vectors for several workers").
    """

    model_config = SettingsConfigDict(env_prefix="STEERFEED_", extra="forbid")

    data_dir: Path = Field(default=Path("data"))
    db_url: str | None = None
    index_url: str | None = None
    qdrant_api_key: str | None = None
    pseudonym_key: SecretStr | None = Field(default=None, min_length=16)
    secret_key: SecretStr | None = Field(default=None, min_length=32)
    duckdb_memory_limit: str | None = Field(
        default="3GB", pattern=r"^\d+(\.\d+)?\s*([KMGT]i?B|B|%)$", max_length=16
    )
    event_writer_max_wait_s: float = Field(default=0.2, gt=0, le=5)
    event_writer_max_batch_rows: int = Field(default=20_000, ge=1, le=1_000_000)
    index_sync_s: float = Field(default=5.0, gt=0, le=3600)

    def resolved_db_url(self) -> str:
        """The store to open: ``db_url`` (a path, ``duckdb://<file>`` or
        ``postgresql://...``), else the DuckDB file under ``data_dir``."""
        return self.db_url or str(self.data_dir / "steerfeed.duckdb")

    def resolved_db_path(self) -> Path:
        """Return the DuckDB file path from ``db_url`` or ``data_dir`` (a
        :class:`ValueError` when ``db_url`` names a server)."""
        if self.db_url:
            prefix = "duckdb://"
            if self.db_url.startswith(prefix):
                return Path(self.db_url[len(prefix) :])
            if "://" in self.db_url:
                msg = (
                    f"db_url must be a path, duckdb://<file> or postgresql://..., "
                    f"got {self.db_url!r}"
                )
                raise ValueError(msg)
            return Path(self.db_url)
        return self.data_dir / "steerfeed.duckdb"

    def resolved_pseudonym_key(self) -> bytes:
        """The pseudonym secret: from the environment, else the key file under ``data_dir``."""
        from storage.keys import key_from_file

        if self.pseudonym_key is not None:
            return self.pseudonym_key.get_secret_value().encode()
        return key_from_file(self.data_dir / "pseudonym.key")

    def resolved_index_url(self) -> str:
        """Return the vector index URL (default: a Qdrant Edge shard under ``data_dir``)."""
        return self.index_url or f"qdrant-edge://{(self.data_dir / 'vectors').as_posix()}"
