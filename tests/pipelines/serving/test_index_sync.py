"""A worker's own copy of the vector index follows the store: what another worker adds, erases
or re-fits reaches it at the next sync."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.serving.engine import clip_payloads
from pipelines.serving.index_reconciler import IndexReconciler
from ranking.retrieval.user_vectors import put_user_vectors
from storage.factory import open_store
from storage.index.base import VectorIndex, VectorSpec
from storage.index.edge import EdgeVectorIndex
from storage.index.factory import open_index
from storage.store import Store

SPACES = {"caption": VectorSpec(8, "cosine"), "collab": VectorSpec(4, "dot")}
ERASED_AUTHOR = 987_123_457  # distinctive bytes to look for in the copy's files


def _add_clips(store: Store, ids: list[int], *, author: int = 5, seed: int = 0) -> np.ndarray:
    store.add_clips(
        pl.DataFrame(
            {"item_id": ids, "author_id": [author] * len(ids), "caption": ["c"] * len(ids)}
        )
    )
    vecs = np.random.default_rng(seed).standard_normal((len(ids), 8)).astype(np.float32)
    store.put_vectors("caption", np.asarray(ids), vecs)
    return vecs


def _reconciler(store: Store, index: VectorIndex) -> IndexReconciler:
    return IndexReconciler(
        store,
        index,
        dict(SPACES),
        payloads=clip_payloads,
        ensure=lambda ix: ix.ensure({"caption": SPACES["caption"]}, integer_fields=("author_id",)),
        sync_every_s=5.0,
    )


def _bytes_of(root: Path, value: int) -> int:
    needles = (str(value).encode(), struct.pack("<q", value))
    return sum(p.read_bytes().count(n) for p in root.rglob("*") if p.is_file() for n in needles)


def test_what_another_worker_adds_erases_or_refits_reaches_a_copy(tmp_path: Path) -> None:
    store = open_store(f"duckdb://{(tmp_path / 'db.duckdb').as_posix()}")
    _add_clips(store, list(range(1, 31)))
    url = f"qdrant-edge://{(tmp_path / 'vectors').as_posix()}"
    owner = open_index(url)
    owner_sync = _reconciler(store, owner)
    owner_sync.ensure(owner)
    owner_sync.run(reason="start")  # the owner builds the shard from the store
    copy = open_index(url, copy_when_held=True)
    assert isinstance(copy, EdgeVectorIndex) and copy.copied
    copy_sync = _reconciler(store, copy)
    copy_sync.ensure(copy)
    copy_sync.run(reason="start")
    assert copy_sync.sync() is None  # nothing changed since

    # Worker A (the owner) adds clips: in the store and its own index only.
    new = _add_clips(store, [31, 32], author=ERASED_AUTHOR, seed=3)
    owner.upsert(np.array([31, 32]), {"caption": new}, [{"author_id": ERASED_AUTHOR}] * 2)
    assert copy.count() == 30
    report = copy_sync.sync()
    assert report is not None and report["restored"] == {"caption": 2}
    assert copy.count() == 32
    assert copy.search("caption", new[0], limit=1)[0][0] == 31
    assert copy_sync.state()["state"] == "ok"  # routine work, never reported as degraded

    # Worker A erases them: the store and its index; the copy drops them and purges its files.
    with store.write() as cur:
        cur.execute("DELETE FROM clip_vectors WHERE item_id IN (31, 32)")
        cur.execute("DELETE FROM clips WHERE item_id IN (31, 32)")
    owner.delete(np.array([31, 32]))
    owner.purge()
    assert _bytes_of(copy.path, ERASED_AUTHOR) > 0
    report = copy_sync.sync()
    assert report is not None and report["removed"] == 2
    assert copy.count() == 30 and copy.get_vectors("caption", np.array([31, 32])) == {}
    assert _bytes_of(copy.path, ERASED_AUTHOR) == 0  # no trace left in the copy's files

    # The collab job re-fits through worker A: new clip vectors, then the model version.
    ids = np.arange(1, 31)
    for version, seed in (("collab-1", 1), ("collab-2", 2)):
        collab = np.random.default_rng(seed).standard_normal((30, 4)).astype(np.float32)
        store.put_vectors("collab", ids, collab)
        owner.ensure({"collab": SPACES["collab"]})
        owner.upsert(ids, {"collab": collab})
        put_user_vectors(store, "collab", np.array([1]), collab[:1], model_version=version)
        assert copy_sync.sync() is not None
        got = copy.get_vectors("collab", ids)
        assert np.allclose(np.stack([got[i] for i in ids.tolist()]), collab)
    assert copy_sync.last_report is not None
    assert copy_sync.last_report["refreshed"] == {"collab": 30}  # re-fitted vectors rewritten
    assert copy.get_vectors("caption", np.array([1])) != {}  # caption vectors kept
    assert owner_sync.sync() is not None  # the owner follows the store the same way
    assert owner_sync.last_report is not None and owner_sync.last_report["refreshed"] == {
        "collab": 0
    }  # its vectors already matched: nothing rewritten

    copy.close()
    owner.close()
    store.close()
    assert not list((tmp_path / "vectors").glob("clips.worker-*"))
