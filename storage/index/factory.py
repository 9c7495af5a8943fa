"""Open a :class:`~storage.index.base.VectorIndex` from a URL."""

from __future__ import annotations

import logging
from pathlib import Path

from storage.errors import IndexHeldError, IndexUnavailableError
from storage.index.base import VectorIndex

logger = logging.getLogger(__name__)

EDGE_SCHEME = "qdrant-edge://"
LOCAL_SCHEME = "qdrant-local://"
MEMORY_URL = ":memory:"
VALID_SCHEMES = (EDGE_SCHEME, LOCAL_SCHEME, MEMORY_URL, "http://", "https://")


def _path_of(url: str, scheme: str) -> str:
    """Return the path after ``scheme``: ``///abs/path`` is absolute, ``//rel/path`` relative."""
    path = url[len(scheme) :]
    if not path:
        msg = f"index URL {url!r} has no path; e.g. {scheme}/abs/path or {scheme}relative/path"
        raise IndexUnavailableError(msg)
    return path


def open_index(
    url: str,
    *,
    collection: str = "clips",
    api_key: str | None = None,
    copy_when_held: bool = False,
    copy_wait_s: float = 60.0,
) -> VectorIndex:
    """Open the vector index a URL names (the collection is created by ``ensure``).

    Parameters
    ----------
    url
        ``qdrant-edge:///abs/dir`` or ``qdrant-edge://rel/dir``: a Qdrant Edge shard in
        ``<dir>/<collection>`` (the embedded default).
        ``qdrant-local:///abs/dir``, ``qdrant-local://rel/dir`` or ``:memory:``:
        qdrant-client's local mode (pure Python, brute force; for tests and small data).
        ``http(s)://host:6333``: a Qdrant server or cluster.
    collection
        Collection name (for Qdrant Edge, the shard's sub-folder).
    api_key
        API key for a Qdrant server (ignored by the embedded backends).
    copy_when_held
        For Qdrant Edge: when another process holds the shard, open a copy of it for this
        process instead of failing (several serving workers; see
        :mod:`storage.index.edge_copies`). Copies left by dead processes are removed first.
    copy_wait_s
        How long a copy waits for the holder to pause its writes.

    Returns
    -------
    VectorIndex
        The opened index.

    Raises
    ------
    IndexUnavailableError
        For an unknown scheme (the message lists the valid ones) or an index that cannot be
        opened.
    """
    if url.startswith(EDGE_SCHEME):
        from storage.index.edge import EdgeVectorIndex
        from storage.index.edge_copies import remove_stale_copies, worker_copy_path

        shard = Path(_path_of(url, EDGE_SCHEME)) / collection
        remove_stale_copies(shard)
        try:
            return EdgeVectorIndex(shard, url=url)
        except IndexHeldError:
            if not copy_when_held:
                raise
        copy = worker_copy_path(shard)
        index = EdgeVectorIndex(copy, url=url, copy_of=shard, copy_wait_s=copy_wait_s)
        logger.info(
            "vector index %s is held by another process; serving from copy %s (%s)",
            url,
            copy.name,
            "copied" if index.copied else "empty, to be filled from the store",
        )
        return index

    if url == MEMORY_URL or url.startswith(LOCAL_SCHEME):
        from qdrant_client import QdrantClient

        from storage.index.qdrant import QdrantClientIndex

        path = MEMORY_URL if url == MEMORY_URL else _path_of(url, LOCAL_SCHEME)
        try:
            if path == MEMORY_URL:
                client = QdrantClient(location=MEMORY_URL, force_disable_check_same_thread=True)
            else:
                client = QdrantClient(path=path, force_disable_check_same_thread=True)
        except Exception as exc:  # e.g. the folder is held by another client instance
            msg = f"cannot open qdrant-client local storage {url!r}: {exc}"
            raise IndexUnavailableError(msg) from exc
        return QdrantClientIndex(client, collection=collection, url=url, local_mode=True)

    if url.startswith(("http://", "https://")):
        from qdrant_client import QdrantClient

        from storage.index.qdrant import QdrantClientIndex

        try:
            # No version check here: it would be a blocking request at open; ensure() reaches
            # the server first and reports it unreachable.
            client = QdrantClient(url=url, api_key=api_key, check_compatibility=False)
        except Exception as exc:
            msg = f"cannot open Qdrant client for {url!r}: {exc}"
            raise IndexUnavailableError(msg) from exc
        return QdrantClientIndex(client, collection=collection, url=url)

    msg = f"unknown vector index URL {url!r}; valid schemes: {', '.join(VALID_SCHEMES)}"
    raise IndexUnavailableError(msg)
