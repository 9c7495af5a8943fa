"""Every operation of the OpenAPI schema declares the errors it can answer, each with a body
schema, and docs/api.md's error table says what :data:`api.http.errors.ERROR_MEANINGS` says.

Two checks, made from different sources than the code that adds the responses:

- by how an operation is reached (from the schema): a route that needs a key answers 401, 403
  and 429; one with parameters or a body answers 422; one with a body 413; every route 503
  while the engine starts;
- by what its endpoint raises (from the endpoint's source and the module helpers it calls):
  each ``HTTPException`` status, and 404 for ``require_user``, must be declared.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIRouter

from api.http.auth import PUBLIC_PATHS, PUBLIC_TAG
from api.http.errors import ERROR_MEANINGS
from api.http.main import ROUTERS, create_app

SCHEMA = create_app().openapi()
OPS = [
    (path, method, op)
    for path, ops in SCHEMA["paths"].items()
    for method, op in ops.items()
    if method in ("get", "post", "put", "patch", "delete")
]
#: Routes that answer HTML (the dashboard and its sign-in form): their errors are HTML pages.
HTML_ROUTES = {
    ("/dashboard", "get"),
    ("/dashboard/login", "post"),
    ("/me", "get"),
    ("/me/login", "post"),
}
# ReadinessOut: /readyz answers 503 with the same body as 200 (what is not ready), by design.
JSON_ERROR_SCHEMAS = {"ErrorOut", "HTTPValidationError", "RefusalOrInvalid", "ReadinessOut"}


def _op_id(item: tuple[str, str, Any]) -> str:
    return f"{item[1].upper()} {item[0]}"


@pytest.mark.parametrize("item", OPS, ids=[_op_id(o) for o in OPS])
def test_every_operation_declares_the_errors_its_reach_implies(
    item: tuple[str, str, dict[str, Any]],
) -> None:
    path, method, op = item
    declared = {int(c) for c in op["responses"] if c.isdigit() and int(c) >= 400}
    needed = {503}
    if path not in PUBLIC_PATHS and PUBLIC_TAG not in (op.get("tags") or []):
        needed |= {401, 403, 429}
    if op.get("parameters") or "requestBody" in op:
        needed.add(422)
    if "requestBody" in op:
        needed.add(413)
    assert needed <= declared, f"{method.upper()} {path} does not declare {needed - declared}"
    if (path, method) in HTML_ROUTES:
        return
    for code in declared:
        content = op["responses"][str(code)].get("content", {}).get("application/json", {})
        ref = str(content.get("schema", {}).get("$ref", ""))
        assert ref.rsplit("/", 1)[-1] in JSON_ERROR_SCHEMAS, (method, path, code, content)


def _routes(router: APIRouter) -> Iterator[APIRoute]:
    for route in router.routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.16x)
        if isinstance(inner, APIRouter):
            yield from _routes(inner)


_STATUS = (
    re.compile(r"HTTP_(\d{3})_"),
    re.compile(r"HTTPException\(\s*(\d{3})"),
    re.compile(r"status_code=(\d{3})"),
    re.compile(r"else (\d{3})\b"),
)


def _raised(fn: Callable[..., Any], seen: set[str]) -> set[int]:
    """Error statuses in ``fn``'s source and in the module helpers it calls."""
    if fn.__qualname__ in seen:
        return set()
    seen.add(fn.__qualname__)
    src = inspect.getsource(fn)
    codes = {int(c) for pattern in _STATUS for c in pattern.findall(src)}
    if "require_user(" in src:
        codes.add(404)  # Engine.require_user: UnknownEntityError, answered 404
    for name in set(re.findall(r"\b([a-z_]\w*)\(", src)):
        helper = fn.__globals__.get(name)
        if inspect.isfunction(helper) and helper.__module__.startswith("api.http.routes"):
            codes |= _raised(helper, seen)
    return {c for c in codes if 400 <= c < 500 or c == 503}


ROUTES = [r for router in ROUTERS for r in _routes(router)]


@pytest.mark.parametrize(
    "route", ROUTES, ids=[f"{sorted(r.methods or ())} {r.path}" for r in ROUTES]
)
def test_every_status_an_endpoint_raises_is_declared(route: APIRoute) -> None:
    raised = _raised(route.endpoint, set())
    for method in route.methods or ():
        op = SCHEMA["paths"][route.path][method.lower()]
        declared = {int(c) for c in op["responses"] if c.isdigit()}
        assert raised <= declared, f"{method} {route.path} raises {raised - declared} undeclared"


def test_the_docs_error_table_is_the_one_the_schema_uses() -> None:
    text = (Path(__file__).parents[3] / "docs" / "api.md").read_text(encoding="utf-8")
    for code, meaning in ERROR_MEANINGS.items():
        assert f"| {code} | {meaning} |" in text, f"docs/api.md: row {code} differs"
