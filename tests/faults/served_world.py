"""A world a fault test serves: its data folder and the store its server writes to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage.factory import open_store
from storage.store import Store


@dataclass(frozen=True)
class ServedWorld:
    """A data folder to serve and the store its server writes to."""

    data_dir: Path
    db_url: str  # a DuckDB file's path or postgresql://...

    @property
    def server_env(self) -> dict[str, str]:
        """The environment a server started on ``data_dir`` needs to find the store."""
        return {"STEERFEED_DB_URL": self.db_url}

    def open_store(self, *, read_only: bool = False) -> Store:
        """Open the store (on DuckDB, only while no server holds it)."""
        return open_store(self.db_url, read_only=read_only)
