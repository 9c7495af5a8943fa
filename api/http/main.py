"""The FastAPI app. ``create_app()`` needs no arguments: it reads settings from the environment
and opens the engine in its lifespan, so tools can read the OpenAPI schema without a store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.http import audit
from api.http.deps import enforce_auth, forget_cached_keys
from api.http.docs_ui import install_docs
from api.http.errors import document_common_errors
from api.http.gate import AuthGateMiddleware, BodyLimitMiddleware
from api.http.local_access import token_of_this_server, withdraw_server
from api.http.ratelimit import FailedAuthThrottle, RateLimiter, limits_for
from api.http.routes import (
    analytics,
    catalog,
    dashboard,
    data_controls,
    events,
    experiments,
    feed,
    generations,
    health,
    jobs,
    keys,
    me,
    media,
    metrics,
    models,
    parental,
    steering,
    transparency,
    users,
    wellbeing,
)
from api.http.schemas import TOO_LARGE_LISTS
from api.http.settings import ApiSettings
from api.http.telemetry import RequestTelemetryMiddleware
from pipelines.serving.engine import Engine
from pipelines.serving.follower import follow_store
from pipelines.serving.scheduler import start_scheduler
from pipelines.serving.settings import SteerfeedSettings
from pipelines.serving.telemetry.metrics import mark_worker_gone
from pipelines.serving.telemetry.tracing import shutdown_tracing
from ranking.data_controls import DataControlsError
from ranking.errors import BadCursorError
from storage.errors import DuplicateEntityError, UnknownEntityError
from storage.leases import release as release_leases
from storage.leases import worker_id

logger = logging.getLogger(__name__)

EngineFactory = Callable[[], Engine]

#: Every router of the app, in the order their routes are matched and documented.
ROUTERS = (
    health.router,
    metrics.router,
    feed.router,
    events.router,
    catalog.router,
    steering.router,
    data_controls.router,
    wellbeing.router,
    generations.router,
    analytics.router,
    dashboard.router,
    parental.router,
    users.router,
    experiments.router,
    models.router,
    keys.router,
    jobs.router,
    media.router,
    transparency.router,
    me.router,
)


def create_app(
    *,
    engine_factory: EngineFactory | None = None,
    api_settings: ApiSettings | None = None,
) -> FastAPI:
    """Build the app; the engine is opened on start-up (from ``STEERFEED_*`` settings)."""
    settings = api_settings or ApiSettings()
    factory = engine_factory or (lambda: Engine(SteerfeedSettings()))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = factory()
        app.state.engine = engine
        try:
            # Per-process buckets, or the deployment's shared ones (api/http/ratelimit.py).
            limiter, throttle, shared = limits_for(settings, engine.store)
        except Exception:
            engine.close()
            raise
        app.state.rate_limiter, app.state.auth_throttle = limiter, throttle
        # The CLI's credential beside a running server (None unless 'steerfeed serve' wrote one
        # for this process: api/http/local_access.py).
        data_dir = engine.settings.storage.data_dir
        app.state.local_token = token_of_this_server(data_dir)
        # On a shared store: apply what other workers write (pipelines/serving/follower.py),
        # and drop cached key lookups when a key changes anywhere (a revocation holds at once).
        engine.change_listeners.setdefault("api_keys", []).append(
            lambda _rows: forget_cached_keys()
        )
        follow_store(engine)
        # Moods and standing rules need the concept catalogue; build it before they ask.
        engine.steering.concepts.warm_async()
        scheduler = None
        holder = worker_id()
        if settings.scheduler:
            scheduler = start_scheduler(engine, holder=holder)
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
                # Another worker takes this one's periodic jobs at once, not after the lease.
                try:
                    release_leases(engine.store, holder)
                except Exception:
                    logger.warning("job leases not released at shutdown", exc_info=True)
            # In-flight requests have finished (uvicorn drains them first, within
            # --timeout-graceful-shutdown); close() waits for their side effects and flushes
            # the impressions they queued.
            engine.close()
            app.state.engine = None
            if shared is not None:
                shared.close()
            app.state.local_token = None
            # Here, not only in 'serve': after SIGTERM uvicorn re-raises the signal and the
            # process ends without unwinding serve's own cleanup.
            withdraw_server(data_dir)
            shutdown_tracing()
            mark_worker_gone()

    app = FastAPI(
        title="steerfeed",
        version="0.1.0",
        description="Feed ranking and steering for short AI-generated clips.",
        lifespan=lifespan,
        # Served by install_docs with local assets (FastAPI's own pages load them from a CDN).
        docs_url=None,
        redoc_url=None,
        # Every route needs a key within its rate limit, except public ones (api/http/auth.py);
        # the gate (api/http/gate.py) checks both before a body is read, this dependency backs
        # it up.
        dependencies=[Depends(enforce_auth)],
    )
    app.state.rate_limiter = RateLimiter(settings)
    app.state.auth_throttle = FailedAuthThrottle(settings)
    app.state.api_settings = settings
    for r in ROUTERS:
        app.include_router(r)
    install_docs(app)
    _install_error_handlers(app, settings)
    audit.install(app)
    # Outermost: the request id and the request's metrics cover the auth gate's answers too.
    app.add_middleware(RequestTelemetryMiddleware)
    _document_error_bodies(app)
    return app


def _document_error_bodies(app: FastAPI) -> None:
    """Make the schema say what error bodies really hold: routes that reject a value themselves
    answer 422 ``{"detail": "<what to fix>"}``, request validation answers a list of errors plus
    a ``message`` summary; and declare on every operation the errors that follow from how it is
    reached (:func:`api.http.errors.document_common_errors`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        comp = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
        if comp is not None:
            props = comp.setdefault("properties", {})
            listed = props.get("detail", {"type": "array"})
            props["detail"] = {"anyOf": [listed, {"type": "string"}], "title": "Detail"}
            props["message"] = {"type": "string", "title": "Message"}
        document_common_errors(schema)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI, settings: ApiSettings) -> None:
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    # Added after (so outside) the body limit: a request is authenticated before anything
    # reads its body (api/gate.py).
    app.add_middleware(AuthGateMiddleware, fastapi_app=app)

    @app.exception_handler(UnknownEntityError)
    async def _unknown(_: Request, exc: UnknownEntityError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(BadCursorError)
    async def _cursor(_: Request, exc: BadCursorError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(DataControlsError)
    async def _controls(_: Request, exc: DataControlsError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(DuplicateEntityError)
    async def _dup(_: Request, exc: DuplicateEntityError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        for e in exc.errors():
            limit = TOO_LARGE_LISTS.get(tuple(str(p) for p in e.get("loc", ())))
            if limit is not None and e.get("type") == "too_long":
                field = str(e["loc"][-1])
                detail = f"too many {field}: send at most {limit} per request"
                return JSONResponse({"detail": detail}, status_code=413)
        errors: list[dict[str, Any]] = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            msg = str(e.get("msg", "invalid"))
            # loc/msg/type keep the body to the documented HTTPValidationError schema.
            errors.append(
                {
                    "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
                    "msg": msg,
                    "type": str(e.get("type", "value_error")),
                    "field": loc,
                    "message": msg,
                }
            )
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return JSONResponse({"detail": errors, "message": summary}, status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "internal error; it was logged. Retry, or report the request id."},
            status_code=500,
        )
