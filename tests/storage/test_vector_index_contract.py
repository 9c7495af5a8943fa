"""One contract suite run against every vector index backend.

Backends: Qdrant Edge and qdrant-client local mode in ``tmp_path``; a Qdrant server when
``STEERFEED_TEST_QDRANT_URL`` is set (``STEERFEED_TEST_QDRANT_API_KEY`` optional), else skipped.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from storage.errors import IndexUnavailableError, UnknownEntityError
from storage.index import SearchFilter, VectorIndex, VectorSpec, open_index
from storage.index.edge import EdgeVectorIndex
from storage.index.qdrant import QdrantClientIndex

CAPTION = 384
COLLAB = 32
SPACES = {"caption": VectorSpec(CAPTION, "cosine"), "collab": VectorSpec(COLLAB, "dot")}
KEYWORD_FIELDS = ("topics", "safety_label")
INTEGER_FIELDS = ("maturity",)
SERVER_URL = os.environ.get("STEERFEED_TEST_QDRANT_URL")

Opener = Callable[[], VectorIndex]


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return np.asarray(x / np.linalg.norm(x, axis=1, keepdims=True))


@pytest.fixture(
    params=[
        "edge",
        "qdrant-local",
        pytest.param(
            "http",
            marks=pytest.mark.skipif(
                not SERVER_URL, reason="set STEERFEED_TEST_QDRANT_URL to test a Qdrant server"
            ),
        ),
    ]
)
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function that opens the backend's index (again) at the same place."""
    opened: list[VectorIndex] = []
    if request.param == "edge":
        url = f"qdrant-edge://{tmp_path.as_posix()}/vectors"  # qdrant-edge:///abs/path
        collection = "clips"
    elif request.param == "qdrant-local":
        url = f"qdrant-local://{tmp_path.as_posix()}/local"
        collection = "clips"
    else:
        assert SERVER_URL is not None
        url = SERVER_URL
        collection = f"steerfeed_test_{uuid.uuid4().hex[:12]}"
    api_key = os.environ.get("STEERFEED_TEST_QDRANT_API_KEY")

    def _open() -> VectorIndex:
        index = open_index(url, collection=collection, api_key=api_key)
        opened.append(index)
        return index

    yield _open
    for index in opened:
        index.close()
    if request.param == "http":
        from qdrant_client import QdrantClient

        client = QdrantClient(url=url, api_key=api_key)
        client.delete_collection(collection)
        client.close()


@pytest.fixture
def index(opener: Opener) -> VectorIndex:
    """An ensured, empty index with the ``caption`` and ``collab`` spaces."""
    idx = opener()
    idx.ensure(SPACES, keyword_fields=KEYWORD_FIELDS, integer_fields=INTEGER_FIELDS)
    return idx


def _fill(index: VectorIndex, n: int = 12, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Upsert ``n`` clips (ids 100..) with both spaces and small payloads."""
    rng = np.random.default_rng(seed)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    vectors = {"caption": _unit(rng, n, CAPTION), "collab": _unit(rng, n, COLLAB)}
    payloads = [
        {
            "topics": [["cats", "dogs"], ["cats"], ["news"]][i % 3],
            "safety_label": "violative" if i % 4 == 3 else "ok",
            "maturity": i % 3,
        }
        for i in range(n)
    ]
    index.upsert(ids, vectors, payloads)
    return {"ids": ids, **vectors}


class TestVectorIndexContract:
    """What every :class:`VectorIndex` backend guarantees."""

    def test_open_index_returns_a_vector_index(self, index: VectorIndex) -> None:
        assert isinstance(index, VectorIndex)
        assert isinstance(index, EdgeVectorIndex | QdrantClientIndex)

    def test_ensure_is_idempotent_and_reports_spaces(self, index: VectorIndex) -> None:
        _fill(index)
        index.ensure(SPACES, keyword_fields=KEYWORD_FIELDS, integer_fields=INTEGER_FIELDS)
        assert index.spaces() == SPACES
        assert index.count() == 12

    def test_ensure_adds_a_new_space_and_rejects_a_changed_one(self, index: VectorIndex) -> None:
        _fill(index, 3)
        index.ensure({**SPACES, "mood": VectorSpec(8, "cosine")})
        assert index.spaces()["mood"] == VectorSpec(8, "cosine")
        assert index.count() == 3
        with pytest.raises(IndexUnavailableError, match="caption"):
            index.ensure({"caption": VectorSpec(CAPTION + 1, "cosine")})

    def test_empty_index_search_returns_empty_list(self, index: VectorIndex) -> None:
        assert index.count() == 0
        assert index.search("caption", np.ones(CAPTION, dtype=np.float32), limit=10) == []

    def test_search_is_best_first_and_limit_above_count_returns_all(
        self, index: VectorIndex
    ) -> None:
        data = _fill(index)
        hits = index.search("caption", data["caption"][4], limit=1000)
        assert len(hits) == 12
        assert hits[0][0] == 104
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        scores = [s for _, s in hits]
        assert scores == sorted(scores, reverse=True)
        assert all(isinstance(i, int) and isinstance(s, float) for i, s in hits)
        assert len(index.search("caption", data["caption"][4], limit=3)) == 3

    def test_dot_space_scores_are_inner_products(self, index: VectorIndex) -> None:
        data = _fill(index)
        query = data["collab"][0] * 2.0
        hits = dict(index.search("collab", query, limit=12))
        expected = data["collab"] @ query
        for pid, score in hits.items():
            assert score == pytest.approx(float(expected[pid - 100]), abs=1e-4)

    def test_reopen_after_close_keeps_points_and_spaces(
        self, opener: Opener, index: VectorIndex
    ) -> None:
        data = _fill(index)
        index.close()
        again = opener()
        assert again.spaces() == SPACES
        again.ensure(SPACES, keyword_fields=KEYWORD_FIELDS, integer_fields=INTEGER_FIELDS)
        assert again.count() == 12
        assert again.search("caption", data["caption"][0], limit=1)[0][0] == 100

    def test_upserting_one_space_keeps_the_other_and_the_payload(self, index: VectorIndex) -> None:
        data = _fill(index, 3)
        rng = np.random.default_rng(7)
        new_collab = _unit(rng, 1, COLLAB)
        index.upsert(np.array([101]), {"collab": new_collab})
        caption = index.get_vectors("caption", np.array([101]))[101]
        np.testing.assert_allclose(caption, data["caption"][1], atol=1e-5)
        np.testing.assert_allclose(
            index.get_vectors("collab", np.array([101]))[101], new_collab[0], atol=1e-6
        )
        flt = SearchFilter(any_of={"topics": ["cats"]}, max_values={"maturity": 1})
        assert 101 in dict(index.search("caption", caption, limit=3, flt=flt))

    def test_upsert_with_payloads_replaces_the_payload(self, index: VectorIndex) -> None:
        data = _fill(index, 3)
        index.upsert(np.array([100]), {"caption": data["caption"][:1]}, [{"topics": ["news"]}])
        cats = SearchFilter(any_of={"topics": ["cats"]})
        assert 100 not in dict(index.search("caption", data["caption"][0], limit=3, flt=cats))
        news = SearchFilter(any_of={"topics": ["news"]})
        assert 100 in dict(index.search("caption", data["caption"][0], limit=3, flt=news))
        assert 100 in index.get_vectors("collab", np.array([100]))

    def test_numpy_payload_values_are_accepted(self, index: VectorIndex) -> None:
        rng = np.random.default_rng(2)
        vec = _unit(rng, 1, CAPTION)
        payload = {"maturity": np.int64(0), "topics": np.array(["cats", "dogs"])}
        index.upsert(np.array([1], dtype=np.int64), {"caption": vec}, [payload])
        index.set_payload(np.array([1]), {"safety_label": np.str_("ok")})
        flt = SearchFilter(
            any_of={"topics": ["dogs"], "safety_label": ["ok"]}, max_values={"maturity": 0}
        )
        hits = index.search("caption", vec[0], limit=3, flt=flt)
        assert [i for i, _ in hits] == [1]

    def test_search_on_a_space_a_point_lacks_skips_it(self, index: VectorIndex) -> None:
        data = _fill(index, 4)
        rng = np.random.default_rng(3)
        index.upsert(np.array([7]), {"caption": _unit(rng, 1, CAPTION)}, [{"topics": ["cats"]}])
        assert index.count() == 5
        collab_ids = {i for i, _ in index.search("collab", data["collab"][0], limit=100)}
        assert collab_ids == {100, 101, 102, 103}
        assert 7 in {i for i, _ in index.search("caption", data["caption"][0], limit=100)}
        assert index.get_vectors("collab", np.array([7, 100])).keys() == {100}

    def test_any_of_matches_keyword_and_list_payloads(self, index: VectorIndex) -> None:
        data = _fill(index)
        flt = SearchFilter(any_of={"topics": ["dogs", "news"]})
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=100, flt=flt)}
        # topics cycle [cats, dogs], [cats], [news]: i % 3 in {0, 2}
        assert got == {100 + i for i in range(12) if i % 3 != 1}
        ok_only = SearchFilter(any_of={"safety_label": ["ok"], "topics": ["cats"]})
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=100, flt=ok_only)}
        assert got == {100 + i for i in range(12) if i % 4 != 3 and i % 3 != 2}
        empty = SearchFilter(any_of={"topics": []})
        assert index.search("caption", data["caption"][0], limit=100, flt=empty) == []

    def test_none_of_excludes_keyword_and_list_payloads(self, index: VectorIndex) -> None:
        data = _fill(index)
        flt = SearchFilter(none_of={"topics": ["dogs"], "safety_label": ["violative"]})
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=100, flt=flt)}
        assert got == {100 + i for i in range(12) if i % 3 != 0 and i % 4 != 3}

    def test_max_values_is_an_inclusive_upper_bound(self, index: VectorIndex) -> None:
        data = _fill(index)
        rng = np.random.default_rng(5)
        index.upsert(np.array([5]), {"caption": _unit(rng, 1, CAPTION)}, [{"topics": ["cats"]}])
        flt = SearchFilter(max_values={"maturity": 1})
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=100, flt=flt)}
        # maturity = i % 3; a point without the field (id 5) never passes a bound
        assert got == {100 + i for i in range(12) if i % 3 <= 1}

    def test_exclude_ids_are_never_returned(self, index: VectorIndex) -> None:
        data = _fill(index)
        flt = SearchFilter(exclude_ids=(100, 101, 999))
        got = [i for i, _ in index.search("caption", data["caption"][0], limit=100, flt=flt)]
        assert len(got) == 10
        assert not {100, 101} & set(got)

    def test_all_conditions_combine(self, index: VectorIndex) -> None:
        data = _fill(index)
        flt = SearchFilter(
            any_of={"topics": ["cats"]},
            none_of={"safety_label": ["violative"]},
            max_values={"maturity": 0},
            exclude_ids=(100,),
        )
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=100, flt=flt)}
        expected = {100 + i for i in range(12) if i % 3 == 0 and i % 4 != 3} - {100}
        assert got == expected

    def test_get_vectors_returns_existing_ids_only(self, index: VectorIndex) -> None:
        data = _fill(index, 3)
        got = index.get_vectors("collab", np.array([102, 100, 555]))
        assert got.keys() == {100, 102}
        np.testing.assert_allclose(got[102], data["collab"][2], atol=1e-6)
        assert got[102].dtype == np.float32
        assert index.get_vectors("collab", np.array([], dtype=np.int64)) == {}

    def test_point_ids_list_all_points_or_those_with_a_space(self, index: VectorIndex) -> None:
        assert index.point_ids().tolist() == []
        _fill(index, 3)
        rng = np.random.default_rng(5)
        index.upsert(np.array([7, 3]), {"caption": _unit(rng, 2, CAPTION)})  # no collab vector
        assert index.point_ids().tolist() == [3, 7, 100, 101, 102]
        assert index.point_ids("caption").tolist() == [3, 7, 100, 101, 102]
        assert index.point_ids("collab").tolist() == [100, 101, 102]
        assert index.point_ids("mood").tolist() == []  # a space the index lacks
        assert index.point_ids().dtype == np.int64
        assert index.problem() is None

    def test_delete_removes_points_and_ignores_missing_ids(self, index: VectorIndex) -> None:
        data = _fill(index)
        index.delete(np.array([100, 101, 4242]))
        assert index.count() == 10
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=100)}
        assert not {100, 101} & got
        assert index.get_vectors("caption", np.array([100])) == {}

    def test_set_payload_merges_and_skips_missing_ids(self, index: VectorIndex) -> None:
        data = _fill(index, 3)
        index.set_payload(np.array([100, 101, 9999]), {"safety_label": "violative"})
        assert index.count() == 3
        flt = SearchFilter(none_of={"safety_label": ["violative"]})
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=10, flt=flt)}
        assert got == {102}
        cats = SearchFilter(any_of={"topics": ["cats"]})  # other payload keys stay
        got = {i for i, _ in index.search("caption", data["caption"][0], limit=10, flt=cats)}
        assert got == {100, 101}

    def test_optimize_keeps_results(self, index: VectorIndex) -> None:
        data = _fill(index)
        before = index.search("caption", data["caption"][3], limit=5)
        index.optimize()
        assert index.count() == 12
        after = index.search("caption", data["caption"][3], limit=5)
        assert [i for i, _ in after] == [i for i, _ in before]

    def test_large_ids_round_trip_and_negative_ids_are_rejected(self, index: VectorIndex) -> None:
        rng = np.random.default_rng(11)
        big = np.iinfo(np.int64).max
        vec = _unit(rng, 1, CAPTION)
        index.upsert(np.array([big], dtype=np.int64), {"caption": vec})
        assert index.search("caption", vec[0], limit=1)[0][0] == big
        with pytest.raises(ValueError, match="non-negative"):
            index.upsert(np.array([-1]), {"caption": vec})

    def test_bad_space_and_shape_are_reported(self, index: VectorIndex) -> None:
        with pytest.raises(UnknownEntityError, match="caption"):
            index.search("nope", np.ones(4, dtype=np.float32), limit=3)
        with pytest.raises(ValueError, match="shape"):
            index.search("caption", np.ones(CAPTION - 1, dtype=np.float32), limit=3)
        with pytest.raises(ValueError, match="shape"):
            index.upsert(np.array([1, 2]), {"caption": np.ones((1, CAPTION), np.float32)})

    def test_concurrent_searches_while_a_writer_upserts(self, index: VectorIndex) -> None:
        data = _fill(index)
        errors: list[BaseException] = []
        query = data["caption"][0]

        def reader() -> None:
            try:
                for _ in range(30):
                    hits = index.search("caption", query, limit=5, flt=SearchFilter())
                    assert hits and hits[0][0] == 100
            except BaseException as exc:  # collected and re-raised in the test thread
                errors.append(exc)

        def writer() -> None:
            try:
                rng = np.random.default_rng(1)
                for k in range(10):
                    ids = np.arange(1000 + 5 * k, 1005 + 5 * k)
                    index.upsert(ids, {"collab": _unit(rng, 5, COLLAB)})
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert index.count() == 62


def test_unknown_scheme_lists_the_valid_ones() -> None:
    with pytest.raises(IndexUnavailableError, match=r"qdrant-edge://.*qdrant-local://.*http"):
        open_index("redis://localhost/0")


def test_edge_url_forms_resolve_to_a_folder_per_collection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = open_index(f"qdrant-edge://{tmp_path.as_posix()}/a", collection="c1")
    assert isinstance(absolute, EdgeVectorIndex)
    assert absolute.path == tmp_path / "a" / "c1"
    monkeypatch.chdir(tmp_path)
    relative = open_index("qdrant-edge://data/vectors")
    assert isinstance(relative, EdgeVectorIndex)
    assert relative.path == Path("data/vectors/clips")
    relative.ensure({"caption": VectorSpec(4)})
    assert (tmp_path / "data" / "vectors" / "clips").is_dir()
    relative.close()


def test_index_is_unavailable_before_ensure(tmp_path: Path) -> None:
    for url in (f"qdrant-edge://{tmp_path.as_posix()}/e", ":memory:"):
        index = open_index(url)
        assert index.spaces() == {}
        with pytest.raises(IndexUnavailableError):
            index.search("caption", np.ones(4, dtype=np.float32), limit=3)
        index.close()


def test_qdrant_local_folder_is_held_by_one_client(tmp_path: Path) -> None:
    first = open_index(f"qdrant-local://{tmp_path.as_posix()}/q")
    with pytest.raises(IndexUnavailableError, match="already accessed"):
        open_index(f"qdrant-local://{tmp_path.as_posix()}/q")
    first.close()


def test_edge_problem_reports_a_removed_folder_and_ensure_creates_it_again(
    tmp_path: Path,
) -> None:
    import shutil

    index = open_index(f"qdrant-edge://{tmp_path.as_posix()}/v")
    index.ensure({"caption": VectorSpec(4)})
    index.upsert(np.array([1, 2]), {"caption": np.eye(2, 4, dtype=np.float32)})
    assert index.problem() is None
    shutil.rmtree(tmp_path / "v")
    # the shard still answers from memory: only the folder tells
    assert index.count() == 2
    assert "gone" in (index.problem() or "")
    index.close()  # cannot flush into a removed folder; closes anyway
    index.ensure({"caption": VectorSpec(4)})
    assert index.problem() is None and index.count() == 0
    index.close()
    assert "not open" in (index.problem() or "")
