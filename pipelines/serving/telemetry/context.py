"""The request id of the work in progress (a request, or a job run), for logs and traces.

A context variable: set by the HTTP middleware for a request and by the job runner for a run;
it follows the work into the threads a page uses (the pipeline copies the context into its
pools), so every log line can carry it.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token

_REQUEST_ID: ContextVar[str | None] = ContextVar("steerfeed_request_id", default=None)

#: What a caller's ``X-Request-ID`` may look like to be kept (else a new id is made).
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str | None:
    """The request id of the work in progress, or None outside a request or job."""
    return _REQUEST_ID.get()


def new_request_id() -> str:
    """A fresh request id (32 hex digits)."""
    return uuid.uuid4().hex


def bind_request_id(request_id: str) -> Token[str | None]:
    """Make ``request_id`` current; pass the token to :func:`reset_request_id` when done."""
    return _REQUEST_ID.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    """Restore the request id that was current before :func:`bind_request_id`."""
    _REQUEST_ID.reset(token)
