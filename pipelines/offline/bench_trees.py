"""Compiled trees and the feed page's JSON, measured side by side (docs/benchmarks.md).

``python -m pipelines.offline.bench_trees --models DATA/models [--world DATA] --out R.json``
writes one JSON report:

- ``trees``: the serving model's ranker and every learned head scored on the same rows
  (``--rows``, drawn around each forest's split thresholds, 5% missing) by the LightGBM booster
  (``predict(raw_score=True, num_threads=1)``, as served before), by lleaves and by treelite
  (tl2cgen's compiled C library, one thread; and treelite's GTIL interpreter); per call p50/p99,
  compile time, and the largest difference from the booster. The calls are interleaved (each
  repetition calls every engine in turn) so the machine's load is shared. ``page`` times the
  scorer's real work on a page (the ranker on every row, every head on the top ``--heavy``)
  through the boosters and through the compiled forests. ``--synthetic`` adds a 300-tree,
  15-leaf, 60-feature forest (the issue's floor shape).
- ``json`` (with ``--world``, a data folder whose learned model serves): pages of 20 items with
  learned explanations, serialised the way FastAPI's default path does for a ``response_model``
  (validate on a worker thread, then pydantic's JSON) and by :class:`OrjsonResponse`, on the
  same pages in the same event loop; and the whole ``GET /v1/feed`` through the TestClient.
- ``engine`` (with ``--world`` and ``--engine-pages N``): the engine's ``s.learned_value`` stage
  and whole page, boosters vs compiled forests, alternating page by page on one engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from ranking.learned.compiled_trees import compile_forest, probe_rows
from ranking.learned.registry import ModelRegistry
from ranking.scorers.lightgbm_scorer import light_then_heavy


def _pcts(ts: list[float]) -> dict[str, float]:
    a = np.asarray(ts) * 1e3
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 4),
        "p99_ms": round(float(np.percentile(a, 99)), 4),
    }


def _interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, dict[str, float]]:
    """Time each function ``reps`` times, every function once per round in a rotating order."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for _ in range(5):  # warm-up
        for f in fns.values():
            f()
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
    return {k: _pcts(v) for k, v in times.items()}


def _treelite(booster: lgb.Booster, libpath: Path) -> tuple[Any, Any, float]:
    import tl2cgen
    import treelite

    t0 = time.perf_counter()
    tl_model = treelite.frontend.from_lightgbm(booster)
    tl2cgen.export_lib(
        tl_model, toolchain="gcc", libpath=str(libpath), params={"parallel_comp": 2}, nthread=1
    )
    compile_s = time.perf_counter() - t0
    return tl_model, tl2cgen.Predictor(str(libpath), nthread=1), compile_s


def bench_forest(booster: lgb.Booster, x: np.ndarray, reps: int, work: Path) -> dict[str, Any]:
    """One forest: booster vs lleaves vs treelite on ``x``."""
    import tl2cgen
    import treelite

    out: dict[str, Any] = {"trees": booster.num_trees(), "features": booster.num_feature()}
    want = booster.predict(x, raw_score=True, num_threads=1)
    cache = Path(tempfile.mkdtemp(dir=work))
    t0 = time.perf_counter()
    forest = compile_forest(booster, cache)
    out["lleaves_compile_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    forest = compile_forest(booster, cache)  # from the cache, as on a restart
    out["lleaves_cached_load_s"] = round(time.perf_counter() - t0, 3)
    tl_model, predictor, tl_s = _treelite(booster, cache / "tl.so")
    out["treelite_compile_s"] = round(tl_s, 3)

    def tl_predict() -> np.ndarray:
        dm = tl2cgen.DMatrix(x, dtype="float64")
        return np.asarray(predictor.predict(dm, pred_margin=True)).reshape(-1)

    def gtil() -> np.ndarray:
        return np.asarray(treelite.gtil.predict(tl_model, x, pred_margin=True, nthread=1)).reshape(
            -1
        )

    out["max_abs_diff"] = {
        "lleaves": float(np.max(np.abs(forest.predict_raw(x) - want))),
        "treelite": float(np.max(np.abs(tl_predict() - want))),
        "treelite_gtil": float(np.max(np.abs(gtil() - want))),
    }
    out["per_call"] = _interleaved(
        {
            "booster": lambda: booster.predict(x, raw_score=True, num_threads=1),
            "lleaves": lambda: forest.predict_raw(x),
            "treelite": tl_predict,
            "treelite_gtil": gtil,
        },
        reps,
    )
    return out


def _synthetic_forest(seed: int = 0) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.random((20_000, 60))
    y = x[:, :10].sum(axis=1) + rng.normal(0, 0.3, len(x))
    params = {
        "objective": "regression",
        "num_leaves": 15,
        "max_depth": 6,
        "verbosity": -1,
        "num_threads": 1,
    }
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=300)


def bench_trees(
    models_root: Path, *, rows: int, heavy: int, reps: int, synthetic: bool
) -> dict[str, Any]:
    """Every forest of the serving model (and the synthetic one) and the scorer's page work."""
    reg = ModelRegistry(models_root)
    version = reg.serving_version()
    if version is None:
        msg = f"no model serves in {models_root}"
        raise SystemExit(msg)
    model = reg.load(version)
    boosters = model.boosters()
    assert model.ranker is not None
    x = probe_rows(model.ranker, rows, seed=7)
    report: dict[str, Any] = {"version": version, "rows": rows, "reps": reps, "forests": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, booster in boosters.items():
            report["forests"][name] = bench_forest(booster, x, reps, work)
        if synthetic:
            big = _synthetic_forest()
            xs = probe_rows(big, rows, seed=7)
            report["forests"]["synthetic_300x15"] = bench_forest(big, xs, reps, work)
        # The scorer's page: the ranker on every row, every head on the top ``heavy``.
        compiled = reg.load(version)
        compiled.folder = work / "page"
        t0 = time.perf_counter()
        n = compiled.compile_trees()
        report["model_compile_s"] = {"cold": round(time.perf_counter() - t0, 3), "forests": n}
        again = reg.load(version)
        again.folder = work / "page"
        t0 = time.perf_counter()
        again.compile_trees()
        report["model_compile_s"]["cached"] = round(time.perf_counter() - t0, 3)
        w = model.weights
        report["page"] = {
            "heavy_top_k": heavy,
            **_interleaved(
                {
                    "booster": lambda: light_then_heavy(model, x, w, heavy),
                    "lleaves": lambda: light_then_heavy(compiled, x, w, heavy),
                },
                reps,
            ),
            "max_abs_diff": float(
                np.max(
                    np.abs(
                        light_then_heavy(model, x, w, heavy)
                        - light_then_heavy(compiled, x, w, heavy)
                    )
                )
            ),
        }
    return report


def bench_json(world: Path, *, pages: int, reps: int, limit: int = 20) -> dict[str, Any]:
    """The feed page's serialisation, FastAPI's default path vs orjson, and the whole request."""
    from fastapi.routing import serialize_response
    from fastapi.testclient import TestClient
    from fastapi.utils import create_model_field

    from api.http.json_response import OrjsonResponse
    from api.http.main import create_app
    from api.http.settings import ApiSettings
    from pipelines.serving.engine import open_engine
    from pipelines.serving.page import FeedPage

    app = create_app(
        engine_factory=lambda: open_engine(world), api_settings=ApiSettings(scheduler=False)
    )
    field = create_model_field(name="Response_get_feed", type_=FeedPage, mode="serialization")
    with TestClient(app) as client:
        eng = app.state.engine
        version = eng.learned.serving_version()
        if version is not None:  # measure served pages, not the background compile
            eng.learned.get(version)
            eng.learned.wait_compiled(version, timeout=600)
        hist = eng.state.activity.history
        users = sorted(hist, key=lambda u: -len(hist[u].rows))[:pages]
        feed_pages = [eng.feed(int(u), limit=limit) for u in users]
        explained = sum(1 for p in feed_pages for i in p.items if i.explanation.model)
        items = sum(len(p.items) for p in feed_pages)

        async def run() -> dict[str, list[float]]:
            times: dict[str, list[float]] = {"pydantic": [], "orjson": []}
            for r in range(reps):
                for page in feed_pages:
                    order = ["pydantic", "orjson"] if r % 2 == 0 else ["orjson", "pydantic"]
                    for name in order:
                        t = time.perf_counter()
                        if name == "pydantic":
                            # What FastAPI does for a sync route returning its response_model.
                            body = await serialize_response(
                                field=field,
                                response_content=page,
                                is_coroutine=False,
                                dump_json=True,
                            )
                            assert isinstance(body, bytes)
                        else:
                            OrjsonResponse(page)
                        times[name].append(time.perf_counter() - t)
            return times

        times = asyncio.run(run())
        key = eng.store.create_api_key("service")
        headers = {"Authorization": f"Bearer {key}"}
        req: list[float] = []
        for r in range(-5, reps):  # five warm-up requests
            uid = int(users[r % len(users)])
            t = time.perf_counter()
            resp = client.get("/v1/feed", params={"user_id": uid, "limit": limit}, headers=headers)
            if r >= 0:
                req.append(time.perf_counter() - t)
            assert resp.status_code == 200, resp.text
        sizes = [len(OrjsonResponse(p).body) for p in feed_pages]
    return {
        "pages": len(feed_pages),
        "items_per_page": items / max(len(feed_pages), 1),
        "items_with_learned_explanations": explained,
        "body_bytes_mean": round(float(np.mean(sizes))),
        "reps": reps,
        "serialise": {k: _pcts(v) for k, v in times.items()},
        "request_testclient": _pcts(req),
    }


def bench_engine_scorer(world: Path, *, pages: int, limit: int = 20) -> dict[str, Any]:
    """The engine's learned-value stage on real pages, boosters vs compiled, alternating.

    One open engine; the serving model's compiled set is swapped out and back in between
    pages, so both are timed on the same users and state. Users cycle over the 50 with the
    longest histories, each page a fresh session (no cursor).
    """
    from pipelines.serving.engine import open_engine

    eng = open_engine(world)
    try:
        version = eng.learned.serving_version()
        if version is None:
            msg = f"no model serves in {world}"
            raise SystemExit(msg)
        model = eng.learned.get(version)
        eng.learned.wait_compiled(version, timeout=600)
        compiled = dict(model.compiled)
        hist = eng.state.activity.history
        users = sorted(hist, key=lambda u: -len(hist[u].rows))[:50]
        stage: dict[str, list[float]] = {"booster": [], "lleaves": []}
        page: dict[str, list[float]] = {"booster": [], "lleaves": []}
        for r in range(-4, pages):  # four warm-up rounds
            uid = int(users[r % len(users)])
            order = ["booster", "lleaves"] if r % 2 == 0 else ["lleaves", "booster"]
            for name in order:
                model.compiled = compiled if name == "lleaves" else {}
                t = time.perf_counter()
                p = eng.feed(uid, limit=limit)
                if r >= 0:
                    page[name].append(time.perf_counter() - t)
                    stage[name].append(p.diagnostics.timings_ms.get("s.learned_value", 0.0) / 1e3)
        model.compiled = compiled
        return {
            "pages": pages,
            "forests_compiled": len(compiled),
            "s.learned_value": {k: _pcts(v) for k, v in stage.items()},
            "page": {k: _pcts(v) for k, v in page.items()},
        }
    finally:
        eng.close()


def main(argv: list[str] | None = None) -> int:
    """Run the measurements asked for and print the report as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--models", type=Path, help="a model registry folder (DATA/models)")
    ap.add_argument("--world", type=Path, help="a data folder with a serving model (for json)")
    ap.add_argument("--rows", type=int, default=1200)
    ap.add_argument("--heavy", type=int, default=200)
    ap.add_argument("--reps", type=int, default=300)
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--json-reps", type=int, default=50)
    ap.add_argument("--engine-pages", type=int, default=0, help="pages per arm in the engine")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--out", type=Path, help="write the report here (tl2cgen logs to stdout)")
    args = ap.parse_args(argv)
    report: dict[str, Any] = {"loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    if args.models:
        report["trees"] = bench_trees(
            args.models, rows=args.rows, heavy=args.heavy, reps=args.reps, synthetic=args.synthetic
        )
    if args.world and args.json_reps:
        report["json"] = bench_json(args.world, pages=args.pages, reps=args.json_reps)
    if args.world and args.engine_pages:
        report["engine"] = bench_engine_scorer(args.world, pages=args.engine_pages)
    report["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(report, indent=1) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
