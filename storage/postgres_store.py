"""The PostgreSQL store: the same public API as the DuckDB :class:`~storage.store.Store`, over a
server that several processes and machines share.

- ``write()`` and ``cursor()`` yield a :class:`PostgresCursor`, which offers the part of
  DuckDB's cursor the callers use (``execute``, ``fetchall``, ``fetchone``, ``register``,
  ``unregister``, ``close``), each statement translated by :mod:`storage.postgres_sql`.
  As in DuckDB, ``fetchall()`` after an ``INSERT``, ``UPDATE`` or ``DELETE`` without
  ``RETURNING`` gives ``[(rows affected,)]``.
- ``query()`` returns a polars frame with DuckDB's column types (``BIGINT`` -> Int64,
  ``TIMESTAMP`` -> Datetime("us"), ``VARCHAR[]`` -> List(String), ...).
- Bulk inserts (``add_users``, ``add_clips``, ``append_events``, ``put_vectors``, a registered
  frame) go through ``COPY`` into a temporary table, then one ``INSERT ... SELECT``.
- The event log is partitioned by month of ``ts`` (migration 9);
  :meth:`PostgresStore.append_new_events` creates the months a batch needs and keeps
  ``(user_id, event_id)`` idempotency through the ``event_keys`` table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import Any, cast

import duckdb
import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
from psycopg import errors as pg_errors
from psycopg.types.numeric import FloatDumper, Int8Dumper
from psycopg_pool import ConnectionPool

from storage.errors import DuplicateEntityError, StorageError
from storage.log_follow import EVENT_APPEND_LOCK
from storage.migrations import MIGRATIONS, Migration
from storage.postgres_sql import TableInfo, bind_params, translate
from storage.store import EVENT_COLUMNS, Store, sql_identifier

logger = logging.getLogger(__name__)

# numpy scalars as parameters (DuckDB takes them; callers pass them).
for _np_int in (np.int64, np.int32, np.int16, np.int8, np.uint32, np.uint16, np.uint8):
    psycopg.adapters.register_dumper(_np_int, Int8Dumper)
for _np_float in (np.float64, np.float32):
    psycopg.adapters.register_dumper(_np_float, FloatDumper)

# PostgreSQL type oids -> the polars type DuckDB gives the same column.
_POLARS_BY_OID: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    25: pl.String(),
    1043: pl.String(),
    18: pl.String(),
    19: pl.String(),
    700: pl.Float32(),
    701: pl.Float64(),
    1700: pl.Float64(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
    1082: pl.Date(),
    114: pl.String(),
    3802: pl.String(),
    1000: pl.List(pl.Boolean()),
    1005: pl.List(pl.Int16()),
    1007: pl.List(pl.Int32()),
    1016: pl.List(pl.Int64()),
    1009: pl.List(pl.String()),
    1015: pl.List(pl.String()),
    1021: pl.List(pl.Float32()),
    1022: pl.List(pl.Float64()),
}

# polars type -> PostgreSQL type of a registered frame's temporary table.
_PG_BY_POLARS: dict[type[pl.DataType], str] = {
    pl.Boolean: "BOOLEAN",
    pl.Int8: "SMALLINT",
    pl.Int16: "SMALLINT",
    pl.Int32: "INTEGER",
    pl.Int64: "BIGINT",
    pl.UInt8: "SMALLINT",
    pl.UInt16: "INTEGER",
    pl.UInt32: "BIGINT",
    pl.UInt64: "NUMERIC(20)",
    pl.Float32: "REAL",
    pl.Float64: "DOUBLE PRECISION",
    pl.String: "TEXT",
    pl.Categorical: "TEXT",
    pl.Datetime: "TIMESTAMP",
    pl.Date: "DATE",
    pl.Null: "TEXT",
}


def _pg_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List | pl.Array):
        return _pg_type(dtype.inner) + "[]"  # type: ignore[arg-type]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return "TIMESTAMPTZ"
    for kind, name in _PG_BY_POLARS.items():
        if isinstance(dtype, kind):
            return name
    msg = f"no PostgreSQL type for a frame column of type {dtype}"
    raise StorageError(msg)


def _as_polars(frame: Any) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pa.Table | pa.RecordBatch):
        return cast(pl.DataFrame, pl.from_arrow(frame))
    msg = f"register() takes a polars frame or an Arrow table, not {type(frame).__name__}"
    raise StorageError(msg)


def _translated_error(exc: psycopg.Error) -> StorageError:
    if isinstance(exc, pg_errors.UniqueViolation):
        return DuplicateEntityError(str(exc).strip())
    return StorageError(str(exc).strip())


class PostgresCursor:
    """The subset of DuckDB's cursor API the callers use, on one PostgreSQL connection."""

    def __init__(
        self,
        store: PostgresStore,
        conn: psycopg.Connection[Any],
        release: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._conn = conn
        self._cur = conn.cursor()
        self._release = release
        self._registered: dict[str, list[str]] = {}
        self._rows: list[tuple[Any, ...]] | None = None

    # -- statements -----------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] | None = None) -> PostgresCursor:
        """Translate and run one statement (``?`` placeholders); return the cursor."""
        pg_sql = translate(sql, registered=self._registered, table_info=self._store.table_info)
        self._cur.execute(pg_sql.encode(), bind_params(pg_sql, params))
        if self._cur.description is None:
            status = (self._cur.statusmessage or "").split(" ", 1)[0]
            n = self._cur.rowcount
            self._rows = [(n,)] if status in ("INSERT", "UPDATE", "DELETE", "MERGE") else []
        else:
            self._rows = None
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row of the last statement (``[(count,)]`` after a plain write)."""
        if self._rows is not None:
            rows, self._rows = self._rows, []
            return rows
        return list(self._cur.fetchall())

    def fetchone(self) -> tuple[Any, ...] | None:
        """The next row of the last statement, or ``None``."""
        if self._rows is not None:
            return self._rows.pop(0) if self._rows else None
        return cast(tuple[Any, ...] | None, self._cur.fetchone())

    @property
    def description(self) -> Any:
        """The last statement's result columns (DB-API)."""
        return self._cur.description

    def frame(self) -> pl.DataFrame:
        """The last statement's rows as a polars frame with DuckDB's column types."""
        return _frame(self._cur.description or [], self._cur.fetchall())

    # -- frames ---------------------------------------------------------------------------
    def register(self, name: str, frame: Any) -> PostgresCursor:
        """Make a polars frame (or Arrow table) readable as table ``name``: a temporary table
        filled by ``COPY``, dropped by :meth:`unregister` or :meth:`close`."""
        df = _as_polars(frame)
        name = sql_identifier(name)
        if name in self._registered:
            self.unregister(name)
        cols = ", ".join(f'"{sql_identifier(c)}" {_pg_type(t)}' for c, t in df.schema.items())
        self._cur.execute(f"DROP TABLE IF EXISTS pg_temp.{name}".encode())
        self._cur.execute(f"CREATE TEMP TABLE {name} ({cols})".encode())
        copy_frame(self._cur, name, df)
        self._registered[name] = list(df.columns)
        return self

    def unregister(self, name: str) -> PostgresCursor:
        """Drop a registered frame's table."""
        if self._registered.pop(name, None) is not None:
            self._cur.execute(f"DROP TABLE IF EXISTS pg_temp.{sql_identifier(name)}".encode())
        return self

    def drop_registered(self) -> None:
        """Drop every registered frame's table (the connection goes back to a pool)."""
        for name in list(self._registered):
            self.unregister(name)

    def close(self) -> None:
        """Close the cursor and hand its connection back."""
        with suppress(psycopg.Error):
            self.drop_registered()
        self._registered.clear()
        with suppress(psycopg.Error):
            self._cur.close()
        release, self._release = self._release, None
        if release is not None:
            release()

    def __enter__(self) -> PostgresCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a cursor dropped without close() must not keep its connection
        if self.__dict__.get("_release") is not None:
            with suppress(Exception):
                self.close()

    def __getattr__(self, name: str) -> Any:
        msg = (
            f"the PostgreSQL store's cursor has no {name!r} (it offers execute, fetchall, "
            "fetchone, register, unregister, close); write the caller in SQL both dialects accept"
        )
        raise StorageError(msg)


def _frame(desc: Sequence[Any], rows: list[Any]) -> pl.DataFrame:
    """Rows as a polars frame typed from the result's columns (DuckDB's types)."""
    names = _unique_names([d.name for d in desc])
    schema = {
        n: _POLARS_BY_OID.get(d.type_code, pl.Object()) for n, d in zip(names, desc, strict=True)
    }
    return pl.DataFrame(rows, schema=schema, orient="row", strict=False)


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def copy_frame(cur: psycopg.Cursor[Any], table: str, df: pl.DataFrame) -> None:
    """``COPY`` a polars frame into ``table`` (columns by name).

    A frame of scalar columns goes as CSV written by polars (about 5x faster than row by row:
    no Python object per value); one with list columns goes row by row.
    """
    if df.width == 0:
        return
    cols = ", ".join(f'"{c}"' for c in df.columns)
    nested = any(isinstance(t, pl.List | pl.Array | pl.Struct | pl.Object) for t in df.dtypes)
    if not nested:
        # polars writes a null as an empty field and an empty string as "": CSV COPY's reading
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)".encode()) as copy:
            for off in range(0, df.height, 100_000):
                copy.write(df.slice(off, 100_000).write_csv(include_header=False).encode())
        return
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN".encode()) as copy:
        for row in df.iter_rows():
            copy.write_row(row)


def _month_start(ts: datetime) -> datetime:
    return datetime(ts.year, ts.month, 1)


def _next_month(ts: datetime) -> datetime:
    return datetime(ts.year + ts.month // 12, ts.month % 12 + 1, 1)


class PostgresStore(Store):
    """The store on a PostgreSQL server (``postgresql://user@host:port/db``).

    The public API is :class:`~storage.store.Store`'s; what differs is said in the module
    docstring. DuckDB's file operations (``checkpoint``, ``release_memory``,
    ``rewrite_file``) have nothing to do here: PostgreSQL's autovacuum reclaims deleted rows.

    Parameters
    ----------
    url
        A libpq connection URL.
    read_only
        Run every transaction read-only and skip the migrations.
    max_connections
        The pool's size: cursors open at once (one per serving thread or job).
    origin
        The writer's number in the event log and the change feed (a serving worker's; ``None``
        for other writers).
    """

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        max_connections: int = 16,
        origin: int | None = None,
    ) -> None:
        self.url = url
        self.origin = origin
        self.path = None
        self.read_only = read_only
        self.event_filter: Callable[[pl.DataFrame], pl.DataFrame] | None = None
        self._table_info: dict[str, TableInfo] = {}
        self._partitions: set[datetime] = set()
        self._lock = threading.Lock()
        options = "-c timezone=UTC" + (" -c default_transaction_read_only=on" if read_only else "")
        if origin is not None:
            # What this process writes to the event log and the change feed carries its number
            # (migration 17), so its follower skips what it applied when it wrote it.
            options += f" -c steerfeed.origin={int(origin)}"
        try:
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                url,
                min_size=1,
                max_size=max_connections,
                kwargs={"autocommit": True, "options": options},
                open=True,
                name="steerfeed-store",
            )
            self._pool.wait(timeout=10)
        except Exception as exc:  # pool errors wrap psycopg's
            with suppress(Exception):
                self._pool.close()
            msg = f"cannot connect to PostgreSQL at {_redacted(url)}: {exc}"
            raise StorageError(msg) from exc
        if not read_only:
            self.migrate()

    # -- plumbing -------------------------------------------------------------------------
    def migrate(self, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
        """Apply every migration this database has not recorded; return the versions applied.

        An advisory lock keeps two processes opening the store at once from applying one twice.
        """
        applied: list[int] = []
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(7306524)")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                    "name VARCHAR, applied_at TIMESTAMP DEFAULT (now() AT TIME ZONE 'UTC'))"
                )
                done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_version")}
                for m in sorted(migrations, key=lambda m: m.version):
                    if m.version in done:
                        continue
                    with conn.transaction():
                        for stmt in m.postgres_statements():
                            conn.execute(stmt.encode())
                        conn.execute(
                            "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                            [m.version, m.name],
                        )
                    applied.append(m.version)
                    logger.info("applied migration %d (%s) on PostgreSQL", m.version, m.name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(7306524)")
        self._table_info.clear()
        return applied

    def table_info(self, table: str) -> TableInfo:
        """Columns (with their types) and primary key of a table, read once."""
        info = self._table_info.get(table)
        if info is not None:
            return info
        with self._pool.connection() as conn:
            cols = conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY a.attnum",
                [table],
            ).fetchall()
            key = conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) "
                "AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                [table],
            ).fetchall()
        if not cols:
            msg = f"no table {table!r}"
            raise StorageError(msg)
        info = TableInfo({str(n): str(t) for n, t in cols}, tuple(str(r[0]) for r in key))
        self._table_info[table] = info
        return info

    def table_columns(self) -> list[tuple[str, str, str]]:
        """``(table, column, type)`` of every base table (partitions are their parent), types
        spelled as DuckDB does (``BIGINT``, ``BIGINT[]``, ``VARCHAR``)."""
        rows = self.cursor()
        try:
            got = rows.execute(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = c.oid "
                "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') "
                "AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped "
                "ORDER BY c.relname, a.attnum"
            ).fetchall()
        finally:
            rows.close()
        return [(str(t), str(c), _duckdb_type_name(str(d))) for t, c, d in got]

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on a pooled connection (autocommit); close it to hand the connection back."""
        conn = self._pool.getconn()
        cur = PostgresCursor(self, conn, release=lambda: self._pool.putconn(conn))
        return cast(duckdb.DuckDBPyConnection, cur)

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Run writes in one transaction; commit before returning."""
        with self._pool.connection() as conn:
            cur = PostgresCursor(self, conn)
            try:
                with conn.transaction():
                    yield cast(duckdb.DuckDBPyConnection, cur)
                    cur.drop_registered()
            finally:
                cur.close()

    @contextmanager
    def short_write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A small write on the request path: on PostgreSQL a transaction like any other
        (there is no file-wide write lock to jump)."""
        with self.write() as cur:
            yield cur

    def query(self, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame (DuckDB's column types)."""
        with self._pool.connection() as conn:
            cur = PostgresCursor(self, conn)
            try:
                cur.execute(sql, params)
                return cur.frame()
            finally:
                cur.close()

    def query_batches(
        self, sql: str, params: list[Any] | None = None, *, batch_rows: int = 1_000_000
    ) -> Iterator[pl.DataFrame]:
        """Run a read query and yield polars frames of up to ``batch_rows`` rows, read through
        a server-side cursor (the result is never held whole in this process)."""
        pg_sql = translate(sql, table_info=self.table_info)
        with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor(name="steerfeed_batches") as cur,
        ):
            cur.execute(pg_sql.encode(), bind_params(pg_sql, params))
            while True:
                rows = cur.fetchmany(batch_rows)
                if not rows:
                    break
                yield _frame(cur.description or [], rows)

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """Run a query returning one value."""
        with self._pool.connection() as conn:
            cur = PostgresCursor(self, conn)
            try:
                row = cur.execute(sql, params).fetchone()
            finally:
                cur.close()
        return row[0] if row else None

    def release_memory(self) -> None:
        """Nothing to release: the server holds the cache."""

    def checkpoint(self) -> None:
        """Nothing to fold: the server checkpoints on its own."""

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()

    def rewrite_file(self, *, wait_s: float = 10.0) -> float:
        """No file to rewrite: deleted rows' space is reclaimed by autovacuum (``VACUUM FULL``
        rewrites a table when bytes must go at once)."""
        return 0.0

    # -- bulk inserts ---------------------------------------------------------------------
    def _insert_rows(
        self,
        table: str,
        df: pl.DataFrame,
        *,
        or_ignore: bool = False,
        replace: bool = False,
        returning: str = "",
    ) -> list[Any]:
        """``COPY`` the frame into a temporary table, then one ``INSERT ... SELECT`` (with
        ``ON CONFLICT`` for ``or_ignore`` / ``replace``); return the count or ``returning``
        rows, as the DuckDB store does."""
        if df.height == 0:
            return []
        verb = "INSERT OR IGNORE" if or_ignore else ("INSERT OR REPLACE" if replace else "INSERT")
        table = sql_identifier(table)
        tail = ""
        if returning:
            tail = " RETURNING " + ", ".join(
                sql_identifier(c.strip()) for c in returning.split(",")
            )
        try:
            with self.write() as cur:
                cur.register("_incoming", df)
                return cur.execute(
                    f"{verb} INTO {table} BY NAME SELECT * FROM _incoming{tail}"  # noqa: S608
                ).fetchall()
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc

    def append_new_events(self, df: pl.DataFrame) -> list[tuple[int, str]]:
        """Append events idempotently; return the ``(user_id, event_id)`` keys that were new.

        In one transaction: the batch is copied into a temporary table; its keys go into
        ``event_keys`` (``ON CONFLICT DO NOTHING RETURNING``), and only the rows whose key was
        new go into the partitioned ``events`` (the first of a key repeated in the batch; a
        batch without repeats skips that pass).
        The months the batch touches get their partitions first.
        """
        if self.event_filter is not None:
            df = self.event_filter(df)
        if df.height == 0:
            return []
        self._ensure_partitions(df)
        cols = [c for c in df.columns if c in EVENT_COLUMNS]
        unknown = [c for c in df.columns if c not in EVENT_COLUMNS]
        if unknown:
            msg = f"events: no column(s) {', '.join(unknown)}"
            raise StorageError(msg)
        types = self.table_info("events").columns
        col_list = ", ".join(f'"{c}"' for c in cols)
        select = ", ".join(f'i."{c}"::{types[c]}' for c in cols)
        keys = list(zip(df["user_id"].to_list(), df["event_id"].to_list(), strict=True))
        # A batch without repeats needs no de-duplication pass (a sort of the whole batch).
        repeats = len(set(keys)) != len(keys)
        source = (
            "(SELECT DISTINCT ON (user_id, event_id) * FROM _incoming_events"
            " ORDER BY user_id, event_id, _row)"
            if repeats
            else "_incoming_events"
        )
        try:
            with self.write() as cur:
                # the batch's hash join (and sort) stays in memory (the default 4MB spills)
                cur.execute("SET LOCAL work_mem = '64MB'")
                cur.register("_incoming_events", df.with_row_index("_row") if repeats else df)
                # Number and commit appends one at a time, so followers of the log see rows in
                # number order (storage/log_follow.py); the batch is already copied in.
                cur.execute("SELECT pg_advisory_xact_lock(?)", [EVENT_APPEND_LOCK])
                rows = cur.execute(
                    "WITH new_keys AS ("  # noqa: S608
                    " INSERT INTO event_keys (event_id, user_id)"
                    f" SELECT {'DISTINCT ' if repeats else ''}event_id, user_id"
                    " FROM _incoming_events"
                    " ON CONFLICT DO NOTHING RETURNING event_id, user_id)"
                    f" INSERT INTO events ({col_list}) SELECT {select} FROM {source} i"
                    " JOIN new_keys k ON k.event_id = i.event_id AND k.user_id = i.user_id"
                    " RETURNING user_id, event_id"
                ).fetchall()
        except psycopg.Error as exc:
            raise _translated_error(exc) from exc
        new = {(int(r[0]), str(r[1])) for r in rows}
        # In batch order, as the DuckDB store returns them.
        out: list[tuple[int, str]] = []
        for key in keys:
            if key in new:
                out.append(key)
                new.discard(key)
        return out

    def _ensure_partitions(self, df: pl.DataFrame) -> None:
        """Create the monthly partitions of ``events`` the batch's ``ts`` fall in (each in its
        own transaction, so concurrent writers race harmlessly)."""
        if "ts" not in df.columns:
            return
        ts = df.get_column("ts").drop_nulls()
        if ts.len() == 0:
            return
        lo, hi = cast(datetime, ts.min()), cast(datetime, ts.max())
        month = _month_start(lo)
        needed = []
        while month <= hi:
            if month not in self._partitions:
                needed.append(month)
            month = _next_month(month)
        if len(needed) > 240:  # twenty years in one batch: leave them to the default partition
            logger.warning("event batch spans %d months; not partitioning it", len(needed))
            return
        for start in needed:
            self.create_event_partition(start)

    def create_event_partition(self, month: datetime) -> str:
        """Create the partition of ``events`` for the month of ``month`` if missing; return its
        name. Rows of that month already in the default partition are moved into it."""
        start = _month_start(month)
        end = _next_month(start)
        name = f"events_{start:%Y_%m}"
        with self._lock, self._pool.connection() as conn:
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()
            if not (exists and exists[0]):
                try:
                    with conn.transaction():
                        # Rows of the month that fell into the default partition would block
                        # the new one: detach them, create it, put them back.
                        conn.execute("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE")
                        if not conn.execute(  # a racing creator may have won while we waited
                            "SELECT to_regclass(%s) IS NOT NULL", [name]
                        ).fetchone()[0]:  # type: ignore[index]
                            conn.execute(
                                "CREATE TEMP TABLE _moved ON COMMIT DROP AS SELECT * FROM "
                                "events_default WHERE ts >= %s AND ts < %s",
                                [start, end],
                            )
                            conn.execute(
                                "DELETE FROM events_default WHERE ts >= %s AND ts < %s",
                                [start, end],
                            )
                            conn.execute(
                                f"CREATE TABLE {name} PARTITION OF events FOR VALUES "
                                f"FROM ('{start:%Y-%m-%d}') TO ('{end:%Y-%m-%d}')".encode()
                            )
                            conn.execute("INSERT INTO events SELECT * FROM _moved")
                except (pg_errors.DuplicateTable, pg_errors.UniqueViolation):
                    logger.debug("partition %s created by another writer", name)
            self._partitions.add(start)
        return name

    # -- vectors --------------------------------------------------------------------------
    def get_vectors(self, space: str, ids: Any = None) -> tuple[Any, Any] | None:
        """Vectors of a space as ``(item_ids, float32 matrix)`` sorted by id, or ``None``."""
        sql = "SELECT item_id, vector FROM clip_vectors WHERE space = %s"
        params: list[Any] = [space]
        if ids is not None:
            sql += " AND item_id = ANY(%s::BIGINT[])"
            params.append(np.asarray(ids, dtype=np.int64).tolist())
        with self._pool.connection() as conn:
            rows = conn.execute((sql + " ORDER BY item_id").encode(), params).fetchall()
        if not rows:
            return None
        lengths = {len(r[1]) for r in rows}
        if len(lengths) > 1:
            msg = f"vectors of space {space!r} differ in length ({min(lengths)} to {max(lengths)})"
            raise ValueError(msg)
        out_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.asarray([r[1] for r in rows], dtype=np.float32).reshape(len(rows), lengths.pop())
        return out_ids, mat

    def vector_ids(self, space: str) -> Any:
        """Sorted ids of the catalogue's clips that have a ``space`` vector (int64 array)."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT v.item_id FROM clip_vectors v WHERE v.space = %s AND EXISTS "
                "(SELECT 1 FROM clips c WHERE c.item_id = v.item_id) ORDER BY 1",
                [space],
            ).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)


def _duckdb_type_name(pg: str) -> str:
    base = pg.removesuffix("[]")
    name = {
        "bigint": "BIGINT",
        "integer": "INTEGER",
        "smallint": "SMALLINT",
        "text": "VARCHAR",
        "character varying": "VARCHAR",
        "boolean": "BOOLEAN",
        "double precision": "DOUBLE",
        "real": "FLOAT",
        "timestamp without time zone": "TIMESTAMP",
    }.get(base, base.upper())
    return name + ("[]" if pg.endswith("[]") else "")


def _redacted(url: str) -> str:
    """The URL without its password."""
    if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
        scheme, rest = url.split("//", 1) if "//" in url else ("", url)
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}//{user}:***@{rest.split('@', 1)[1]}"
    return url
