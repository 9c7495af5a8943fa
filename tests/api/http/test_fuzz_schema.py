"""Schemathesis against the OpenAPI schema of ``create_app()``: no 5xx, responses conform to
the schema. Both runs are marked slow (schemathesis also runs its coverage phase on each of the
~50 operations, minutes on this machine): ``pytest -m slow tests/api/http/test_fuzz_schema.py``.
The fast suite covers hostile input in ``test_bad_input.py``.

The schema is read from an app built at import time (``create_app`` opens no store until its
lifespan starts). Schemathesis starts that lifespan itself on the first call and keeps it for
the process, so the ``admin_headers`` fixture prepares one private copy of the tiny world (and
an admin key in it) before the first call, shared by both tests here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from api.http.main import create_app
from api.http.settings import ApiSettings
from tests.conftest import copy_world

_WORLD: dict[str, Path] = {}


def _open_engine() -> Any:
    from pipelines.serving.engine import open_engine

    return open_engine(_WORLD["dir"])


APP = create_app(
    engine_factory=_open_engine,
    api_settings=ApiSettings(
        scheduler=False, rate_limit_per_s=0, rate_limit_roles={}, auth_fail_per_s=0
    ),
)
# /readyz answers 503 by design while the concept catalogue builds (tests/api/http/
# test_probes_api.py covers it); the fuzzer's "no server error" check would count that.
schema = schemathesis.openapi.from_dict(APP.openapi()).exclude(path="/readyz")
schema.app = APP  # calls go to the app in process (ASGI), started on first use
CHECKS = [not_a_server_error, response_schema_conformance]


_KEY: dict[str, str] = {}
#: Cases sent and cases failing a check, printed at the end with STEERFEED_PROBE_PRINT=1.
_TALLY = {"cases": 0, "failed": 0}


@pytest.fixture(scope="module", autouse=True)
def _print_tally() -> Iterator[None]:
    yield
    if os.environ.get("STEERFEED_PROBE_PRINT"):
        print(f"schemathesis: {_TALLY['cases']} cases, {_TALLY['failed']} failing a check")


def _call(case: Any, headers: dict[str, str]) -> None:
    _TALLY["cases"] += 1
    try:
        case.call_and_validate(headers=headers, checks=CHECKS)
    except BaseException:
        _TALLY["failed"] += 1
        raise


@pytest.fixture()
def admin_headers(tiny_world_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private world with an admin key, which reaches every route (rate limits are off: the
    fuzzer is fast on purpose)."""

    from storage.store import Store

    if "key" not in _KEY:
        world = tmp_path_factory.mktemp("fuzz") / "world"
        copy_world(tiny_world_dir, world)
        store = Store(world / "steerfeed.duckdb")
        _KEY["key"] = store.create_api_key("admin")
        store.close()
        _WORLD["dir"] = world
    return {"Authorization": f"Bearer {_KEY['key']}"}


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_conforming_responses(
    case: Any, admin_headers: dict[str, str]
) -> None:
    _call(case, admin_headers)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_long_run(case: Any, admin_headers: dict[str, str]) -> None:
    _call(case, admin_headers)
