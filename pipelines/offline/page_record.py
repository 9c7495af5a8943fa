"""Record a fixed set of pages from a world and compare two recordings.

A refactor that must not change behaviour is checked with it: record the pages before, record
them again after on a fresh copy of the same world, and compare. Every request is pinned (user,
session and request ids, the time), impressions are committed between pages, and the engine
serves the same products as over HTTP, so two recordings of one world are identical unless the
ranking changed.

    python -m pipelines.offline.page_record build DIR    # a seeded demo world, trained model
    python -m pipelines.offline.page_record record DIR OUT.json  # on a copy of DIR
    python -m pipelines.offline.page_record compare A.json B.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The fixed "now" of the recorded world and of every recorded request.
RECORD_NOW = datetime(2026, 1, 5, 12, 0, 0)


def build(data_dir: Path, *, users: int = 300, clips: int = 3000, events: int = 40_000) -> None:
    """Build the seeded world that recordings are made on (trained ranker included)."""
    from pipelines.offline.demo import build_demo

    build_demo(
        data_dir,
        n_users=users,
        n_clips=clips,
        n_events=events,
        seed=11,
        now=RECORD_NOW,
        jobs=("author_stats", "collab", "train"),
    )


def record(data_dir: Path, *, n_users: int = 40, pages: int = 3, limit: int = 20) -> dict[str, Any]:
    """Serve ``pages`` pages to each of ``n_users`` users on a private copy of ``data_dir``."""
    from pipelines.serving.engine import open_engine
    from ranking.pipeline import FeedQuery

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "world"
        shutil.copytree(data_dir, work)
        engine = open_engine(work)
        try:
            out: dict[str, Any] = {}
            users = sorted(engine.state.profiles.users)[:n_users]
            _steer(engine, users)
            for uid in users:
                served: frozenset[int] = frozenset()
                rows: list[list[Any]] = []
                for p in range(pages):
                    query = FeedQuery(
                        user_id=int(uid),
                        limit=limit,
                        now=RECORD_NOW,
                        session_id=f"rec-{uid}",
                        request_id=f"rec-{uid}-{p}",
                        page=p,
                        exclude_ids=served,
                    )
                    product = engine.choose_product(int(uid), "home")
                    result = engine.products[product].run(query)
                    for effect in result.effects:  # the impressions are submitted ...
                        effect.result()
                    engine.writer.flush()  # ... and committed before the next page
                    page = result.page
                    ids = [int(i) for i in page["item_id"].to_list()]
                    scores = [round(float(s), 6) for s in page["score"].to_list()]
                    srcs = [str(s) for s in page["source"].to_list()]
                    failed = sorted(result.failed_sources)
                    rows.append([product, failed, list(zip(ids, scores, srcs, strict=True))])
                    served = served | frozenset(ids)
                out[str(uid)] = rows
            return out
        finally:
            engine.close()


#: Steering applied before recording, by user position: (mood text, control changes).
_STEERING: dict[int, tuple[str | None, dict[str, Any]]] = {
    3: ("cooking and baking", {}),
    5: ("funny animals but not cats", {}),
    7: (None, {"never_show": ["gaming"], "more_of": ["music"]}),
    9: (None, {"personalized": False}),
    11: ("calm nature, nothing intense", {"connected_vs_global": 0.9}),
}


def _steer(engine: Any, users: list[int]) -> None:
    """Give some users a mood, standing controls or the non-personalized feed, so the
    recording covers the steering components and the product choice too."""
    for pos, (mood, controls) in _STEERING.items():
        if pos >= len(users):
            continue
        uid = int(users[pos])
        if mood is not None:
            engine.steering.moods.create(uid, mood, scope="standing", now=RECORD_NOW)
        if controls:
            engine.steering.controls.update(uid, controls)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The differences between two recordings (empty when identical)."""
    diffs = []
    for uid in sorted(set(a) | set(b), key=int):
        if a.get(uid) != b.get(uid):
            failed = {s for rows in (a.get(uid, []), b.get(uid, [])) for r in rows for s in r[1]}
            diffs.append(f"{uid} (failed sources: {sorted(failed)})" if failed else uid)
    return diffs


def main(argv: list[str] | None = None) -> int:
    """Command line: build, record or compare."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("data_dir", type=Path)
    r = sub.add_parser("record")
    r.add_argument("data_dir", type=Path)
    r.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        build(args.data_dir)
        return 0
    if args.cmd == "record":
        rec = record(args.data_dir)
        args.out.write_text(json.dumps(rec, sort_keys=True))
        n_pages = sum(len(v) for v in rec.values())
        logger.info("recorded %d pages of %d users into %s", n_pages, len(rec), args.out)
        return 0
    diffs = compare(json.loads(args.a.read_text()), json.loads(args.b.read_text()))
    if diffs:
        logger.error("%d users' pages differ: %s", len(diffs), ", ".join(diffs[:20]))
        return 1
    logger.info("identical")
    return 0


if __name__ == "__main__":
    sys.exit(main())
