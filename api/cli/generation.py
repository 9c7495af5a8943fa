"""Generation commands: ``steerfeed generate``, ``steerfeed verify FILE`` (a clip's signed
provenance) and ``steerfeed generation ...`` (the tiny test model and encoder, cameo consent,
rights-holder opt-outs and holders, protected people, the review queue, the queue and gap
filling, name-matching calibration)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from api.cli.core import DEFAULT_DATA, DataDir, _call, _engine, _fail, _has_store, _live_server, app

if TYPE_CHECKING:
    from api.cli.live_server import LiveServer
    from pipelines.generation.settings import RenderParams

generation_app = typer.Typer(
    help="Clip generation: consent, opt-outs, queue, gaps.", no_args_is_help=True
)
app.add_typer(generation_app, name="generation")

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", help="text-to-video model folder or cached id (else STEERFEED_GEN_MODEL)"
    ),
]


def _open(data_dir: Path, model: str | None = None) -> Any:
    if model:
        os.environ["STEERFEED_GEN_MODEL"] = model
    if not _has_store(data_dir):
        _fail(f"no store in {data_dir}; build one with 'steerfeed demo --no-serve'")

    eng = _engine(data_dir)
    return eng, eng.generation


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@app.command()
def generate(
    prompt: Annotated[str, typer.Option(help="what the clip shows")],
    user_id: Annotated[int | None, typer.Option(help="who asks (default: the studio)")] = None,
    remix_of: Annotated[int | None, typer.Option(help="clip id to remix")] = None,
    cameo: Annotated[list[int] | None, typer.Option(help="user id in the clip (repeat)")] = None,
    frames: Annotated[int | None, typer.Option(min=1, help="frames")] = None,
    height: Annotated[int | None, typer.Option(help="height (multiple of 8)")] = None,
    width: Annotated[int | None, typer.Option(help="width (multiple of 8)")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="denoising steps")] = None,
    guidance: Annotated[float | None, typer.Option(help="guidance scale")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="seed")] = None,
    fps: Annotated[int | None, typer.Option(min=1, help="frames per second")] = None,
    model: ModelOpt = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Check the rules, queue the prompt and render it now; print the job and clip.

    Beside a running server on this data folder, the server queues it (POST /v1/generations,
    which needs --user-id) and renders it now (the ``generate`` job).
    """
    from pipelines.generation.errors import RuleViolation
    from pipelines.generation.settings import RenderParams

    try:
        params = RenderParams(
            num_frames=frames,
            height=height,
            width=width,
            steps=steps,
            guidance=guidance,
            seed=seed,
            fps=fps,
        )
    except ValidationError as exc:
        _fail(str(exc))
        return
    server = _live_server(data_dir)
    if server is not None:
        body = {"prompt": prompt, "user_id": user_id, "remix_of": remix_of, "cameos": cameo}
        _generate_through(server, body, params, model=model)
        return
    eng, svc = _open(data_dir, model)
    try:
        svc.generator.show_progress = True
        try:
            job = svc.submit(
                prompt, requested_by=user_id, remix_of=remix_of, cameos=cameo, params=params
            )
        except RuleViolation as exc:
            _fail(f"refused ({exc.reason}): {exc.message}")
            return
        t0 = time.perf_counter()
        svc.worker.tick(wait=True)
        out = svc.status(job.job_id)
        out["wall_seconds"] = round(time.perf_counter() - t0, 2)
        _echo(out)
        if out["status"] != "done":
            raise typer.Exit(1)
    finally:
        eng.close()


#: Seconds between polls of a job the server renders, and between nudges of its worker.
_POLL_S, _NUDGE_S = 1.0, 15.0


def _generate_through(
    server: LiveServer, body: dict[str, Any], params: RenderParams, *, model: str | None
) -> None:
    """``steerfeed generate`` through a running server: queue, start the worker, wait."""
    if model:
        _fail(
            "--model cannot change the generator of the running server; start it with "
            "STEERFEED_GEN_MODEL set, or stop it first"
        )
    if body["user_id"] is None:
        _fail(
            "a running server holds the store: the clip is queued through POST "
            "/v1/generations, which needs --user-id (who asks); or stop the server first"
        )
    body = {
        **body,
        "cameos": body["cameos"] or [],
        "params": params.model_dump(exclude_none=True) or None,
    }
    t0 = time.perf_counter()
    job = _call(server, "POST", "/v1/generations", json=body)
    nudged = 0.0
    while True:
        if time.perf_counter() - nudged > _NUDGE_S:  # start it now, not at the next schedule
            _call(server, "POST", "/v1/admin/jobs/generate/run")
            nudged = time.perf_counter()
        out = _call(server, "GET", f"/v1/generations/{job['job_id']}")
        if out["status"] not in ("queued", "running"):
            break
        time.sleep(_POLL_S)
    out["wall_seconds"] = round(time.perf_counter() - t0, 2)
    _echo(out)
    if out["status"] != "done":
        raise typer.Exit(1)


@generation_app.command("tiny-model")
def tiny_model(
    out: Annotated[Path, typer.Option("--out", help="folder to write the pipeline into")],
) -> None:
    """Build a tiny untrained text-to-video pipeline (real diffusers classes) for CPU demos."""
    from pipelines.generation.tiny_model import build_tiny_text_to_video

    path = build_tiny_text_to_video(out)
    typer.echo(f"wrote {path}; use --model {path} or STEERFEED_GEN_MODEL={path}")


@generation_app.command("consent")
def consent(
    user_id: Annotated[int, typer.Option(min=0, help="the user opting in")],
    audience: Annotated[str, typer.Option(help="none | friends | everyone (teens: friends)")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Record a user's own choice of cameo audience (a teen's waits for a linked parent's
    approval through the API)."""
    eng, svc = _open(data_dir)
    try:
        eng.require_user(user_id)
        _echo(svc.consents.grant(user_id, audience).to_dict())
    except Exception as exc:
        _fail(str(exc))
    finally:
        eng.close()


@generation_app.command("revoke")
def revoke(
    user_id: Annotated[int, typer.Option(min=0, help="the user revoking consent")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Revoke a user's cameo consent (their cameo clips leave every feed)."""
    eng, svc = _open(data_dir)
    try:
        _echo(svc.revoke_consent(user_id))
    finally:
        eng.close()


@generation_app.command("optout-add")
def optout_add(
    holder: Annotated[str, typer.Option(help="the rights holder")],
    name: Annotated[list[str], typer.Option(help="a character, brand or work (repeat)")],
    kind: Annotated[str, typer.Option(help="character | brand | work")] = "work",
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Register a holder's blanket opt-out."""
    eng, svc = _open(data_dir)
    try:
        _echo([o.to_dict() for o in svc.optouts.register(holder, name, kind=kind)])
    except ValueError as exc:
        _fail(str(exc))
    finally:
        eng.close()


@generation_app.command("optouts")
def optouts(data_dir: DataDir = DEFAULT_DATA) -> None:
    """List registered opt-outs."""
    eng, svc = _open(data_dir)
    try:
        _echo([o.to_dict() for o in svc.optouts.active()])
    finally:
        eng.close()


@generation_app.command("optout-remove")
def optout_remove(
    optout_id: Annotated[str, typer.Option(help="id from 'generation optouts'")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Withdraw one registered name."""
    eng, svc = _open(data_dir)
    try:
        if not svc.optouts.remove(optout_id):
            _fail(f"no opt-out {optout_id!r}")
        typer.echo(f"removed {optout_id}")
    finally:
        eng.close()


@generation_app.command("queue")
def queue_cmd(
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, help="newest N jobs")] = 20,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Show queue counts and the newest jobs."""
    eng, svc = _open(data_dir)
    try:
        _echo(
            {
                "counts": svc.queue.counts(),
                "jobs": [j.to_dict() for j in svc.queue.list_jobs(status=status, limit=limit)],
            }
        )
    finally:
        eng.close()


@generation_app.command("gaps")
def gaps(
    limit: Annotated[int | None, typer.Option(min=0, help="most prompts to queue")] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Find mood facets and topics lacking clips and queue prompts for them."""
    from pipelines.generation.gaps import queue_gaps

    eng, svc = _open(data_dir)
    try:
        _echo(queue_gaps(svc, limit=limit))
    finally:
        eng.close()


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="an mp4 written by the generator")],
    trust_anchor: Annotated[
        list[Path] | None,
        typer.Option(help="PEM certificate to trust (default: this data folder's anchor)"),
    ] = None,
    require_trusted: Annotated[
        bool, typer.Option(help="fail unless the signer chains to a trusted anchor")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Check a clip's C2PA provenance: signature, file hash and video-stream hash. Prints the
    report; exits 0 when it holds, 1 when it does not."""
    from pipelines.generation.provenance import ANCHOR_FILE, verify_file
    from pipelines.generation.settings import GenerationSettings

    anchors = list(trust_anchor or [])
    if not anchors:
        local = GenerationSettings().resolved_provenance_dir(data_dir) / ANCHOR_FILE
        anchors = [local] if local.is_file() else []
    report = verify_file(file, trust_anchors=anchors, require_trusted=require_trusted)
    _echo(report)
    if not report["ok"]:
        raise typer.Exit(1)


@generation_app.command("tiny-encoder")
def tiny_encoder(
    out: Annotated[Path, typer.Option("--out", help="folder to write the encoder into")],
) -> None:
    """Build a tiny untrained CLIP encoder (real transformers classes) for frame-review demos."""
    from pipelines.generation.tiny_model import build_tiny_clip

    path = build_tiny_clip(out)
    typer.echo(f"wrote {path}; use STEERFEED_GEN_REVIEW_ENCODER={path}")


@generation_app.command("protect")
def protect(
    name: Annotated[list[str] | None, typer.Option(help="a person's name (repeat)")] = None,
    file: Annotated[
        Path | None,
        typer.Option(help="a text file: one person a line, aliases after '|' (Name|Alias)"),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Add real people to the protected list (prompts naming them are refused)."""
    lines = list(name or [])
    if file is not None:
        lines += [ln for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.lstrip().startswith("#")]
    if not lines:
        _fail("give --name or --file")
    eng, svc = _open(data_dir)
    try:
        out = []
        for ln in lines:
            first, *aliases = [p.strip() for p in ln.split("|")]
            out.append(svc.people.add(first, aliases=aliases).to_dict())
        _echo(out)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        eng.close()


@generation_app.command("protected")
def protected(data_dir: DataDir = DEFAULT_DATA) -> None:
    """List the protected people (operator entries and the starter list)."""
    eng, svc = _open(data_dir)
    try:
        _echo([p.to_dict() for p in svc.people.people()])
    finally:
        eng.close()


@generation_app.command("holders")
def holders(
    status: Annotated[str | None, typer.Option(help="pending | verified | rejected")] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """List rights holders and their names."""
    eng, svc = _open(data_dir)
    try:
        _echo(
            [
                {**h.to_dict(), "names": [o.name for o in svc.optouts.of_holder(h.holder_id)]}
                for h in svc.holders.list_holders(status=status)
            ]
        )
    finally:
        eng.close()


@generation_app.command("holder-verify")
def holder_verify(
    holder_id: Annotated[str, typer.Option(help="id from 'generation holders'")],
    reject: Annotated[bool, typer.Option(help="reject instead of verifying")] = False,
    note: Annotated[str, typer.Option(help="a note for the holder")] = "",
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Verify (or reject) a rights holder: verified names take effect at once."""
    from pipelines.generation.rights import UnknownHolderError

    eng, svc = _open(data_dir)
    try:
        _echo(svc.verify_holder(holder_id, verified=not reject, note=note))
    except UnknownHolderError as exc:
        _fail(str(exc))
    finally:
        eng.close()


@generation_app.command("reviews")
def reviews(
    status: Annotated[str | None, typer.Option(help="pending|held|taken_down|restored")] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Show the clip review queue."""
    eng, svc = _open(data_dir)
    try:
        _echo(
            {
                "counts": svc.reviews.counts(),
                "reviews": [r.to_dict() for r in svc.reviews.list_reviews(status=status)],
            }
        )
    finally:
        eng.close()


@generation_app.command("take-down")
def take_down(
    item_id: Annotated[int, typer.Option(min=0, help="the clip")],
    reason: Annotated[str, typer.Option(help="why")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Take a clip down: hidden everywhere, media 410, its frames held if rendered again."""
    from pipelines.generation.review import UnknownReviewError

    eng, svc = _open(data_dir)
    try:
        _echo(svc.take_down(item_id, source="admin", reason=reason, decided_by="cli").to_dict())
    except UnknownReviewError as exc:
        _fail(str(exc))
    finally:
        eng.close()


@generation_app.command("restore")
def restore(
    item_id: Annotated[int, typer.Option(min=0, help="the clip")],
    note: Annotated[str, typer.Option(help="why")] = "",
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Show a held or taken-down clip again."""
    from pipelines.generation.review import UnknownReviewError

    eng, svc = _open(data_dir)
    try:
        _echo(svc.restore(item_id, decided_by="cli", note=note).to_dict())
    except UnknownReviewError as exc:
        _fail(str(exc))
    finally:
        eng.close()


@generation_app.command("calibrate-names")
def calibrate_names(
    labels: Annotated[Path, typer.Option(help="CSV of text,name,label,split")],
) -> None:
    """Measure the name-matching thresholds on the tuning split of a labelled list (no false
    positive there) and report precision and recall per split at those thresholds."""
    from features.embedding import shared_embedder
    from pipelines.generation.names import calibrate, evaluate, read_labels

    pairs = read_labels(str(labels))
    emb = shared_embedder()
    th = calibrate(pairs, emb)
    _echo({"thresholds": th, "figures": evaluate(pairs, emb, **th)})


@generation_app.command("check-prompt")
def check_prompt(
    prompt: Annotated[str, typer.Option(help="the prompt to assess")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Run the protected-people, opt-out and prompt-safety checks without queueing anything."""
    from pipelines.generation.errors import RuleViolation

    eng, svc = _open(data_dir)
    try:
        verdict: dict[str, Any] = {"prompt": prompt, **svc.safety.assess(prompt)}
        try:
            svc.people.check(prompt)
            svc.optouts.check(prompt, notify=False)
            svc.safety.check(prompt)
            verdict["allowed"] = True
        except RuleViolation as exc:
            verdict.update(allowed=False, reason=exc.reason, message=exc.message)
        _echo(verdict)
    finally:
        eng.close()
