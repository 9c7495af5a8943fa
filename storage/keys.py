"""Secrets the engine keeps outside the database: a key file per purpose, or a value from the
environment.

A key given in the environment (from a secret manager) is never written anywhere; otherwise a
random key is created once in a file readable by its owner only, beside the database but not in
it, so a copy of the database alone does not carry it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def key_from_file(path: Path) -> bytes:
    """The key in ``path``, created (32 random bytes, mode 0600) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def derive(key: bytes, purpose: str) -> bytes:
    """A sub-key for one purpose, so one secret never signs two kinds of thing."""
    return hmac.new(key, f"steerfeed:{purpose}".encode(), hashlib.sha256).digest()
