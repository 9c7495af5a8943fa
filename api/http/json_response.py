"""A JSON response written by orjson, for routes whose body is already a typed model.

FastAPI's default path for a route with ``response_model`` validates the returned value against
the model again (on a worker thread for a sync route) and then serialises it. The feed page is
built once, typed, by the engine; this response dumps it as it is (``model_dump``, no
validation) and writes the bytes with orjson. The route keeps ``response_model`` so the OpenAPI
schema still documents the body.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class OrjsonResponse(JSONResponse):
    """``application/json`` written by orjson; a pydantic model is dumped, not re-validated.

    Non-finite floats become ``null``, naive datetimes are written without an offset and UTC
    ones with ``Z``, as pydantic's own JSON does, so the body is the one FastAPI's default path
    would send (tests/api/http/test_feed_json.py compares them).
    """

    def render(self, content: Any) -> bytes:
        """The body: ``content`` (a model, or plain JSON-able data) as JSON bytes."""
        if isinstance(content, BaseModel):
            content = content.model_dump()
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)
