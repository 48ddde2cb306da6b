"""A rehearsal copy of a team's own schema: its migrations or its dump, loaded into a local
PostgreSQL the way the Supabase CLI loads them, on top of :mod:`fkrunbook.compat`.

Migrations (:func:`load_migrations`) load as ``supabase migration up`` applies them
(CLI 2.117.0, seen in the server's statement log): files in version order, versions already in
the history skipped; each file split into statements as the CLI splits it and run in one
transaction that ends with the CLI's INSERT into ``supabase_migrations.schema_migrations``;
``CREATE INDEX``, ``DROP INDEX`` and ``REINDEX`` ... ``CONCURRENTLY`` run on their own, outside it
(the statements before one are committed first, as the CLI commits its batch); ``RESET ALL``
after each file. A dump (:func:`load_dump`) loads in one transaction, psql's backslash commands
skipped. A statement that fails stops the load: the error names the file, the line where the
statement starts and PostgreSQL's message, and the file's open transaction is rolled back.

:func:`reset_local_from` builds the local environment's database that way under a temporary name,
writes sample data for the spec into it (:mod:`fkrunbook.teamdata`), and swaps it in only when both
succeeded (a failed load or seed leaves the previous one as it was).
"""
from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg

from . import history
from .compat import CREATE_EXTENSION, CompatLayer, apply_compat, connection, read_compat, statement_body
from .errors import FkrunbookError, SampleDataError, SchemaLoadError, SpecMismatchError
from .spec import Spec
from .sqltext import depth_split, lex, unquote
from .teamdata import TeamSample, check_team_rows, seed_team_data

CONCURRENT = re.compile(r"(?:CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX|REINDEX\s+(?:\([^)]*\)\s*)?[A-Za-z]+)"
                        r"\s+CONCURRENTLY\b", re.I)
KINDS = {"tables": "table", "views": "view", "functions": "function", "policies": "policy", "triggers": "trigger",
         "foreign_keys": "foreign key"}
COUNTS = """
WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'supabase_migrations',
                                                               'extensions', 'cron', 'net', 'pgsodium')
            AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%'),
     own AS (SELECT c.* FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns) AND NOT EXISTS (
             SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'))
SELECT (SELECT count(*) FROM own WHERE relkind IN ('r', 'p') AND NOT relispartition),
       (SELECT count(*) FROM own WHERE relkind IN ('v', 'm')),
       (SELECT count(*) FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns) AND NOT EXISTS (
               SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')),
       (SELECT count(*) FROM pg_policy pol JOIN own ON own.oid = pol.polrelid),
       (SELECT count(*) FROM pg_trigger t JOIN own ON own.oid = t.tgrelid WHERE NOT t.tgisinternal AND t.tgparentid = 0),
       (SELECT count(*) FROM pg_constraint con JOIN own ON own.oid = con.conrelid
        WHERE con.contype = 'f' AND con.conparentid = 0)
"""
# Settings a new session would start with (database, then role, then both), re-applied after RESET ALL.
SESSION_DEFAULTS = """
SELECT unnest(setconfig) FROM pg_db_role_setting
WHERE setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND setrole IN (0, (SELECT oid FROM pg_roles WHERE rolname = current_user))
ORDER BY setrole <> 0, setdatabase <> 0
"""


@dataclass(frozen=True)
class LoadResult:
    """What a load did: the files loaded, the stand-ins and skips (one line each), and how many of
    each kind of object the files created (extensions' own objects, and the stand-ins' in the
    schemas that belong to extensions on Supabase, not counted)."""
    source: str
    files: tuple[str, ...]
    counts: dict[str, int]
    stand_ins: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # files the CLI would skip too, versions already applied
    seconds: float = 0.0
    database: str = ""
    server_version: str = ""
    compat: tuple[str, ...] = ()  # what the compatibility layer created first
    sample: TeamSample | None = None  # the sample data written after the load (reset_local_from's rows)

    @property
    def lines(self) -> list[str]:
        """What the CLI shows: the load, what the compatibility layer created, then one line per stand-in or skip."""
        objects = ", ".join(f"{self.counts[k]} {one if self.counts[k] == 1 else k.replace('_', ' ')}"
                            for k, one in KINDS.items())
        kinds = Counter(item.split()[0] for item in self.compat)
        created = [f"Supabase compatibility layer created {', '.join(f'{n} {k}{plural(n)}' for k, n in kinds.items())}"]
        return [f"loaded {len(self.files)} file{plural(len(self.files))} from {self.source} into {self.database!r} "
                f"(PostgreSQL {self.server_version}) in {self.seconds:.1f} s: {objects}",
                *(created if self.compat else []), *self.stand_ins, *self.skipped,
                *(self.sample.lines if self.sample is not None else [])]


def plural(n: int) -> str:
    return "" if n == 1 else "s"


def locate_statements(text: str) -> list[tuple[int, str]]:
    """``history.split_statements(text)``, each with the line (1-based) where its first word is."""
    located, offset = [], 0
    for piece in depth_split(text, ";"):
        statement = piece.rstrip(";").strip()
        if statement:
            start = next((i for kind, i, _ in lex(piece) if kind != "comment" and not piece[i].isspace()),
                         len(piece) - len(piece.lstrip()))
            located.append((text.count("\n", 0, offset + start) + 1, statement))
        offset += len(piece)
    return located


def strip_meta_commands(text: str) -> str:
    """``text`` with psql's backslash commands (``\\restrict``, ``\\connect``, ...) blanked out,
    line numbers kept. Only at the start of a line outside quotes and comments."""
    cuts = [i for kind, i, _ in lex(text) if kind == "code" and text[i] == "\\" and (i == 0 or text[i - 1] == "\n")]
    for i in reversed(cuts):
        end = text.find("\n", i)
        text = text[:i] + (text[end:] if end >= 0 else "")
    return text


def load_migrations(conn_or_url, directory: str | Path, compat: CompatLayer | None = None) -> LoadResult:
    """Apply the folder's ``<version>_<name>.sql`` files not yet in the history, as the CLI does.
    ``compat``: the layer :func:`fkrunbook.compat.apply_compat` returned (else read from the server)."""
    files = migration_files(directory)
    directory = Path(directory)
    ignored = sorted(p.name for p in directory.glob("*.sql") if not history.FILE_PATTERN.match(p.name))
    started = time.monotonic()
    with connection(conn_or_url) as conn:
        _reset_session(conn)
        compat = compat or read_compat(conn)
        before = count_objects(conn)
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '4s'")
            history.ensure_history_table(conn)
        applied = set(history.list_remote(conn))
        loaded = []
        for migration in files:
            if migration.version in applied:
                continue
            statements = locate_statements(migration.path.read_text())
            _run_file(conn, compat, migration.filename, statements, earlier=len(loaded),
                      record=lambda c, m=migration, s=statements: history.record(c, m, [t for _, t in s]))
            loaded.append(migration.filename)
        already = len(files) - len(loaded)
        skipped = [f"skipped file {name}: not named <version>_<name>.sql (the Supabase CLI skips it too)"
                   for name in ignored]
        if already:
            skipped.append(f"{already} migration{'s' if already > 1 else ''} already in the history: not applied again")
        return _result(conn, compat, str(directory), loaded, before, started, skipped)


def load_dump(conn_or_url, file: str | Path, compat: CompatLayer | None = None) -> LoadResult:
    """Load a ``supabase db dump`` / ``pg_dump --schema-only`` file in one transaction."""
    file = dump_file(file)
    statements = locate_statements(strip_meta_commands(file.read_text()))
    started = time.monotonic()
    with connection(conn_or_url) as conn:
        _reset_session(conn)
        compat = compat or read_compat(conn)
        before = count_objects(conn)
        _run_file(conn, compat, file.name, statements)
        return _result(conn, compat, str(file), [file.name], before, started, [])


def reset_local_from(env, migrations_dir: str | Path | None = None, dump: str | Path | None = None, *,
                     rows: int = 0, spec: Spec | None = None, planted: int = 3) -> LoadResult:
    """The local (embedded) environment's database recreated from the team's migrations folder or
    dump, on the compatibility layer (its server started if it is not running), then, with
    ``rows``, filled with sample data for ``spec`` (:func:`fkrunbook.teamdata.seed_team_data`,
    after :func:`fkrunbook.catalog.check_spec`). Built as ``<database>__loading`` and renamed when
    the load and the sample data are complete; on failure that copy is dropped and the previous
    database is left as it was. ``seconds`` counts it all, the server's start included."""
    from .server import ensure_server, rebuild_database

    if (migrations_dir is None) == (dump is None):
        raise SchemaLoadError("give either a migrations folder (--from-migrations) or a dump file (--from-dump), "
                              "not both or neither")
    check_team_rows(rows, planted)
    if rows and spec is None:
        raise SampleDataError("sample data needs the spec that names its tables; pass one (--spec)")
    if env.kind != "embedded":
        raise SchemaLoadError(f"environment {env.name!r} is not the embedded kind: only the local database is "
                              "rebuilt from a team's files; use --env local")
    source = dump_file(dump) if dump is not None else Path(migrations_dir)
    if dump is None:
        migration_files(source)  # a bad folder is refused before any server starts
    started = time.monotonic()

    def build(url: str) -> tuple[CompatLayer, LoadResult]:
        with psycopg.connect(url, autocommit=True) as conn:
            layer = apply_compat(conn)
            result = load_dump(conn, source, layer) if dump is not None else load_migrations(conn, source, layer)
            return layer, replace(result, sample=_seed(env, url, conn, spec, rows, planted) if rows else TeamSample())

    try:
        layer, result = rebuild_database(ensure_server(env.data_dir, env.bin_dir), env.database, build)
    except SchemaLoadError as err:
        raise SchemaLoadError(f"{err}; local database {env.database!r} left as it was", file=err.file,
                              line=err.line, sqlstate=err.sqlstate) from None
    except FkrunbookError as err:  # the spec does not fit the schema, or a table cannot be filled
        hint = " (--rows 0 loads the schema without sample data)" if isinstance(err, SpecMismatchError) else ""
        err.args = (f"{err}; local database {env.database!r} left as it was{hint}",)
        raise
    return replace(result, database=env.database, compat=tuple(layer.created), seconds=time.monotonic() - started)


def _seed(env, url: str, conn: psycopg.Connection, spec: Spec, rows: int, planted: int) -> TeamSample:
    """The spec checked against the schema just loaded (as a run checks it), then the sample data."""
    from .catalog import check_spec
    from .database import Database

    with Database(env, url).read_only() as checking:
        check_spec(checking, spec, env.name)
    try:
        return seed_team_data(conn, spec, rows, planted)
    except psycopg.Error as err:  # not a refused row (the row maker tries others): a broken environment
        message = (err.diag.message_primary or str(err) or type(err).__name__).splitlines()[0]
        raise SampleDataError(f"could not write sample data: {message} (SQLSTATE {err.sqlstate}); "
                              "`fkrunbook local stop` and try again") from None


def migration_files(directory: str | Path) -> list[history.MigrationFile]:
    directory = Path(directory)
    if not directory.is_dir():
        raise SchemaLoadError(f"migrations folder {str(directory)!r} does not exist; pass the folder that holds the "
                              "<version>_<name>.sql files (supabase/migrations)")
    files = history.list_local(directory)
    if not files:
        raise SchemaLoadError(f"migrations folder {str(directory)!r} has no <version>_<name>.sql files; pass the "
                              "folder the Supabase CLI reads (supabase/migrations)")
    return files


def dump_file(file: str | Path) -> Path:
    file = Path(file)
    if not file.is_file():
        raise SchemaLoadError(f"dump file {str(file)!r} does not exist; write one with `supabase db dump -f FILE` "
                              "(or pg_dump --schema-only)")
    return file


def count_objects(conn: psycopg.Connection) -> dict[str, int]:
    return dict(zip(KINDS, conn.execute(COUNTS).fetchone()))


def _run_file(conn, compat: CompatLayer, name: str, statements: list[tuple[int, str]], *,
              earlier: int | None = None, record=None) -> None:
    """One file in one transaction (a migration's CONCURRENTLY statements outside it), or none of it."""
    concurrent = earlier is not None
    committed_before, line, statement = None, None, ""
    conn.execute("BEGIN")
    try:
        for line, statement in statements:
            pieces = compat.rewrite(statement)
            if concurrent and pieces == [statement] and CONCURRENT.match(statement_body(statement)):
                conn.execute("COMMIT")
                committed_before = line
                conn.execute(statement)
                conn.execute("BEGIN")
            else:
                for piece in pieces:
                    conn.execute(piece)
        line = None  # a failure from here on is the history insert's or the COMMIT's
        if record:
            record(conn)
        conn.execute("COMMIT")
    except psycopg.Error as err:
        with contextlib.suppress(psycopg.Error):
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        where = f"{name} line {line}" if line else f"{name} (at its end, committing)"
        message = (err.diag.message_primary or str(err) or type(err).__name__).splitlines()[0]
        fix = "fix that statement and load again"
        if err.sqlstate == "0A000" and (missing := line and CREATE_EXTENSION.match(statement_body(statement))):
            fix = (f"fkrunbook has no stand-in for extension {unquote(missing['name'])!r}: install it on this "
                   f"PostgreSQL {compat.server_version} (pg_available_extensions lists what it has) or point the local "
                   "environment's bin_dir at a PostgreSQL that has it")
        kept = (f"statements before line {committed_before} were committed (CONCURRENTLY runs outside the file's "
                "transaction, as in the Supabase CLI)" if committed_before else f"nothing of {name} was kept")
        loaded = f"; {earlier} earlier file{'s' if earlier != 1 else ''} loaded" if concurrent else ""
        raise SchemaLoadError(f"{where}: {message} (SQLSTATE {err.sqlstate}); {fix}; {kept}{loaded}",
                              file=name, line=line, sqlstate=err.sqlstate) from None
    finally:
        _reset_session(conn)


def _reset_session(conn) -> None:
    """RESET ALL as the CLI does after each file, then the database's and role's defaults (a
    connection opened before the compatibility layer gets Supabase's search_path too)."""
    with contextlib.suppress(psycopg.Error):
        conn.execute("RESET ALL")
        for setting in [r[0] for r in conn.execute(SESSION_DEFAULTS)]:
            name, _, value = setting.partition("=")
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))


def _result(conn, compat, source, loaded, before, started, skipped) -> LoadResult:
    after = count_objects(conn)
    return LoadResult(source=source, files=tuple(loaded), counts={k: after[k] - before[k] for k in KINDS},
                      stand_ins=tuple(compat.report()), skipped=tuple(skipped), seconds=time.monotonic() - started,
                      database=conn.info.dbname, server_version=compat.server_version)
