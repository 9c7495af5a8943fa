"""Open the store named by a URL or a path: DuckDB (the embedded default) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from storage.postgres_store import PostgresStore
from storage.store import Store

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str | Path) -> bool:
    """Whether ``url`` names a PostgreSQL server."""
    return isinstance(url, str) and url.startswith(POSTGRES_SCHEMES)


def duckdb_path(url: str | Path) -> Path | str:
    """The DuckDB file of a path or ``duckdb://`` URL (``duckdb:///abs/file.duckdb``,
    ``duckdb://rel/file.duckdb``, ``:memory:``)."""
    if isinstance(url, Path):
        return url
    if url.startswith("duckdb://"):
        url = url[len("duckdb://") :]
    if url == ":memory:":
        return url
    if "://" in url:
        msg = f"unknown store URL {url!r}: use a path, duckdb://<file> or postgresql://..."
        raise ValueError(msg)
    return Path(url)


def open_store(
    url_or_path: str | Path,
    *,
    read_only: bool = False,
    memory_limit: str | None = None,
    max_connections: int = 16,
    origin: int | None = None,
) -> Store:
    """Open the store at ``url_or_path``.

    A path or ``duckdb://<file>`` opens the DuckDB :class:`~storage.store.Store` exactly as
    before (``memory_limit`` bounds DuckDB's buffer pool); ``postgresql://...`` opens a
    :class:`~storage.postgres_store.PostgresStore` (``max_connections``: its pool's size;
    ``origin``: the number its rows in the event log and the change feed carry).
    Either is migrated to the newest schema unless ``read_only``.
    """
    if is_postgres_url(url_or_path):
        return PostgresStore(
            str(url_or_path),
            read_only=read_only,
            max_connections=max_connections,
            origin=origin,
        )
    return Store(duckdb_path(url_or_path), read_only=read_only, memory_limit=memory_limit)
