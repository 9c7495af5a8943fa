"""``steerfeed eval lastfm``: the learned ranker on LastFM hetrec-2k against popularity and ALS.

Imported by :mod:`api.cli`, which registers the command on its ``eval`` Typer group.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.cli.core import _fail, eval_app

_RANDOM_SPLIT = re.compile(r"^random:(\d{1,9})$")
_REQUIRED_FILES = ("user_artists.parquet", "user_friends.parquet", "user_taggedartists.parquet")


class LastfmEvalInput(BaseModel):
    """Validated input of ``eval lastfm``."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    split: str | None = None
    out: Path | None = None
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    baselines: bool = True
    threads: int = Field(default=2, ge=1, le=64)

    @field_validator("data")
    @classmethod
    def _data_has_the_files(cls, v: Path) -> Path:
        if not v.is_dir():
            msg = f"no such folder: {v}"
            raise ValueError(msg)
        missing = [f for f in _REQUIRED_FILES if not (v / f).is_file()]
        if missing:
            msg = f"{v} lacks {', '.join(missing)} (expected the LastFM hetrec-2k Parquet files)"
            raise ValueError(msg)
        return v

    @field_validator("split")
    @classmethod
    def _split_is_a_file_or_random(cls, v: str | None) -> str | None:
        if v is None or _RANDOM_SPLIT.match(v):
            return v
        if not Path(v).is_file():
            msg = f"split must be a Parquet file or 'random:SEED'; no such file: {v}"
            raise ValueError(msg)
        return v

    @field_validator("out")
    @classmethod
    def _out_is_writable(cls, v: Path | None) -> Path | None:
        if v is None:
            return v
        if v.is_dir():
            msg = f"--out must be a file path, {v} is a folder"
            raise ValueError(msg)
        parent = v.parent if str(v.parent) else Path(".")
        if parent.exists() and not parent.is_dir():
            msg = f"cannot write {v}: {parent} is not a folder"
            raise ValueError(msg)
        return v


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "input"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"invalid --{where}: {msg}"


@eval_app.command("lastfm")
def eval_lastfm(
    data: Annotated[Path, typer.Option(help="folder of the LastFM hetrec-2k Parquet files")],
    split: Annotated[
        str | None,
        typer.Option(
            help="split Parquet (userID, artistID, split) or 'random:SEED' for a fresh 80/20 "
            "split; default: DATA/split_seed0.parquet"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="write the top 20 per test user here (Parquet)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the model fits")] = 0,
    baselines: Annotated[
        bool,
        typer.Option("--baselines/--no-baselines", help="also measure popularity and ALS"),
    ] = True,
    threads: Annotated[int, typer.Option(help="CPU threads for the fits")] = 2,
    validation: Annotated[
        bool,
        typer.Option(
            "--validation",
            help="score on a validation part of the train rows (never the test rows): "
            "the figure to choose settings with",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON only")] = False,
) -> None:
    """NDCG@10 and Recall@20 of the served home feed vs popularity, implicit ALS and EASE.

    Follows the protocol of ../shared/README.md: the split's train rows become a world, the
    server's train job trains on it, and each test user's top 20 is the first page of the
    home feed (rules that do not apply to this data off, listed in the output).
    """
    from pipelines.importers.errors import ImporterError
    from pipelines.offline.eval_lastfm import make_random_split, run_lastfm_eval
    from ranking.errors import RankingError
    from ranking.learned.training import TrainingError

    try:
        args = LastfmEvalInput(
            data=data, split=split, out=out, seed=seed, baselines=baselines, threads=threads
        )
    except ValidationError as exc:
        _fail(_first_error(exc))
        return
    split_file: Path | None = None
    split_frame = None
    split_name = "split_seed0.parquet"
    try:
        if args.split is not None:
            m = _RANDOM_SPLIT.match(args.split)
            if m:
                split_frame = make_random_split(args.data, int(m.group(1)))
            else:
                split_file = Path(args.split)
            split_name = args.split
        result: dict[str, Any] = run_lastfm_eval(
            args.data,
            split_file=split_file,
            split=split_frame,
            out=args.out,
            seed=args.seed,
            baselines=args.baselines,
            threads=args.threads,
            validation=validation,
        )
    except (ImporterError, RankingError, TrainingError, OSError) as exc:
        _fail(str(exc))
        return
    result = {"split": split_name, "seed": args.seed, **result}
    if args.out is not None:
        result["out"] = str(args.out)
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(f"LastFM hetrec-2k, split {split_name}, {result['users']} test users")
    for name in ("project", "popularity", "als_implicit", "ease"):
        if name in result:
            m = result[name]
            typer.echo(f"  {name:<14} NDCG@10 {m['ndcg@10']:.4f}  Recall@20 {m['recall@20']:.4f}")
    typer.echo(f"  {result['seconds']:.0f} s")
