"""Error responses: the body every error has (:class:`~api.http.schemas.ErrorOut`), what each
status means (:data:`ERROR_MEANINGS`, the table in docs/api.md), and the OpenAPI ``responses``
that declare them.

A route declares the errors particular to it with ``responses=errors(404, 409)``; the codes
that follow from how a route is reached are added to every operation of the schema by
:func:`document_common_errors`:

- 503 on every route (the engine is still starting);
- 401, 403 and 429 on every route that needs a key (the app-wide key check and rate limit);
- 422 on every route with parameters or a body (FastAPI adds it; every route has the
  ``Authorization`` header parameter, whose length is bounded);
- 400 (an invalid ``Content-Length``) and 413 (a body over the limit) on routes with a body;
- 404 on routes that name a user (``user_id``/``child_id``): unknown, or being erased.

``tests/api/http/test_error_responses.py`` checks that every operation declares these and
every status its endpoint raises, so the schema, this table and docs/api.md agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.http.auth import PUBLIC_PATHS, PUBLIC_TAG
from api.http.schemas import ErrorOut

#: What each error status means, for every route (docs/api.md prints this table).
ERROR_MEANINGS: dict[int, str] = {
    400: "a tampered or malformed cursor; an invalid Content-Length; an erasure confirmation "
    "token that is invalid, expired or another key's",
    401: "no API key, or an unknown or revoked one, or a refused local token (header "
    "WWW-Authenticate: Bearer)",
    403: "the key's role, or the user it acts for, may not do this (the message names the roles "
    "needed or the user)",
    404: "unknown user, clip, survey, job, experiment, report, rights holder, media or API key, "
    "or a user being erased",
    409: "already exists or already done: a duplicate clip or user, a survey already answered, "
    "an experiment that exists (without replace), nothing to roll back to",
    410: "generated media withdrawn (cameo consent revoked, rights-holder takedown)",
    413: "a body over STEERFEED_API_MAX_BODY_BYTES, more than 1,000 events in a batch, or a mood "
    "prompt over its length",
    422: "invalid input: request validation lists every problem (detail, with loc/msg/type/"
    "field/message) and a one-line summary (message); a route's own check answers "
    '{"detail": "<what to fix>"}',
    429: "over the key's rate limit, too many failed authentications from this address, or too "
    "many pending generation jobs; Retry-After says when to retry",
    503: "the engine is still starting, or (erasure) the user's in-flight work did not end in "
    "time; retry",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}},
    },
    429: {
        "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}},
    },
}
#: Path or query parameters that name a user (a request for an unknown or erased one is a 404).
USER_PARAMS = ("user_id", "child_id")
ERROR_REF = "#/components/schemas/ErrorOut"


def errors(*codes: int, why: Mapping[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses a route answers (body :class:`ErrorOut`).

    ``why`` gives a route's own description of a status (default: :data:`ERROR_MEANINGS`).
    """
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "model": ErrorOut,
            "description": (why or {}).get(code) or ERROR_MEANINGS[code],
        }
        if code in _HEADERS:
            entry["headers"] = _HEADERS[code]
        out[code] = entry
    return out


def common_codes(path: str, op: Mapping[str, Any]) -> set[int]:
    """The error statuses an operation answers because of how it is reached (see the module
    docstring), from its OpenAPI operation object."""
    codes = {503}
    public = path in PUBLIC_PATHS or PUBLIC_TAG in (op.get("tags") or [])
    if not public:
        codes |= {401, 403, 429}
    params = op.get("parameters") or []
    if params or "requestBody" in op:
        codes.add(422)
    if "requestBody" in op:
        codes |= {400, 413}
    if any(p.get("name") in USER_PARAMS and p.get("in") in ("path", "query") for p in params):
        codes.add(404)
    return codes


def document_common_errors(schema: dict[str, Any]) -> None:
    """Add the :func:`common_codes` responses an operation does not declare itself (in place)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("ErrorOut", ErrorOut.model_json_schema(ref_template=ERROR_REF))
    for path, ops in schema.get("paths", {}).items():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            for code in sorted(common_codes(path, op)):
                if str(code) in responses:
                    continue
                entry: dict[str, Any] = {
                    "description": ERROR_MEANINGS[code],
                    "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
                }
                if code in _HEADERS:
                    entry["headers"] = _HEADERS[code]
                responses[str(code)] = entry
