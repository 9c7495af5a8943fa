"""The ``steerfeed`` command line (Typer). Every command takes ``--data-dir``."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from api.cli.live_server import LiveServer


class SteerfeedGroup(TyperGroup):
    """The root command group: a command that finds the store held by another process ends
    with one line saying who holds it and what to do, never DuckDB's lock traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click Context
        """Run the command; turn DuckDB's lock error into a one-line error (exit 2)."""
        what = self._command_words(ctx)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            from api.cli.live_server import held_store_message, is_lock_error

            if not is_lock_error(exc):
                raise
            found = re.search(r'on file "([^"]+)"', str(exc))
            data_dir = Path(found.group(1)).parent if found else DEFAULT_DATA
            msg = held_store_message(data_dir, what=what, exc=exc)
            typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    def _command_words(self, ctx: Any) -> str:
        """``'steerfeed import clips'``: the command about to run, for messages."""
        words = [*getattr(ctx, "_protected_args", []), *ctx.args][:2]
        if not words:
            return "this command"
        sub = self.get_command(ctx, words[0])
        if len(words) == 2 and not isinstance(sub, TyperGroup):
            words = words[:1]  # a command's argument, not a subcommand
        return "'steerfeed " + " ".join(words) + "'"


app = typer.Typer(
    cls=SteerfeedGroup,
    help="steerfeed: feed ranking and steering for short AI-generated clips.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs (also scheduled in the server).", no_args_is_help=True)
import_app = typer.Typer(help="Import data into the store.", no_args_is_help=True)
# Filled by api.cli.models / cli_steering / ...: ``steerfeed eval lastfm``, ``eval steering``...
eval_app = typer.Typer(help="Offline evaluations on real or demo data.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(import_app, name="import")
app.add_typer(eval_app, name="eval")

DataDir = Annotated[Path, typer.Option("--data-dir", help="folder of the DuckDB file and index")]
DEFAULT_DATA = Path("data")
logger = logging.getLogger("steerfeed")


def _setup_logging(verbose: bool = False) -> None:
    """Text lines on stderr, or JSON lines with ``STEERFEED_TELEMETRY_LOG_FORMAT=json``; every
    line carries the request (or job run) id."""
    from pipelines.serving.telemetry.logs import configure_logging
    from pipelines.serving.telemetry.settings import TelemetrySettings

    configure_logging(
        level=logging.DEBUG if verbose else logging.INFO,
        fmt=TelemetrySettings().log_format,
    )


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _store_url(data_dir: Path) -> str:
    """The store the commands open: ``STEERFEED_DB_URL`` (a path, ``duckdb://`` or
    ``postgresql://``), else the DuckDB file in ``data_dir``."""
    from storage.settings import StorageSettings

    return StorageSettings(data_dir=data_dir).resolved_db_url()


def _has_store(data_dir: Path) -> bool:
    """Whether there is a store to open (a server is taken to hold one; opening it says if
    it cannot be reached)."""
    from storage.factory import duckdb_path, is_postgres_url

    url = _store_url(data_dir)
    return is_postgres_url(url) or Path(duckdb_path(url)).exists()


def _open_store(data_dir: Path) -> Any:
    """Open the store of ``data_dir`` (or ``STEERFEED_DB_URL``); fail with the reason."""
    from storage.errors import StorageError
    from storage.factory import open_store

    try:
        return open_store(_store_url(data_dir))
    except StorageError as exc:
        _fail(str(exc))


def _engine(data_dir: Path) -> Any:
    from pipelines.serving.engine import open_engine

    return open_engine(data_dir)


def _live_server(data_dir: Path) -> LiveServer | None:
    """The running server that holds ``data_dir`` (commands then work through it), or
    ``None`` when none runs; a one-line error when one runs but cannot be reached."""
    from api.cli.live_server import NoLocalAccessError, find_live_server

    try:
        return find_live_server(data_dir)
    except NoLocalAccessError as exc:
        _fail(str(exc))
        return None


def _call(server: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    """``server.call`` answering JSON; a refusal or failure is a one-line error."""
    from api.cli.live_server import ServerCallError

    try:
        return server.call(method, path, **kwargs).json()
    except ServerCallError as exc:
        _fail(str(exc))


def _refuse_beside_server(data_dir: Path, what: str) -> None:
    """A one-line error when a live server holds ``data_dir`` and ``what`` cannot go through
    it (said before any slow work starts)."""
    from api.cli.live_server import held_store_message, holding_server

    if holding_server(data_dir) is not None:
        _fail(held_store_message(data_dir, what=what))


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logs")] = False,
) -> None:
    """steerfeed command line."""
    _setup_logging(verbose)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="service | user | analyst | admin | parent")],
    user_id: Annotated[int | None, typer.Option(help="the user a user/parent key acts for")] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Create an API key; the last token printed is the key (shown once).

    Beside a running server on this data folder, the server creates it (POST /v1/admin/keys).
    """
    server = _live_server(data_dir)
    if server is not None:
        body = {"role": role, "user_id": user_id}
        key = _call(server, "POST", "/v1/admin/keys", json=body)["key"]
    else:
        store = _open_store(data_dir)
        try:
            key = store.create_api_key(role, user_id=user_id)
        except ValueError as exc:
            _fail(str(exc))
        finally:
            store.close()
    typer.echo(f"created {role} key: {key}")


@keys_app.command("list")
def keys_list(
    data_dir: DataDir = DEFAULT_DATA,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """List the keys: id, role, user, created, revoked (never the keys themselves)."""
    server = _live_server(data_dir)
    if server is not None:
        keys = _call(server, "GET", "/v1/admin/keys")["keys"]
    else:
        store = _open_store(data_dir)
        try:
            keys = store.list_api_keys()
        finally:
            store.close()
    for k in keys:
        created = str(k["created_at"]).replace("T", " ")[:19]
        if as_json:
            typer.echo(json.dumps({**k, "created_at": created}))
            continue
        user = "-" if k["user_id"] is None else str(k["user_id"])
        state = "revoked" if k["revoked"] else "active"
        typer.echo(f"{k['key_id']}  {k['role']:<8} user {user:<8} {created}  {state}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id ('steerfeed keys list')")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Revoke a key: it is refused from the next request on."""
    server = _live_server(data_dir)
    if server is not None:
        if not re.fullmatch(r"[0-9a-f]{1,64}", key_id):
            _fail(f"not a key id: {key_id!r} ('steerfeed keys list' shows them)")
        already = bool(_call(server, "DELETE", f"/v1/admin/keys/{key_id}")["already_revoked"])
    else:
        from storage.errors import UnknownEntityError

        store = _open_store(data_dir)
        try:
            already = not store.revoke_api_key(key_id)
        except UnknownEntityError as exc:
            _fail(str(exc))
        finally:
            store.close()
    typer.echo(f"key {key_id} was already revoked" if already else f"revoked key {key_id}")


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DATA,
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="serving processes (more than 1 needs a PostgreSQL store: STEERFEED_DB_URL)",
        ),
    ] = 1,
    scheduler: Annotated[bool, typer.Option(help="run scheduled jobs in the server")] = True,
    drain_timeout: Annotated[
        int,
        typer.Option(
            min=1,
            max=600,
            help="on SIGTERM, seconds in-flight requests get to finish before they are cut",
        ),
    ] = 30,
    worker_healthcheck_timeout: Annotated[
        int,
        typer.Option(
            min=5,
            max=3600,
            help="with --workers > 1, seconds a worker may not answer the supervisor's ping "
            "before it is killed and restarted (loading a large world holds the process)",
        ),
    ] = 300,
) -> None:
    """Serve an existing data directory over HTTP.

    On SIGTERM (or Ctrl-C) the server stops listening, lets in-flight requests finish (up to
    ``--drain-timeout`` seconds), waits for their side effects, flushes the queued impressions
    and closes the store; then the process ends (by the signal it got, as uvicorn does).
    """
    import uvicorn

    if not _has_store(data_dir):
        _fail(
            f"no store in {data_dir}; build one with "
            f"'steerfeed demo --no-serve --data-dir {data_dir}'"
        )
    from storage.factory import is_postgres_url

    if workers > 1 and not is_postgres_url(_store_url(data_dir)):
        # One DuckDB file takes one process; several workers share state through a server.
        _fail(
            f"--workers {workers} needs a PostgreSQL store: the embedded DuckDB file in "
            f"{data_dir} takes one process. Set STEERFEED_DB_URL=postgresql://... "
            "(docs/deploying.md), or serve with --workers 1"
        )
    os.environ["STEERFEED_DATA_DIR"] = str(data_dir)
    os.environ["STEERFEED_API_SCHEDULER"] = "true" if scheduler else "false"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several workers: each keeps its metrics in this folder and /metrics merges them.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="steerfeed-metrics-")
    from api.cli.live_server import holding_server
    from api.http.local_access import announce_server, withdraw_server

    running = holding_server(data_dir)
    if running is not None:
        _fail(f"a server already serves {data_dir} (pid {running.pid}, {running.url})")
    if not is_postgres_url(_store_url(data_dir)):
        import duckdb

        # Held by another process: one line (SteerfeedGroup), not uvicorn's start-up traceback.
        duckdb.connect(str(data_dir / "steerfeed.duckdb")).close()
    # server.json and the local token: CLI commands beside this server go through it.
    announce_server(data_dir, host=host, port=port)
    try:
        uvicorn.run(
            "api.http.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            # uvicorn's lines go through the handler set up above (text or JSON, with ids).
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=drain_timeout,
            # uvicorn's default, 5 s, killed every worker of a 200k-clip world while it loaded
            # (the embedded index holds the interpreter while it opens), over and over.
            timeout_worker_healthcheck=worker_healthcheck_timeout,
        )
    finally:
        withdraw_server(data_dir)


@app.command()
def demo(
    data_dir: DataDir = DEFAULT_DATA,
    users: Annotated[int, typer.Option(min=20, max=10_000_000, help="number of users")] = 2000,
    clips: Annotated[int, typer.Option(min=50, max=100_000_000, help="number of clips")] = 20000,
    events: Annotated[
        int, typer.Option(min=100, max=2_000_000_000, help="number of events")
    ] = 500_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    serve_api: Annotated[
        bool, typer.Option("--serve/--no-serve", help="start the API after")
    ] = True,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="serving processes after the build (more than 1 needs STEERFEED_DB_URL)",
        ),
    ] = 1,
    force: Annotated[bool, typer.Option(help="rebuild even if the store exists")] = False,
    train: Annotated[
        bool,
        typer.Option(
            "--train/--no-train",
            help="after building, run the author-stats, collab and train jobs so the learned "
            "ranker serves from the first page",
        ),
    ] = True,
) -> None:
    """Build a demo world into DATA_DIR, index it, print a key and start the API.

    ``--force`` rebuilds an existing store, but never one a running process holds open.
    """
    from pipelines.offline.demo import DemoError, build_demo, store_holders
    from pipelines.offline.demo_world import WorldConfig, WorldConfigError
    from storage.factory import is_postgres_url

    try:  # arguments first: nothing is touched for a world that cannot be built
        WorldConfig(n_users=users, n_clips=clips, n_events=events, seed=seed).validate()
    except WorldConfigError as exc:
        _fail(str(exc))
    if serve_api and workers > 1 and not is_postgres_url(_store_url(data_dir)):
        _fail(
            f"--workers {workers} needs a PostgreSQL store (STEERFEED_DB_URL=postgresql://..., "
            "docs/deploying.md); the embedded DuckDB file takes one process"
        )
    holders = store_holders(data_dir)
    if holders:
        _fail(
            f"the store in {data_dir} is in use; stop the server (or other process) first: "
            + "; ".join(holders)
        )
    jobs = ("author_stats", "collab", "train") if train else ()

    db = data_dir / "steerfeed.duckdb"
    on_server = is_postgres_url(_store_url(data_dir))
    if db.exists() and not force and not on_server:
        typer.echo(f"{db} exists; reusing it (pass --force to rebuild)")
    else:
        try:
            report = build_demo(
                data_dir,
                n_users=users,
                n_clips=clips,
                n_events=events,
                seed=seed,
                progress=True,
                jobs=jobs,
            )
        except DemoError as exc:
            _fail(str(exc))
            return
        typer.echo(json.dumps(report, indent=2))
    store = _open_store(data_dir)
    key = store.create_api_key("service")
    # One key per role the README's examples need: the dashboard, analytics and /metrics take
    # an analyst key; keys, jobs, experiments and models an admin key.
    analyst_key = store.create_api_key("analyst")
    admin_key = store.create_api_key("admin")
    uid = int(store.scalar("SELECT min(user_id) FROM users"))
    store.close()
    base = f"http://127.0.0.1:{port}"
    typer.echo(
        "\nTry:\n"
        f"  curl -s -H 'Authorization: Bearer {key}' '{base}/v1/feed?user_id={uid}&limit=5'\n"
        f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        f'-d \'{{"events":[{{"event_id":"e1","user_id":{uid},"event_type":"like",'
        f'"item_id":1}}]}}\' {base}/v1/events\n'
        f"  open {base}/docs\n"
    )
    typer.echo(f"service key: {key}")
    typer.echo(f"analyst key: {analyst_key}   (dashboard, analytics, /metrics; read-only)")
    typer.echo(f"admin key:   {admin_key}   (keys, jobs, experiments, models)")
    if serve_api:
        serve(data_dir=data_dir, port=port, workers=workers)


@jobs_app.command("list")
def jobs_list() -> None:
    """List registered jobs."""
    from pipelines.serving.jobs import job_table
    from pipelines.serving.settings import SteerfeedSettings

    for spec in sorted(job_table(SteerfeedSettings()).values(), key=lambda s: s.name):
        every = f"every {spec.every_s}s" if spec.every_s else "on demand"
        typer.echo(f"{spec.name:<16} {every:<14} {spec.description}")


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="job name (see 'steerfeed jobs list')")],
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Run one job now and print its report as JSON.

    Beside a running server on this data folder, the server runs it
    (POST /v1/admin/jobs/NAME/run) and this waits for its report.
    """
    server = _live_server(data_dir)
    if server is not None:
        from urllib.parse import quote

        out = _call(server, "POST", f"/v1/admin/jobs/{quote(name, safe='')}/run")
    else:
        from pipelines.serving.jobs import JobContext, JobError, run_job

        eng = _engine(data_dir)
        try:
            report = run_job(name, JobContext(eng, {"progress": True}))
        except JobError as exc:
            _fail(str(exc))
            return
        finally:
            eng.close()
        out = {
            "name": report.name,
            "ok": report.ok,
            "seconds": round(report.seconds, 2),
            "counts": report.counts,
            "message": report.message,
        }
    typer.echo(json.dumps(out, default=str))
    if not out["ok"]:
        raise typer.Exit(1)


def _import_generic(kind: str, path: Path, data_dir: Path) -> None:
    from pipelines.importers import import_table
    from pipelines.importers.errors import ImporterError

    if not path.exists():
        _fail(f"no such file: {path}")
    store = _open_store(data_dir)
    try:
        rep = import_table(store, kind, path, progress=True)  # type: ignore[arg-type]
    except ImporterError as exc:
        _fail(str(exc))
        return
    finally:
        store.close()
    typer.echo(
        json.dumps(
            {
                "kind": rep.kind,
                "rows_read": rep.rows_read,
                "rows_inserted": rep.rows_inserted,
                "seconds": round(rep.seconds, 2),
            }
        )
    )


@import_app.command("clips")
def import_clips(path: Path, data_dir: DataDir = DEFAULT_DATA) -> None:
    """Import clips from Parquet or CSV (then run 'steerfeed jobs run index')."""
    _import_generic("clips", path, data_dir)


@import_app.command("users")
def import_users(path: Path, data_dir: DataDir = DEFAULT_DATA) -> None:
    """Import users from Parquet or CSV."""
    _import_generic("users", path, data_dir)


@import_app.command("follows")
def import_follows(path: Path, data_dir: DataDir = DEFAULT_DATA) -> None:
    """Import follows from Parquet or CSV."""
    _import_generic("follows", path, data_dir)


@import_app.command("events")
def import_events(path: Path, data_dir: DataDir = DEFAULT_DATA) -> None:
    """Import events from Parquet or CSV (idempotent by event_id)."""
    _import_generic("events", path, data_dir)


@import_app.command("lastfm")
def import_lastfm_cmd(
    data: Annotated[Path, typer.Option(help="folder of LastFM hetrec-2k parquet files")],
    split_file: Annotated[
        Path | None, typer.Option(help="split parquet; imports one split")
    ] = None,
    split: Annotated[str, typer.Option(help="which split to import")] = "train",
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Import LastFM: listens -> weighted view events, friendships -> mutual follows."""
    from pipelines.importers import import_lastfm

    if not data.exists():
        _fail(f"no such folder: {data}")
    store = _open_store(data_dir)
    try:
        counts = import_lastfm(store, data, split_file=split_file, split=split, progress=True)
    finally:
        store.close()
    typer.echo(json.dumps(counts))


@import_app.command("microlens")
def import_microlens_cmd(
    data: Annotated[Path, typer.Option(help="folder with microlens_items.parquet")],
    limit: Annotated[int | None, typer.Option(help="import at most this many clips")] = None,
    data_dir: DataDir = DEFAULT_DATA,
) -> None:
    """Import MicroLens titles as clip captions (categories are never imported)."""
    from pipelines.importers import import_microlens

    if not data.exists():
        _fail(f"no such folder: {data}")
    store = _open_store(data_dir)
    try:
        n = import_microlens(store, data, limit=limit, progress=True)
    finally:
        store.close()
    typer.echo(json.dumps({"clips": n}))
