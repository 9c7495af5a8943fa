"""The request id, HTTP metrics and the request's span, for every request.

:class:`RequestTelemetryMiddleware` is the outermost middleware: it takes the caller's
``X-Request-ID`` (when it looks like an id) or makes one, makes it current for the request
(every log line and the page's span carry it) and sends it back in the response's
``X-Request-ID``; it counts the request by route template and status and times it.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.serving.telemetry import bind_request_id, new_request_id, reset_request_id
from pipelines.serving.telemetry.context import VALID_REQUEST_ID
from pipelines.serving.telemetry.metrics import HTTP_IN_FLIGHT, HTTP_REQUESTS, HTTP_SECONDS

REQUEST_ID_HEADER = "x-request-id"

# Label children looked up once per (method, route[, status]): labels() takes a lock and
# builds a tuple on every request. As many entries as the metrics have series.
_REQUESTS: dict[tuple[str, str, str], Any] = {}
_SECONDS: dict[tuple[str, str], Any] = {}


class RequestTelemetryMiddleware:
    """Request id, metrics and a server span around every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = given if given and VALID_REQUEST_ID.match(given) else new_request_id()
        token = bind_request_id(request_id)
        status = 500  # what a request that raises past every handler is answered
        header = (REQUEST_ID_HEADER.encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        tracer = _tracer(scope)
        method = scope["method"]
        t0 = time.perf_counter()
        HTTP_IN_FLIGHT.inc()
        try:
            if tracer is None:
                await self.app(scope, receive, send_with_id)
            else:
                with tracer.start_as_current_span(
                    f"{method} {scope['path']}", kind=SpanKind.SERVER
                ) as span:
                    # Attributes only on a sampled request (an unsampled span drops them).
                    recording = span.is_recording()
                    if recording:
                        span.set_attributes(
                            {"http.request.method": method, "steerfeed.request_id": request_id}
                        )
                    try:
                        await self.app(scope, receive, send_with_id)
                    finally:
                        if recording:
                            route = _route(scope)
                            span.update_name(f"{method} {route}")
                            span.set_attributes(
                                {"http.route": route, "http.response.status_code": status}
                            )
                            if status >= 500:
                                span.set_status(Status(StatusCode.ERROR))
        finally:
            HTTP_IN_FLIGHT.dec()
            route = _route(scope)
            key = (method, route, str(status))
            requests = _REQUESTS.get(key)
            if requests is None:
                requests = _REQUESTS[key] = HTTP_REQUESTS.labels(*key)
            requests.inc()
            seconds = _SECONDS.get(key[:2])
            if seconds is None:
                seconds = _SECONDS[key[:2]] = HTTP_SECONDS.labels(method, route)
            seconds.observe(time.perf_counter() - t0)
            reset_request_id(token)


def _route(scope: Scope) -> str:
    """The matched route's template (``/v1/users/{user_id}/mood``), never the raw path: raw
    paths would make one time series per user."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def _tracer(scope: Scope) -> trace.Tracer | None:
    app = scope.get("app")
    engine = getattr(getattr(app, "state", None), "engine", None)
    return getattr(getattr(engine, "telemetry", None), "tracer", None)
