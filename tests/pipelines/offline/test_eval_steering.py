"""The steering benchmark: prompts file, scoring, the caption-vector cache and a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.offline.eval_steering import (
    SteeringEvalError,
    WorldConfig,
    cached_caption_embeddings,
    load_prompts,
    rescore,
    run_steering_eval,
    score_pages,
    split_users,
    user_mean_ci,
)


def _write_prompts(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_prompts_file_errors_name_the_entry(tmp_path: Path) -> None:
    with pytest.raises(SteeringEvalError, match="not found"):
        load_prompts(tmp_path / "missing.json")
    bad = _write_prompts(tmp_path / "bad.json", [{"prompt": "cats"}, {"prompt": ""}])
    with pytest.raises(SteeringEvalError, match=r"1\.prompt"):
        load_prompts(bad)
    with pytest.raises(SteeringEvalError, match="no prompts"):
        load_prompts(_write_prompts(tmp_path / "empty.json", []))
    ok = load_prompts(_write_prompts(tmp_path / "ok.json", [{"prompt": "cats"}]))
    assert ok[0].prompt == "cats" and ok[0].split == "heldout"


def test_scores_compliance_and_negation_against_the_no_mood_page() -> None:
    cats = pl.DataFrame({"item_id": [1, 2, 3, 4, 5, 6], "category": list("AABBCC")})
    rows = [
        # no-mood page of user 7: two B clips in the top 20
        ("", 7, [3, 4, 5, 6]),
        # "only A": half of the top 10 in A
        ("only A", 7, [1, 5, 2, 6]),
        # "no B": one of the two B clips left
        ("no B", 7, [3, 5, 6, 1]),
    ]
    recs = [
        {"prompt": p, "user_id": u, "item_id": i, "rank": r}
        for p, u, items in rows
        for r, i in enumerate(items, start=1)
    ]
    pages = pl.DataFrame(recs)
    from pipelines.offline.eval_steering import PromptSpec

    prompts = [
        PromptSpec(prompt="only A", categories=["A"], split="tune"),
        PromptSpec(prompt="no B", avoid=["B"], split="heldout"),
    ]
    r = score_pages(pages, cats, prompts)
    assert r["compliance_at_10"] == {"tune": 0.5, "heldout": None}
    assert r["per_prompt"]["no B"]["avoided_before"] == 2
    assert r["per_prompt"]["no B"]["avoided_after"] == 1
    assert r["negation_removed"]["heldout"] == 0.5
    assert r["negation_only_removed"] == {"heldout": {"no B": 0.5}}
    # False removals: the no-mood page's clips of other kinds (5, 6) both stay.
    assert r["per_prompt"]["no B"]["others_before"] == 2
    assert r["negation_only_others_lost"] == {"tune": None, "heldout": 0.0}
    assert r["compliance_at_10_ci95"]["tune"]["users"] == 1


def test_tuning_and_held_out_users_never_overlap() -> None:
    cfg = WorldConfig(n_users=64, n_tune_users=16)
    users = list(range(100, 164))
    tune, held = split_users(users, cfg, "tune"), split_users(users, cfg, "heldout")
    assert len(tune) == 16 and len(held) == 48
    assert not set(tune) & set(held)
    with pytest.raises(SteeringEvalError, match="holds no user"):
        split_users(users[:16], WorldConfig(n_users=16, n_tune_users=16), "heldout")


def test_confidence_interval_is_over_users_and_narrows_with_more_of_them() -> None:
    rng = np.random.default_rng(1)
    few = {u: [float(rng.uniform())] for u in range(10)}
    many = {u: [float(rng.uniform())] for u in range(400)}
    a, b = user_mean_ci(few), user_mean_ci(many)
    assert a["low"] <= a["mean"] <= a["high"] and b["low"] <= b["mean"] <= b["high"]
    assert b["high"] - b["low"] < a["high"] - a["low"]
    assert b["users"] == 400


class _CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self) -> None:
        from features.embedding import shared_embedder

        self.inner = shared_embedder()
        self.settings = self.inner.settings
        self.embedded = 0

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        self.embedded += len(texts)
        return self.inner.embed(texts, show_progress=show_progress)


def test_caption_vectors_are_cached_on_disk(tmp_path: Path) -> None:
    emb = _CountingEmbedder()
    clips = pl.DataFrame({"caption": ["cats", "dogs", "cats"]})
    first = cached_caption_embeddings(clips, tmp_path, emb)
    assert emb.embedded == 2  # each distinct caption once
    more = pl.DataFrame({"caption": ["dogs", "cooking"]})
    second = cached_caption_embeddings(more, tmp_path, emb)
    assert emb.embedded == 3  # only the new caption
    assert np.allclose(second[0], first[1])
    assert first.shape == (3, emb.inner.dim)


def _tiny_microlens(folder: Path, n: int = 240) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    themes = {
        "Delicacy": ["cooking noodles at home", "street food tour", "baking a cake"],
        "Game": ["mobile game ranked battle", "speedrun boss fight", "new game skin"],
        "Animal": ["my cat sleeping", "puppy meets a dog", "parrot talking"],
        "Sports": ["basketball dunk highlights", "football goal", "tennis rally"],
    }
    names = list(themes)
    rows = []
    for i in range(1, n + 1):
        cat = names[i % len(names)]
        title = f"{themes[cat][int(rng.integers(3))]} part {i}"
        rows.append(
            {
                "video_id": i,
                "title_full_50k": title,
                "title_100k": title,
                "category": cat,
                "likes": int(rng.integers(10, 1000)),
                "views": int(rng.integers(1000, 10000)),
            }
        )
    pl.DataFrame(rows).with_columns(pl.col("video_id").cast(pl.Int32)).write_parquet(
        folder / "microlens_items.parquet"
    )
    return folder


@pytest.mark.slow
def test_tiny_benchmark_writes_pages_and_scores_them(tmp_path: Path) -> None:
    data = _tiny_microlens(tmp_path / "microlens")
    prompts = _write_prompts(
        tmp_path / "prompts.json",
        [
            {"prompt": "cooking", "categories": ["Delicacy"], "split": "tune"},
            {"prompt": "no games", "avoid": ["Game"]},
        ],
    )
    out = tmp_path / "pages.parquet"
    cfg = WorldConfig(n_users=20, n_tune_users=8, history_len=20, n_clusters=4, limit_clips=200)
    report = run_steering_eval(data, prompts, out, data_dir=tmp_path / "eval", cfg=cfg)
    pages = pl.read_parquet(out)
    assert pages.columns == ["prompt", "user_id", "item_id", "rank"]
    # The tuning run: tuning prompts only, tuning users only.
    assert set(pages["prompt"].unique()) == {"", "cooking"}
    assert pages.filter(pl.col("prompt") == "")["user_id"].n_unique() == 8
    assert report["split"] == "tune" and report["users"] == 8
    assert report["clips"] == 200 and report["min_history_clips"] >= 20
    assert report["latency"]["added_ms_p99"] is not None
    assert report["scores"]["compliance_at_10"]["tune"] > 0.5
    assert report["scores"]["compliance_at_10"]["heldout"] is None
    assert report["baseline_scores"]["compliance_at_10"]["tune"] is not None
    again = rescore(data, prompts, out)
    assert again["scores"] == report["scores"]
    held_out = tmp_path / "heldout.parquet"
    held = run_steering_eval(
        data, prompts, held_out, data_dir=tmp_path / "eval", cfg=cfg, split="heldout"
    )
    held_pages = pl.read_parquet(held_out)
    assert set(held_pages["prompt"].unique()) == {"", "no games"}
    assert not set(held_pages["user_id"]) & set(pages["user_id"])
    assert held["users"] == 12 and "no games" in held["scores"]["negation_only_removed"]["heldout"]
