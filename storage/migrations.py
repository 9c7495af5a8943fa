"""Versioned schema migrations for the store, in both dialects (DuckDB and PostgreSQL).

Each migration is applied once, in order, inside a transaction, and recorded in
``schema_version``. Add new migrations at the end; never edit an applied one.

One numbered list serves both dialects. A statement is written in DuckDB's SQL; on PostgreSQL
it goes through :func:`postgres_ddl`, which rewrites only these type spellings:

- ``DOUBLE`` -> ``DOUBLE PRECISION``, ``FLOAT[]`` -> ``REAL[]``, ``UBIGINT`` -> ``NUMERIC(20)``;
- a list default ``DEFAULT []`` -> ``DEFAULT '{}'``;
- ``DEFAULT current_timestamp`` -> ``DEFAULT (now() AT TIME ZONE 'UTC')`` (PostgreSQL's
  ``current_timestamp`` has a time zone; every TIMESTAMP column holds naive UTC).

Where the dialects differ beyond that, the migration carries its PostgreSQL statements beside
the DuckDB ones (``postgres=``): the partitioned event log of migration 9, migration 11's
``regexp_matches``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import duckdb

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One schema step: a version number, a short name and its SQL statements.

    ``postgres`` holds the PostgreSQL statements when they differ from the DuckDB ones beyond
    what :func:`postgres_ddl` rewrites (``None``: the DuckDB statements, rewritten).
    """

    version: int
    name: str
    statements: tuple[str, ...]
    postgres: tuple[str, ...] | None = None

    def postgres_statements(self) -> tuple[str, ...]:
        """The statements to run on PostgreSQL."""
        if self.postgres is not None:
            return self.postgres
        return tuple(postgres_ddl(s) for s in self.statements)


_DDL_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bDOUBLE\b(?!\s+PRECISION)", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bFLOAT\[\]", re.IGNORECASE), "REAL[]"),
    (re.compile(r"\bUBIGINT\b", re.IGNORECASE), "NUMERIC(20)"),
    (re.compile(r"\bDEFAULT\s+\[\]", re.IGNORECASE), "DEFAULT '{}'"),
    (
        re.compile(r"\bDEFAULT\s+current_timestamp\b", re.IGNORECASE),
        "DEFAULT (now() AT TIME ZONE 'UTC')",
    ),
)


def postgres_ddl(statement: str) -> str:
    """A DuckDB DDL statement in PostgreSQL's spelling (the rules in the module docstring)."""
    for pattern, repl in _DDL_RULES:
        statement = pattern.sub(repl, statement)
    return statement


# The event log's columns as of migration 9, in PostgreSQL's spelling.
_EVENT_COLUMNS_PG = """
    event_id VARCHAR NOT NULL,
    user_id BIGINT NOT NULL,
    item_id BIGINT,
    target_user_id BIGINT,
    event_type VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    received_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    session_id VARCHAR,
    request_id VARCHAR,
    position INTEGER,
    pipeline VARCHAR,
    source VARCHAR,
    features VARCHAR,
    propensity DOUBLE PRECISION,
    experiments VARCHAR,
    watch_s DOUBLE PRECISION,
    watch_frac DOUBLE PRECISION,
    weight DOUBLE PRECISION"""

# The tables whose rows the serving workers keep in memory, with the trigger arguments of
# migration 17: the key column a change is noted under, and a detail column where one key
# alone does not say what changed.
_FOLLOWED_TABLES: tuple[tuple[str, str], ...] = (
    ("users", "user_id"),
    ("clips", "item_id"),
    ("clip_vectors", "item_id, space"),
    ("follows", "follower_id, followee_id"),
    ("blocks", "user_id, target_id"),
    ("moods", "user_id"),
    ("standing_rules", "user_id"),
    ("goals", "user_id"),
    ("data_controls", "user_id"),
    ("governor_settings", "user_id"),
    ("survey_prompts", "user_id"),
    ("api_keys", "key_id"),
    ("cameo_consents", "user_id"),
    ("clip_reviews", "item_id"),
    ("user_vectors", "user_id, space"),
    ("satisfaction_models", "version"),
    ("rights_optouts", "optout_id"),
    ("protected_people", "person_id"),
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "core tables",
        (
            """CREATE TABLE users (
                user_id BIGINT PRIMARY KEY,
                age_band VARCHAR NOT NULL DEFAULT '25-34',
                is_teen BOOLEAN NOT NULL DEFAULT FALSE,
                timezone VARCHAR NOT NULL DEFAULT 'UTC',
                settings VARCHAR NOT NULL DEFAULT '{}',
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
            )""",
            """CREATE TABLE clips (
                item_id BIGINT PRIMARY KEY,
                author_id BIGINT NOT NULL,
                caption VARCHAR NOT NULL,
                topics VARCHAR[] NOT NULL DEFAULT [],
                hashtags VARCHAR[] NOT NULL DEFAULT [],
                duration_s DOUBLE NOT NULL DEFAULT 15.0,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                safety_label VARCHAR NOT NULL DEFAULT 'safe',
                maturity SMALLINT NOT NULL DEFAULT 0,
                is_generated BOOLEAN NOT NULL DEFAULT FALSE,
                remix_of BIGINT,
                cameo_user_ids BIGINT[] NOT NULL DEFAULT [],
                prior_views BIGINT NOT NULL DEFAULT 0,
                prior_likes BIGINT NOT NULL DEFAULT 0,
                provenance VARCHAR
            )""",
            """CREATE TABLE follows (
                follower_id BIGINT NOT NULL,
                followee_id BIGINT NOT NULL,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (follower_id, followee_id)
            )""",
            """CREATE TABLE blocks (
                user_id BIGINT NOT NULL,
                target_id BIGINT NOT NULL,
                kind VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (user_id, target_id, kind)
            )""",
            """CREATE TABLE events (
                event_id VARCHAR PRIMARY KEY,
                user_id BIGINT NOT NULL,
                item_id BIGINT,
                target_user_id BIGINT,
                event_type VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                received_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                session_id VARCHAR,
                request_id VARCHAR,
                position INTEGER,
                pipeline VARCHAR,
                source VARCHAR,
                features VARCHAR,
                propensity DOUBLE,
                experiments VARCHAR,
                watch_s DOUBLE,
                watch_frac DOUBLE,
                weight DOUBLE
            )""",
            """CREATE TABLE api_keys (
                key_id VARCHAR PRIMARY KEY,
                key_hash VARCHAR NOT NULL,
                role VARCHAR NOT NULL,
                user_id BIGINT,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                revoked BOOLEAN NOT NULL DEFAULT FALSE
            )""",
        ),
    ),
    Migration(
        2,
        "clip vectors (source of truth for re-indexing and serving features)",
        (
            """CREATE TABLE clip_vectors (
                item_id BIGINT NOT NULL,
                space VARCHAR NOT NULL,
                vector FLOAT[] NOT NULL,
                updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (item_id, space)
            )""",
        ),
    ),
    Migration(
        3,
        "steering",
        (
            """CREATE TABLE moods (
                mood_id VARCHAR PRIMARY KEY,
                user_id BIGINT NOT NULL,
                text VARCHAR NOT NULL,
                parsed VARCHAR NOT NULL,
                scope VARCHAR NOT NULL DEFAULT 'session',
                strength DOUBLE NOT NULL DEFAULT 0.7,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                expires_at TIMESTAMP,
                deleted_at TIMESTAMP
            )""",
        ),
    ),
    Migration(
        4,
        "wellbeing: surveys, governor settings, parent links, session satisfaction",
        (
            # One row per survey card shown; status moves shown -> answered | dismissed | expired
            # (no answer within the response window: the non-response is kept, not dropped).
            """CREATE TABLE survey_prompts (
                survey_id VARCHAR PRIMARY KEY,
                user_id BIGINT NOT NULL,
                question_key VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                stratum VARCHAR NOT NULL,
                request_id VARCHAR,
                session_id VARCHAR,
                shown_at TIMESTAMP NOT NULL,
                page_probability DOUBLE NOT NULL,
                question_probability DOUBLE NOT NULL,
                inclusion_probability DOUBLE NOT NULL,
                status VARCHAR NOT NULL DEFAULT 'shown',
                answer INTEGER,
                responded_at TIMESTAMP,
                response_propensity DOUBLE,
                source VARCHAR NOT NULL DEFAULT 'feed'
            )""",
            """CREATE TABLE governor_settings (
                user_id BIGINT NOT NULL,
                set_by VARCHAR NOT NULL,
                overrides VARCHAR NOT NULL DEFAULT '{}',
                updated_by BIGINT,
                updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (user_id, set_by)
            )""",
            """CREATE TABLE parent_links (
                parent_id BIGINT NOT NULL,
                child_id BIGINT NOT NULL,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (parent_id, child_id)
            )""",
            """CREATE TABLE session_satisfaction (
                user_id BIGINT NOT NULL,
                session_start TIMESTAMP NOT NULL,
                session_end TIMESTAMP NOT NULL,
                minutes DOUBLE NOT NULL,
                n_impressions INTEGER NOT NULL,
                n_views INTEGER NOT NULL,
                n_see_less INTEGER NOT NULL DEFAULT 0,
                abrupt_exit BOOLEAN NOT NULL DEFAULT FALSE,
                late_night BOOLEAN NOT NULL DEFAULT FALSE,
                experiments VARCHAR,
                predicted DOUBLE NOT NULL,
                observed DOUBLE,
                model_version VARCHAR NOT NULL,
                computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (user_id, session_start)
            )""",
            """CREATE TABLE satisfaction_models (
                version VARCHAR PRIMARY KEY,
                trained_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                params VARCHAR NOT NULL,
                metrics VARCHAR NOT NULL
            )""",
        ),
    ),
    Migration(
        5,
        "experiments: definitions and stored analyses",
        (
            # One row per experiment; ``definition`` is the validated definition as JSON.
            """CREATE TABLE experiments (
                name VARCHAR PRIMARY KEY,
                definition VARCHAR NOT NULL,
                status VARCHAR NOT NULL DEFAULT 'draft',
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp
            )""",
            # Analyses and simulation reports (JSON), newest read by the dashboard.
            """CREATE TABLE experiment_results (
                result_id VARCHAR PRIMARY KEY,
                experiment VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                computed_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                report VARCHAR NOT NULL
            )""",
        ),
    ),
    Migration(
        6,
        "generation: clip generation queue, cameo consent, rights-holder opt-outs",
        (
            # One row per generation request or gap-filling prompt; status moves
            # queued -> running -> done | failed (retried while attempts < max_attempts).
            """CREATE TABLE generation_jobs (
                job_id VARCHAR PRIMARY KEY,
                kind VARCHAR NOT NULL,
                requested_by BIGINT,
                prompt VARCHAR NOT NULL,
                remix_of BIGINT,
                cameo_user_ids BIGINT[] NOT NULL DEFAULT [],
                topics VARCHAR[] NOT NULL DEFAULT [],
                params VARCHAR NOT NULL DEFAULT '{}',
                reason VARCHAR NOT NULL DEFAULT '',
                status VARCHAR NOT NULL DEFAULT 'queued',
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL DEFAULT 3,
                error VARCHAR,
                item_id BIGINT,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                started_at TIMESTAMP,
                finished_at TIMESTAMP,
                not_before TIMESTAMP
            )""",
            # A person's opt-in to appear in generated clips, and who may use their likeness.
            """CREATE TABLE cameo_consents (
                user_id BIGINT PRIMARY KEY,
                audience VARCHAR NOT NULL,
                granted_at TIMESTAMP NOT NULL,
                revoked_at TIMESTAMP
            )""",
            # Blanket opt-outs: one row per registered name of a character, brand or work.
            """CREATE TABLE rights_optouts (
                optout_id VARCHAR PRIMARY KEY,
                holder VARCHAR NOT NULL,
                name VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                removed_at TIMESTAMP
            )""",
        ),
    ),
    Migration(
        7,
        "security: audit log of admin actions",
        (
            # One row per admin action (written by api/http/audit.py). Users being erased appear
            # only as pseudonyms; storage/erasure.py scrubs earlier mentions.
            """CREATE TABLE audit_log (
                audit_id VARCHAR PRIMARY KEY,
                at_ts TIMESTAMP NOT NULL,
                key_id VARCHAR,
                role VARCHAR NOT NULL,
                actor_user_id BIGINT,
                action VARCHAR NOT NULL,
                target VARCHAR NOT NULL DEFAULT '',
                details VARCHAR NOT NULL DEFAULT '{}',
                status INTEGER
            )""",
        ),
    ),
    Migration(
        8,
        "collaborative retrieval: learned user vectors",
        (
            # User factors of the collab model (pipelines/serving/jobs/collab.py); the clip factors
            # live in clip_vectors (space 'collab') and in the vector index.
            """CREATE TABLE user_vectors (
                user_id BIGINT NOT NULL,
                space VARCHAR NOT NULL,
                vector FLOAT[] NOT NULL,
                model_version VARCHAR NOT NULL DEFAULT '',
                updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (user_id, space)
            )""",
        ),
    ),
    Migration(
        9,
        "events: event ids are unique per user (idempotency scoped to the sender)",
        (
            # The key was event_id alone: user 5's "e1" was dropped as a repeat of user 1's.
            # DuckDB cannot change a primary key, so the table is rebuilt with the same columns
            # and the key (event_id, user_id); views over it are re-bound on their next use.
            # event_id leads: loading 2.5M events took 12 s as with event_id alone, 33 s with
            # user_id first (random user ids scatter the key index's inserts).
            """CREATE TABLE events_by_user (
                event_id VARCHAR NOT NULL,
                user_id BIGINT NOT NULL,
                item_id BIGINT,
                target_user_id BIGINT,
                event_type VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                received_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                session_id VARCHAR,
                request_id VARCHAR,
                position INTEGER,
                pipeline VARCHAR,
                source VARCHAR,
                features VARCHAR,
                propensity DOUBLE,
                experiments VARCHAR,
                watch_s DOUBLE,
                watch_frac DOUBLE,
                weight DOUBLE,
                PRIMARY KEY (event_id, user_id)
            )""",
            "INSERT INTO events_by_user BY NAME SELECT * FROM events",
            "DROP TABLE events",
            "ALTER TABLE events_by_user RENAME TO events",
        ),
        postgres=(
            # Partitioned by month of the event time (storage/postgres_store.py creates each
            # month's partition before a batch lands in it; the default partition takes the
            # rest), so retention drops a partition and a time-bounded scan reads only its
            # months. A partitioned table's key must hold the partition column, so the key
            # (event_id, user_id) is kept in event_keys instead, which every append goes
            # through: a retry with another ts is still a repeat. events itself has no key:
            # a key (event_id, user_id, ts) would decide nothing event_keys does not, and
            # measured 2.5x slower bulk appends (200k events: 6.7-7.2 s vs 2.7 s, loaded host).
            f"""CREATE TABLE events_by_user ({_EVENT_COLUMNS_PG}
            ) PARTITION BY RANGE (ts)""",
            "CREATE TABLE events_default PARTITION OF events_by_user DEFAULT",
            """CREATE TABLE event_keys (
                event_id VARCHAR NOT NULL,
                user_id BIGINT NOT NULL,
                PRIMARY KEY (event_id, user_id)
            )""",
            "INSERT INTO event_keys (event_id, user_id) SELECT DISTINCT event_id, user_id "
            "FROM events",
            "INSERT INTO events_by_user SELECT * FROM events",
            "DROP TABLE events",
            "ALTER TABLE events_by_user RENAME TO events",
            # Per-user reads (a person's history, erasure) would otherwise scan every month.
            "CREATE INDEX events_user_ts ON events (user_id, ts)",
        ),
    ),
    Migration(
        10,
        "generation trust: rights holders, notifications, protected people, clip reviews",
        (
            # Names a holder registered through the API wait (status 'pending') until an admin
            # verifies the holder; names an admin registers are 'active' at once.
            "ALTER TABLE rights_optouts ADD COLUMN holder_id VARCHAR",
            "ALTER TABLE rights_optouts ADD COLUMN status VARCHAR DEFAULT 'active'",
            # A rights holder's account: status pending -> verified | rejected (by an admin).
            """CREATE TABLE rights_holders (
                holder_id VARCHAR PRIMARY KEY,
                user_id BIGINT,
                name VARCHAR NOT NULL,
                contact VARCHAR NOT NULL DEFAULT '',
                evidence VARCHAR NOT NULL DEFAULT '',
                status VARCHAR NOT NULL DEFAULT 'pending',
                created_at TIMESTAMP NOT NULL,
                decided_at TIMESTAMP,
                decision_note VARCHAR NOT NULL DEFAULT ''
            )""",
            # What was refused, filtered or taken down in a holder's name (no requester ids).
            """CREATE TABLE rights_notifications (
                notification_id VARCHAR PRIMARY KEY,
                holder_id VARCHAR NOT NULL,
                at_ts TIMESTAMP NOT NULL,
                kind VARCHAR NOT NULL,
                name VARCHAR NOT NULL DEFAULT '',
                how VARCHAR NOT NULL DEFAULT '',
                matched VARCHAR NOT NULL DEFAULT '',
                item_id BIGINT,
                detail VARCHAR NOT NULL DEFAULT ''
            )""",
            # Real people whose names may not be generated (the operator's list).
            """CREATE TABLE protected_people (
                person_id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                aliases VARCHAR[] NOT NULL DEFAULT [],
                user_id BIGINT,
                note VARCHAR NOT NULL DEFAULT '',
                created_at TIMESTAMP NOT NULL,
                removed_at TIMESTAMP
            )""",
            # One row per clip under review or decided: status pending (visible) | held
            # (hidden) | taken_down (hidden, media 410) | restored (visible).
            """CREATE TABLE clip_reviews (
                item_id BIGINT PRIMARY KEY,
                status VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                reason VARCHAR NOT NULL DEFAULT '',
                reports INTEGER NOT NULL DEFAULT 0,
                reports_at_decision INTEGER NOT NULL DEFAULT 0,
                holder_id VARCHAR,
                details VARCHAR NOT NULL DEFAULT '{}',
                created_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                decided_at TIMESTAMP,
                decided_by VARCHAR
            )""",
            # Perceptual hashes of sampled frames of taken-down clips (re-renders are held).
            """CREATE TABLE blocked_frame_hashes (
                item_id BIGINT NOT NULL,
                frame INTEGER NOT NULL,
                hash UBIGINT NOT NULL,
                added_at TIMESTAMP NOT NULL,
                PRIMARY KEY (item_id, frame)
            )""",
        ),
    ),
    Migration(
        11,
        "privacy: cameo audience 'none', a linked parent's approval of a teen's cameo consent, "
        "unlinked legacy pseudonyms",
        (
            # A teen's consent counts only once a linked parent approved it (api/routes/
            # parental.py); the parent is named here so that erasing the parent withdraws it.
            "ALTER TABLE cameo_consents ADD COLUMN approved_by_user_id BIGINT",
            "ALTER TABLE cameo_consents ADD COLUMN approved_at TIMESTAMP",
            "UPDATE cameo_consents SET audience = 'none' WHERE audience = 'only_me'",
            # Pseudonyms written before were unkeyed hashes of the id (reversed by trying every
            # id); they cannot be re-keyed without the id, so they become 'erased:unlinked'.
            r"""UPDATE audit_log SET
                target = regexp_replace(target, 'erased:[0-9a-f]{16}([^0-9a-f]|$)',
                                        'erased:unlinked\1', 'g'),
                details = regexp_replace(details, 'erased:[0-9a-f]{16}([^0-9a-f]|$)',
                                         'erased:unlinked\1', 'g')
            WHERE regexp_matches(target || ' ' || details, 'erased:[0-9a-f]{16}([^0-9a-f]|$)')""",
        ),
        postgres=(
            "ALTER TABLE cameo_consents ADD COLUMN approved_by_user_id BIGINT",
            "ALTER TABLE cameo_consents ADD COLUMN approved_at TIMESTAMP",
            "UPDATE cameo_consents SET audience = 'none' WHERE audience = 'only_me'",
            r"""UPDATE audit_log SET
                target = regexp_replace(target, 'erased:[0-9a-f]{16}([^0-9a-f]|$)',
                                        'erased:unlinked\1', 'g'),
                details = regexp_replace(details, 'erased:[0-9a-f]{16}([^0-9a-f]|$)',
                                         'erased:unlinked\1', 'g')
            WHERE (target || ' ' || details) ~ 'erased:[0-9a-f]{16}([^0-9a-f]|$)'""",
        ),
    ),
    Migration(
        12,
        "data controls per signal, and a city on clips",
        (
            # One row per person who changed a data control (ranking/data_controls.py); NULL
            # is "the default for this person" (teens: location off). A city is the finest
            # location ever stored; erased with the person (user_id).
            """CREATE TABLE data_controls (
                user_id BIGINT PRIMARY KEY,
                location BOOLEAN,
                watch_time BOOLEAN,
                friends_activity BOOLEAN,
                interaction_history BOOLEAN,
                satisfaction_model BOOLEAN,
                city VARCHAR,
                updated_at TIMESTAMP NOT NULL
            )""",
            # Where a clip was made, at city level (normalised name; NULL when unknown).
            "ALTER TABLE clips ADD COLUMN city VARCHAR",
        ),
    ),
    Migration(
        13,
        "steering: standing rules in plain words, per creator and time of day",
        (
            # One row per saved sentence; `parsed` is how it was read (steering/rules.py).
            # author_id: the creator the rule is about (NULL: every creator); start_min /
            # end_min: the daily window in minutes after local midnight (NULL: all day).
            """CREATE TABLE standing_rules (
                rule_id VARCHAR PRIMARY KEY,
                user_id BIGINT NOT NULL,
                text VARCHAR NOT NULL,
                parsed VARCHAR NOT NULL,
                author_id BIGINT,
                author_ref VARCHAR,
                start_min SMALLINT,
                end_min SMALLINT,
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                updated_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                deleted_at TIMESTAMP
            )""",
        ),
    ),
    Migration(
        14,
        "wellbeing: the public transparency report, a hash-chained append-only log",
        (
            # One row per published period (wellbeing/transparency.py): aggregates over
            # cohorts of at least min_cohort people, nothing about one person. Only ever
            # appended to; `hash` chains each row to the one before, so a rewritten or removed
            # period shows in `steerfeed transparency verify`.
            """CREATE TABLE transparency_log (
                seq INTEGER PRIMARY KEY,
                period_start TIMESTAMP NOT NULL,
                period_end TIMESTAMP NOT NULL,
                published_at TIMESTAMP NOT NULL,
                body VARCHAR NOT NULL,
                prev_hash VARCHAR NOT NULL,
                hash VARCHAR NOT NULL
            )""",
        ),
    ),
    Migration(
        15,
        "steering: long-term goals in plain words",
        (
            # One row per goal a person set (steering/goals.py); `kind` is connect or topic,
            # `phrase` what a topic goal is about. Erased with the person (user_id).
            """CREATE TABLE goals (
                goal_id VARCHAR PRIMARY KEY,
                user_id BIGINT NOT NULL,
                text VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                phrase VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                deleted_at TIMESTAMP
            )""",
        ),
    ),
    Migration(
        16,
        "jobs: leases, so a periodic job runs once per deployment, not once per worker",
        (
            # One row per job name (storage/leases.py): who holds it and until when. A worker's
            # scheduler runs a job only while it holds the job's lease.
            """CREATE TABLE job_leases (
                name VARCHAR PRIMARY KEY,
                holder VARCHAR NOT NULL,
                expires_at TIMESTAMP NOT NULL
            )""",
        ),
    ),
    Migration(
        17,
        "several workers: a sequence on the event log and a change feed of the serving tables",
        # DuckDB has one process per file: nothing follows its log, so nothing changes there.
        (),
        postgres=(
            # Every appended event gets the next number of one sequence, the worker that wrote
            # it (the connection's steerfeed.origin, set by each engine; NULL for other
            # writers) and the time it was logged. Workers follow the log by this number
            # (pipelines/serving/follower.py). A number is taken at insert and seen at commit,
            # so a row can show up after a higher one: the follower rereads open gaps.
            "CREATE SEQUENCE events_seq",
            "ALTER TABLE events ADD COLUMN seq BIGINT",
            "ALTER TABLE events ALTER COLUMN seq SET DEFAULT nextval('events_seq')",
            "ALTER TABLE events ADD COLUMN origin BIGINT",
            "ALTER TABLE events ALTER COLUMN origin SET DEFAULT "
            "nullif(current_setting('steerfeed.origin', true), '')::BIGINT",
            "ALTER TABLE events ADD COLUMN logged_at TIMESTAMP",
            "ALTER TABLE events ALTER COLUMN logged_at SET DEFAULT "
            "(clock_timestamp() AT TIME ZONE 'UTC')",
            "CREATE INDEX events_seq_idx ON events (seq)",
            # The change feed: one row per key a statement inserted, updated or deleted in a
            # table the serving state keeps in memory, written by statement triggers (so every
            # writer is covered: the API, jobs, the CLI, psql).
            """CREATE TABLE state_changes (
                seq BIGSERIAL PRIMARY KEY,
                tbl VARCHAR NOT NULL,
                op VARCHAR NOT NULL,
                key VARCHAR NOT NULL,
                detail VARCHAR,
                origin BIGINT DEFAULT nullif(current_setting('steerfeed.origin', true), '')::BIGINT,
                changed_at TIMESTAMP NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC')
            )""",
            """CREATE FUNCTION steerfeed_note_changes() RETURNS trigger
            LANGUAGE plpgsql AS $fn$
            DECLARE
                src text := CASE WHEN TG_OP = 'DELETE' THEN 'old_rows' ELSE 'new_rows' END;
                detail text := CASE WHEN TG_NARGS > 1
                    THEN format('CAST(%I AS VARCHAR)', TG_ARGV[1]) ELSE 'NULL' END;
            BEGIN
                EXECUTE format(
                    'INSERT INTO state_changes (tbl, op, key, detail) '
                    'SELECT DISTINCT %L, %L, CAST(%I AS VARCHAR), %s FROM %I',
                    TG_TABLE_NAME, left(TG_OP, 1), TG_ARGV[0], detail, src);
                RETURN NULL;
            END
            $fn$""",
            *(
                f"CREATE TRIGGER {table}_{op[0].lower()}_changes AFTER {op} ON {table} "
                f"REFERENCING {'OLD' if op == 'DELETE' else 'NEW'} TABLE AS "
                f"{'old_rows' if op == 'DELETE' else 'new_rows'} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION steerfeed_note_changes({args})"
                for table, args in _FOLLOWED_TABLES
                for op in ("INSERT", "UPDATE", "DELETE")
            ),
        ),
    ),
    Migration(
        18,
        "api: token buckets shared by every worker (rate limits, failed-auth throttle)",
        (
            # One row per bucket (storage/buckets.py: PostgresBuckets): tokens left at at_s
            # (Unix seconds), the rate and burst of the last call, and the wait that call was
            # answered (RETURNING sees only the new row). Used on PostgreSQL only; the DuckDB
            # store serves one process, whose buckets stay in memory.
            """CREATE TABLE rate_buckets (
                bucket VARCHAR PRIMARY KEY,
                tokens DOUBLE NOT NULL,
                at_s DOUBLE NOT NULL,
                rate DOUBLE NOT NULL,
                burst DOUBLE NOT NULL,
                wait_s DOUBLE NOT NULL
            )""",
        ),
        # UNLOGGED: a bucket is not worth a WAL write per request; after a crash the table is
        # empty, which is every bucket full.
        postgres=(
            """CREATE UNLOGGED TABLE rate_buckets (
                bucket VARCHAR PRIMARY KEY,
                tokens DOUBLE PRECISION NOT NULL,
                at_s DOUBLE PRECISION NOT NULL,
                rate DOUBLE PRECISION NOT NULL,
                burst DOUBLE PRECISION NOT NULL,
                wait_s DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
)


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    """Return the highest applied migration version (0 for an empty database)."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name VARCHAR,"
        " applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(
    con: duckdb.DuckDBPyConnection, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Apply every migration newer than the database's version; return the versions applied."""
    current_version(con)  # creates schema_version when missing
    # Versions are allocated per package and may land out of order (7 before 6): apply every
    # version this database has not recorded, not only those above its highest.
    done = {int(r[0]) for r in con.execute("SELECT version FROM schema_version").fetchall()}
    applied: list[int] = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in m.statements:
                con.execute(stmt)
            con.execute(
                "INSERT INTO schema_version (version, name) VALUES (?, ?)", [m.version, m.name]
            )
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(m.version)
        logger.info("applied migration %d (%s)", m.version, m.name)
    return applied
