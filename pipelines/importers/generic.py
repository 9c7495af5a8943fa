"""Import clips, users, follows or events from a Parquet or CSV file into the store.

The file's columns are checked against the store's own schema (read from the database, so the
importer and the migrations never drift): unknown columns and missing required ones are errors,
every value is cast to the column's type (a value that cannot be read is an error naming the
column, the count and the first bad value), empty values in columns with a default get that
default, and every ``event_type`` must be one of :data:`storage.store.EVENT_TYPES`. The whole
file is validated before the first row is written, then inserted in batches, one transaction
each.

Conflicts follow the store: users and clips are upserted by id (``replace=True``, the default)
so re-importing a file is harmless; follows and events are inserted only when new. Events
without an ``event_id`` get one derived from a hash of the row's content, so re-importing the
same events inserts nothing (and two rows identical in every column count as one event).

CSV files hold list columns (``topics``, ``hashtags``, ``cameo_user_ids``) as ``|``-separated
strings; timestamps are ISO 8601 (with or without an offset; offsets are converted to UTC).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args

import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipelines.importers.errors import ImporterError
from ranking.signals import CityError, normalise_city
from storage.errors import DuplicateEntityError
from storage.store import EVENT_TYPES, Store

logger = logging.getLogger(__name__)

ImportKind = Literal["clips", "users", "follows", "events"]
IMPORT_KINDS: Final[tuple[str, ...]] = get_args(ImportKind)

REQUIRED_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "clips": ("item_id", "author_id", "caption"),
    "users": ("user_id",),
    "follows": ("follower_id", "followee_id"),
    "events": ("user_id", "event_type", "ts"),
}
"""Columns a file of each kind must have (``event_id`` is generated when absent)."""

LIST_SEPARATOR: Final = "|"
"""Separator of list values in CSV cells (``topics``, ``hashtags``, ``cameo_user_ids``)."""

EVENT_ID_PREFIX: Final = "imp-"
"""Prefix of event ids generated from a row's content."""

PARQUET_SUFFIXES: Final = (".parquet", ".pq")
CSV_SUFFIXES: Final = (".csv",)

# Ids must be unique within one upserted file: DuckDB cannot replace the same row twice in one
# statement, and which of two rows should win is not ours to guess.
_UNIQUE_KEYS: Final[dict[str, tuple[str, ...]]] = {"clips": ("item_id",), "users": ("user_id",)}
# Columns left out of the content hash: the id itself and the time the row reached us.
_NOT_HASHED: Final = frozenset({"event_id", "received_at"})

_SCALAR_DTYPES: Final[dict[str, pl.DataType]] = {
    "BIGINT": pl.Int64(),
    "INTEGER": pl.Int32(),
    "SMALLINT": pl.Int16(),
    "TINYINT": pl.Int8(),
    "DOUBLE": pl.Float64(),
    "FLOAT": pl.Float32(),
    "VARCHAR": pl.String(),
    "BOOLEAN": pl.Boolean(),
    "TIMESTAMP": pl.Datetime("us"),
}
_TRUE_WORDS: Final = ("true", "t", "yes", "y", "1")
_FALSE_WORDS: Final = ("false", "f", "no", "n", "0")
# Tried in order; the first that parses a value wins. Offsets are converted to naive UTC.
_OFFSET_FORMATS: Final = ("%+", "%Y-%m-%d %H:%M:%S%.f%#z")
_NAIVE_FORMATS: Final = (
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)


@dataclass(frozen=True)
class ImportReport:
    """What one import did.

    Attributes
    ----------
    kind
        The table written (``clips``, ``users``, ``follows`` or ``events``).
    rows_read
        Rows in the input.
    rows_inserted
        Rows the store reports as written: new or replaced users and clips, new follows and
        events (repeats of stored follows and events are not counted).
    seconds
        Wall time of the whole import, reading included.
    """

    kind: str
    rows_read: int
    rows_inserted: int
    seconds: float


@dataclass(frozen=True)
class _Column:
    name: str
    sql_type: str
    dtype: pl.DataType
    nullable: bool
    has_default: bool
    default: Any


def import_table(
    store: Store,
    kind: ImportKind,
    path: Path,
    *,
    progress: bool = False,
    batch_rows: int = 200_000,
    replace: bool = True,
) -> ImportReport:
    """Import one Parquet or CSV file of clips, users, follows or events.

    Parameters
    ----------
    store
        The store to write into.
    kind
        Which table the file holds.
    path
        A ``.parquet``/``.pq`` or ``.csv`` file (chosen by suffix).
    progress
        Show a rich progress bar while inserting.
    batch_rows
        Rows per insert transaction.
    replace
        Upsert users and clips whose id is already stored (the default); when false such a row
        is an error. Follows and events are never replaced, only skipped when already stored.

    Returns
    -------
    ImportReport
        Rows read and inserted, and the time taken.

    Raises
    ------
    ImporterError
        The file is missing or of an unknown type, or its content does not fit the schema
        (unknown or missing columns, unreadable values, unknown event types, repeated ids).
        Nothing is written in these cases, except that with ``replace=False`` the batches
        before the one holding an already stored id stay written.
    """
    started = time.perf_counter()
    df = read_table(path)
    return _run_import(
        store,
        kind,
        df,
        source=str(path),
        started=started,
        progress=progress,
        batch_rows=batch_rows,
        replace=replace,
    )


def import_frame(
    store: Store,
    kind: ImportKind,
    df: pl.DataFrame,
    *,
    progress: bool = False,
    batch_rows: int = 200_000,
    replace: bool = True,
    source: str = "<frame>",
) -> ImportReport:
    """Import an in-memory frame with the same checks as :func:`import_table`.

    Parameters
    ----------
    store
        The store to write into.
    kind
        Which table the frame holds.
    df
        The rows; columns as in the table, list columns as lists or ``|``-separated strings.
    progress
        Show a rich progress bar while inserting.
    batch_rows
        Rows per insert transaction.
    replace
        Upsert users and clips whose id is already stored.
    source
        A name for the rows in error messages and the log line.

    Returns
    -------
    ImportReport
        Rows read and inserted, and the time taken.

    Raises
    ------
    ImporterError
        As for :func:`import_table`.
    """
    return _run_import(
        store,
        kind,
        df,
        source=source,
        started=time.perf_counter(),
        progress=progress,
        batch_rows=batch_rows,
        replace=replace,
    )


def read_table(path: Path) -> pl.DataFrame:
    """Read a Parquet file as stored, or a CSV file with every column as text.

    Parameters
    ----------
    path
        A ``.parquet``/``.pq`` or ``.csv`` file.

    Returns
    -------
    polars.DataFrame
        The rows, not yet cast to the store's types.

    Raises
    ------
    ImporterError
        The file is missing, has an unknown suffix or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"no such file: {path}"
        raise ImporterError(msg)
    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            return pl.read_parquet(path)
        if suffix in CSV_SUFFIXES:
            # Text in, cast by the schema later: type inference would guess ids and timestamps.
            return pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        msg = f"cannot read {path}: {exc}"
        raise ImporterError(msg) from exc
    valid = ", ".join(PARQUET_SUFFIXES + CSV_SUFFIXES)
    msg = f"unknown file type {suffix!r} for {path}; valid: {valid}"
    raise ImporterError(msg)


def prepare_frame(
    store: Store, kind: ImportKind, df: pl.DataFrame, *, source: str = "<frame>"
) -> pl.DataFrame:
    """Validate rows of ``kind`` and cast them to the store's schema, without writing.

    Parameters
    ----------
    store
        The store whose schema the rows must fit.
    kind
        Which table the rows are for.
    df
        The rows as read.
    source
        A name for the rows in error messages.

    Returns
    -------
    polars.DataFrame
        The same rows and columns (plus a generated ``event_id`` for events without one), every
        column of the table's type and empty values replaced by the column default.

    Raises
    ------
    ImporterError
        Unknown kind, unknown or missing columns, unreadable or missing values, unknown event
        types, or ids repeated within the rows.
    """
    if kind not in IMPORT_KINDS:
        msg = f"unknown import kind {kind!r}; valid: {', '.join(IMPORT_KINDS)}"
        raise ImporterError(msg)
    schema = _table_schema(store, kind)
    unknown = [c for c in df.columns if c not in schema]
    if unknown:
        msg = f"{source}: unknown column(s) {unknown} for {kind}; valid: {', '.join(schema)}"
        raise ImporterError(msg)
    missing = [c for c in REQUIRED_COLUMNS[kind] if c not in df.columns]
    if missing:
        required = ", ".join(REQUIRED_COLUMNS[kind])
        msg = f"{source}: missing required column(s) {missing} for {kind}; required: {required}"
        raise ImporterError(msg)

    out = df.with_columns([_cast_column(df[c], schema[c], source=source) for c in df.columns])
    if kind == "events":
        _check_event_types(out, source=source)
        out = _with_event_ids(out)
    if kind == "clips" and "city" in out.columns:
        out = _normalised_cities(out, source=source)
    out = _fill_defaults(out, schema, source=source)
    _check_unique(out, _UNIQUE_KEYS.get(kind, ()), source=source)
    return out


def _normalised_cities(clips: pl.DataFrame, *, source: str) -> pl.DataFrame:
    """Clips' ``city`` values in canonical form; a value finer than a city is refused.

    The message gives the count and the first row, never a value (it may be a location).
    """
    values = clips["city"].to_list()
    out: list[str | None] = []
    bad: list[int] = []
    for i, v in enumerate(values):
        if v is None or not str(v).strip():
            out.append(None)
            continue
        try:
            out.append(normalise_city(str(v)))
        except CityError:
            bad.append(i)
            out.append(None)
    if bad:
        msg = (
            f"{source}: {len(bad)} clip city value(s) are not city names (first at row "
            f"{bad[0]}): a city is the finest location stored; coordinates, postcodes and "
            "addresses are refused. Send a city name, or leave the cell empty"
        )
        raise ImporterError(msg)
    return clips.with_columns(pl.Series("city", out, dtype=pl.String))


def check_clip_authors(store: Store, clips: pl.DataFrame, *, source: str) -> None:
    """Refuse clips whose ``item_id`` is stored already under a different author.

    The data-set adapters derive each clip's author from its id (an offset per data set), so a
    stored clip with the same id and another author belongs to another data set, and an upsert
    would silently overwrite it. LastFM artist ids and MicroLens video ids overlap.

    Parameters
    ----------
    store
        The store about to receive ``clips``.
    clips
        ``item_id, author_id`` of the incoming clips.
    source
        A name for the clips in the error message.

    Raises
    ------
    ImporterError
        Some ``item_id`` is stored with another ``author_id``.
    """
    owners = clips.select(pl.col("item_id").cast(pl.Int64), pl.col("author_id").cast(pl.Int64))
    cur = store.cursor()
    try:
        cur.register("_incoming_owners", owners.to_arrow())
        found = cur.execute(
            "SELECT count(*), min(c.item_id) FROM clips c JOIN _incoming_owners i USING (item_id)"
            " WHERE c.author_id <> i.author_id"
        ).fetchall()
        cur.unregister("_incoming_owners")
    finally:
        cur.close()
    n_foreign, first = found[0] if found else (0, None)
    if n_foreign:
        msg = (
            f"{source}: {n_foreign} item id(s) are stored already as clips of other authors"
            f" (first: item_id {first}); import this data set into a separate store"
        )
        raise ImporterError(msg)


# -- running --------------------------------------------------------------------------------------
def _run_import(
    store: Store,
    kind: ImportKind,
    df: pl.DataFrame,
    *,
    source: str,
    started: float,
    progress: bool,
    batch_rows: int,
    replace: bool,
) -> ImportReport:
    if batch_rows < 1:
        msg = f"batch_rows must be at least 1, got {batch_rows}"
        raise ImporterError(msg)
    prepared = prepare_frame(store, kind, df, source=source)
    insert = _inserter(store, kind, replace=replace)
    inserted = 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(f"import {kind}", total=prepared.height)
        for batch in prepared.iter_slices(batch_rows):
            try:
                inserted += insert(batch)
            except DuplicateEntityError as exc:
                msg = f"{source}: {exc}; pass replace=True to upsert {kind} by id"
                raise ImporterError(msg) from exc
            bar.advance(task, batch.height)
    report = ImportReport(
        kind=kind,
        rows_read=df.height,
        rows_inserted=inserted,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "import kind=%s source=%s rows_read=%d rows_inserted=%d ms=%d",
        kind,
        source,
        report.rows_read,
        report.rows_inserted,
        round(report.seconds * 1000),
    )
    return report


def _inserter(store: Store, kind: str, *, replace: bool) -> Callable[[pl.DataFrame], int]:
    if kind == "users":
        return lambda batch: store.add_users(batch, replace=replace)
    if kind == "clips":
        return lambda batch: store.add_clips(batch, replace=replace)
    if kind == "follows":
        return store.add_follows
    return store.append_events


# -- schema ---------------------------------------------------------------------------------------
def _table_schema(store: Store, table: str) -> dict[str, _Column]:
    """Read a table's columns, types, nullability and evaluated defaults from the database."""
    cur = store.cursor()
    try:
        rows = cur.execute(
            "SELECT column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns"
            " WHERE table_name = ? AND table_schema = current_schema()"
            " ORDER BY ordinal_position",
            [table],
        ).fetchall()
        columns: dict[str, _Column] = {}
        for name, sql_type, nullable, default_sql in rows:
            default: Any = None
            if default_sql is not None:
                # Cast to the column type so current_timestamp comes back naive, as stored.
                value = cur.execute(f"SELECT CAST({default_sql} AS {sql_type})").fetchall()
                default = value[0][0] if value else None
            columns[name] = _Column(
                name=name,
                sql_type=sql_type,
                dtype=_polars_dtype(sql_type),
                nullable=nullable == "YES",
                has_default=default_sql is not None,
                default=default,
            )
    finally:
        cur.close()
    if not columns:
        msg = f"the store has no table {table!r}"
        raise ImporterError(msg)
    return columns


def _polars_dtype(sql_type: str) -> pl.DataType:
    if sql_type.endswith("[]"):
        return pl.List(_polars_dtype(sql_type[:-2]))
    try:
        return _SCALAR_DTYPES[sql_type]
    except KeyError:
        msg = f"no polars type for column type {sql_type!r}; known: {', '.join(_SCALAR_DTYPES)}"
        raise ImporterError(msg) from None


# -- casting --------------------------------------------------------------------------------------
def _cast_column(series: pl.Series, column: _Column, *, source: str) -> pl.Series:
    """Cast one column to the schema type; unreadable values are an error, never silently null."""
    target = column.dtype
    if series.dtype == target:
        return series
    what = f"{source}: column {column.name!r}"
    try:
        converted = _convert(series, target, what=what)
    except pl.exceptions.PolarsError as exc:
        msg = f"{what}: cannot read {series.dtype} values as {column.sql_type}: {exc}"
        raise ImporterError(msg) from exc
    bad = converted.is_null() & series.is_not_null()
    if isinstance(series.dtype, pl.String):
        bad = bad & (series.str.strip_chars() != "")
    if series.dtype.is_float() and target.is_integer():
        bad = bad | (series.is_not_null() & (series != series.round()))
    n_bad = int(bad.sum())
    if n_bad:
        first = series.filter(bad)[0]
        msg = f"{what}: {n_bad} value(s) cannot be read as {column.sql_type} (first: {first!r})"
        raise ImporterError(msg)
    return converted.alias(series.name)


def _convert(series: pl.Series, target: pl.DataType, *, what: str) -> pl.Series:
    source_dtype = series.dtype
    if isinstance(source_dtype, pl.String) and not isinstance(target, pl.String):
        # An empty CSV cell means "no value" for every non-text column.
        series = series.str.strip_chars().replace("", None)
    if isinstance(target, pl.List):
        if isinstance(source_dtype, pl.String):
            items = series.str.split(LIST_SEPARATOR).list.eval(
                pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != "")
            )
            # A missing cell is an empty list, not a missing value.
            items = items.fill_null(pl.lit([], dtype=pl.List(pl.String)))
            return items.cast(target, strict=True)
        return series.cast(target, strict=True)
    if isinstance(target, pl.Datetime):
        return _to_datetime(series, what=what)
    if isinstance(target, pl.Boolean) and isinstance(source_dtype, pl.String):
        lowered = series.str.to_lowercase()
        return (
            pl.select(
                pl.when(lowered.is_in(list(_TRUE_WORDS)))
                .then(True)
                .when(lowered.is_in(list(_FALSE_WORDS)))
                .then(False)
                .otherwise(None)
            )
            .to_series()
            .cast(pl.Boolean)
        )
    return series.cast(target, strict=False)


def _to_datetime(series: pl.Series, *, what: str) -> pl.Series:
    dtype = series.dtype
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return series.cast(pl.Datetime("us"))
    if isinstance(dtype, pl.Date):
        return series.cast(pl.Datetime("us"))
    if isinstance(dtype, pl.String):
        col = pl.col(series.name)
        attempts = [
            col.str.to_datetime(
                f, time_unit="us", time_zone="UTC", strict=False
            ).dt.replace_time_zone(None)
            for f in _OFFSET_FORMATS
        ] + [col.str.to_datetime(f, time_unit="us", strict=False) for f in _NAIVE_FORMATS]
        return series.to_frame().select(pl.coalesce(attempts)).to_series()
    msg = f"{what}: cannot read {dtype} values as timestamps; give ISO 8601 text or a datetime type"
    raise ImporterError(msg)


# -- checks and fills -----------------------------------------------------------------------------
def _check_event_types(df: pl.DataFrame, *, source: str) -> None:
    bad = (
        df.filter(
            pl.col("event_type").is_not_null() & ~pl.col("event_type").is_in(list(EVENT_TYPES))
        )
        .group_by("event_type")
        .len()
        .sort(["len", "event_type"], descending=[True, False])
    )
    if bad.height:
        found = ", ".join(
            f"{value!r} ({n} row{'s' if n != 1 else ''})" for value, n in bad.iter_rows()
        )
        msg = f"{source}: unknown event_type {found}; valid: {', '.join(EVENT_TYPES)}"
        raise ImporterError(msg)


def _with_event_ids(df: pl.DataFrame) -> pl.DataFrame:
    """Give rows without an ``event_id`` one derived from their content."""
    if "event_id" in df.columns and df["event_id"].null_count() == 0:
        return df
    generated = content_event_ids(df)
    if "event_id" not in df.columns:
        return df.with_columns(generated)
    return df.with_columns(pl.col("event_id").fill_null(generated))


def content_event_ids(df: pl.DataFrame) -> pl.Series:
    """Deterministic event ids from each row's content.

    The key is every non-empty ``column=value`` pair except ``event_id`` and ``received_at``,
    columns in name order, values in a text form that does not depend on the polars version
    (``datetime.isoformat``, Python ``str``), hashed with BLAKE2b. So the same event read from
    Parquet or from CSV, with or without empty optional columns, gets the same id.

    Parameters
    ----------
    df
        Event rows already cast to the store's types.

    Returns
    -------
    polars.Series
        ``event_id``: ``"imp-"`` and 32 hex digits per row.
    """
    columns = sorted(c for c in df.columns if c not in _NOT_HASHED)
    ids: list[str] = []
    for row in df.select(columns).iter_rows():
        key = "\x1f".join(
            f"{name}={_canonical(value)}"
            for name, value in zip(columns, row, strict=True)
            if value is not None
        )
        digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
        ids.append(f"{EVENT_ID_PREFIX}{digest}")
    return pl.Series("event_id", ids, dtype=pl.String)


def _canonical(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _fill_defaults(df: pl.DataFrame, schema: dict[str, _Column], *, source: str) -> pl.DataFrame:
    fills: list[pl.Expr] = []
    empty: list[str] = []
    for name in df.columns:
        column = schema[name]
        n_null = df[name].null_count()
        if n_null == 0 or column.nullable:
            continue
        if not column.has_default:
            msg = f"{source}: column {name!r} needs a value but {n_null} row(s) have none"
            raise ImporterError(msg)
        if n_null == df.height:
            # Leave a wholly empty column to the database: new rows get the default and an
            # upsert keeps the stored value (re-importing does not reset created_at).
            empty.append(name)
        else:
            fills.append(pl.col(name).fill_null(pl.lit(column.default, dtype=column.dtype)))
    return df.with_columns(fills).drop(empty)


def _check_unique(df: pl.DataFrame, keys: tuple[str, ...], *, source: str) -> None:
    if not keys:
        return
    repeated = df.select(keys).filter(pl.struct(keys).is_duplicated())
    if repeated.height:
        first = repeated.row(0, named=True)
        msg = (
            f"{source}: {repeated.height} rows repeat an id ({', '.join(keys)}) within the input"
            f" (first: {first}); ids must be unique"
        )
        raise ImporterError(msg)
