"""What the live database has: relations, columns, and the state of each spec'd foreign key.

Every identifier the runbook later puts into SQL has been found here first, in the catalog.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Connection

from .errors import SpecMismatchError
from .spec import ForeignKey, Spec

RELKINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "f": "foreign table"}
BASE_TABLE = ("r", "p")
ON_DELETE_CODES = {"a": "no action", "r": "restrict", "c": "cascade", "n": "set null", "d": "set default"}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool


@dataclass(frozen=True)
class ForeignKeyState:
    """The constraint the database has for one spec'd foreign key, if any."""
    fk: ForeignKey
    exists: bool
    name: str | None = None
    validated: bool = False
    on_delete: str | None = None
    definition: str | None = None

    @property
    def matches(self) -> bool:
        return self.exists and self.validated and self.on_delete == self.fk.on_delete


def relation_kind(conn: Connection, schema: str, name: str) -> str | None:
    """pg_class.relkind of schema.name, or None when there is no such relation."""
    return conn.execute(text(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relname = :name"), {"schema": schema, "name": name}).scalar()


def schema_exists(conn: Connection, schema: str) -> bool:
    return conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"),
                        {"schema": schema}).scalar() is not None


def user_schemas(conn: Connection) -> list[str]:
    """The database's schemas, without PostgreSQL's own (pg_*, information_schema)."""
    return list(conn.execute(text(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' "
        "ORDER BY 1")).scalars())


def table_columns(conn: Connection, schema: str, table: str) -> dict[str, Column]:
    rows = conn.execute(text(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relname = :table AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum"), {"schema": schema, "table": table})
    return {name: Column(name, type_, not_null) for name, type_, not_null in rows}


def is_unique_key(conn: Connection, schema: str, table: str, column: str) -> bool:
    """Whether a valid, non-partial unique index or primary key covers exactly this one column."""
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
        "WHERE n.nspname = :schema AND c.relname = :table AND a.attname = :column AND i.indisunique "
        "AND i.indisvalid AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL"),
        {"schema": schema, "table": table, "column": column}).scalar())


def check_spec(conn: Connection, spec: Spec, environment: str | None = None) -> pd.DataFrame:
    """Check every name in the spec against the live catalog, before anything runs.

    Raises :class:`SpecMismatchError` for a problem that would make the change impossible (a
    missing parent, child table or column, a view where a table is needed, a type mismatch).
    An intentional exception whose table is absent in this environment is reported, not fatal:
    it only documents a reference that has no foreign key.
    """
    def fail(message, table, column=None):
        where = f" in environment {environment!r}" if environment else ""
        raise SpecMismatchError(f"{message}{where}; fix the spec ({spec.path or 'spec'}) or the database",
                                table=table, column=column, environment=environment)

    s, parent, ps, pname = spec.schema, spec.parent, spec.parent.schema, spec.parent_name
    rows = []
    if ps != s and not schema_exists(conn, ps):
        fail(f"parent schema {ps!r} (parent table {ps}.{parent.table}) does not exist; schemas there: "
             f"{', '.join(user_schemas(conn)) or 'none'}", parent.table)
    kind = relation_kind(conn, ps, parent.table)
    if kind is None:
        fail(f"parent table {ps}.{parent.table} does not exist", parent.table)
    if kind not in BASE_TABLE:
        fail(f"parent {ps}.{parent.table} is a {RELKINDS.get(kind, kind)}, not a table", parent.table)
    parent_cols = table_columns(conn, ps, parent.table)
    if parent.column not in parent_cols:
        fail(f"parent column {pname}.{parent.column} does not exist", parent.table, parent.column)
    if not is_unique_key(conn, ps, parent.table, parent.column):
        fail(f"parent column {pname}.{parent.column} is not a primary key or unique", parent.table, parent.column)
    parent_type = parent_cols[parent.column].type
    rows.append((f"{pname}.{parent.column}", "parent key", RELKINDS[kind], parent_type, "ok"))

    for fk in spec.foreign_keys:
        kind = relation_kind(conn, s, fk.table)
        if kind is None:
            fail(f"table {s}.{fk.table} (foreign key {fk.label}) does not exist", fk.table)
        if kind not in BASE_TABLE:
            fail(f"{s}.{fk.table} is a {RELKINDS.get(kind, kind)}: a foreign key needs a table", fk.table)
        cols = table_columns(conn, s, fk.table)
        if fk.column not in cols:
            fail(f"column {fk.label} does not exist", fk.table, fk.column)
        if cols[fk.column].type != parent_type:
            fail(f"column {fk.label} is {cols[fk.column].type} but {pname}.{parent.column} is {parent_type}",
                 fk.table, fk.column)
        rows.append((fk.label, "foreign key", RELKINDS[kind], cols[fk.column].type, "ok"))

    for exc in spec.exceptions:
        kind = relation_kind(conn, s, exc.table)
        if kind is None:
            rows.append((exc.label, "intentional exception", "absent", "", "absent here: nothing to check"))
            continue
        cols = table_columns(conn, s, exc.table)
        for col in [exc.column] + ([exc.discriminator.column] if exc.discriminator else []) + \
                ([exc.payload.column] if exc.payload else []):
            if col not in cols:
                fail(f"column {exc.table}.{col} (intentional exception {exc.label}) does not exist", exc.table, col)
        if exc.payload and cols[exc.payload.column].type not in ("jsonb", "json"):
            fail(f"payload column {exc.table}.{exc.payload.column} is {cols[exc.payload.column].type}, not jsonb: "
                 "name the jsonb column that carries the organization ids", exc.table, exc.payload.column)
        rows.append((exc.label, "intentional exception", RELKINDS.get(kind, kind), cols[exc.column].type, "ok"))
    return pd.DataFrame(rows, columns=["column", "role", "relation", "type", "status"])


def foreign_key_states(conn: Connection, spec: Spec) -> list[ForeignKeyState]:
    """For each spec'd foreign key, the constraint now in place: the spec's name, or any other
    single-column FK from the same column to the parent key (so a differently named FK is not added twice)."""
    states = []
    for fk in spec.foreign_keys:
        row = conn.execute(text(
            "SELECT con.conname, con.convalidated, con.confdeltype, pg_get_constraintdef(con.oid) "
            "FROM pg_constraint con "
            "JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = con.conkey[1] "
            "JOIN pg_attribute pa ON pa.attrelid = p.oid AND pa.attnum = con.confkey[1] "
            "WHERE con.contype = 'f' AND n.nspname = :schema AND c.relname = :table AND a.attname = :column "
            "AND cardinality(con.conkey) = 1 AND pn.nspname = :parent_schema AND p.relname = :parent "
            "AND pa.attname = :parent_column "
            "ORDER BY con.conname = :name DESC, con.conname LIMIT 1"),
            {"schema": spec.schema, "table": fk.table, "column": fk.column, "parent_schema": spec.parent.schema,
             "parent": spec.parent.table,
             "parent_column": spec.parent.column, "name": fk.constraint}).fetchone()
        if row is None:
            states.append(ForeignKeyState(fk, exists=False))
        else:
            states.append(ForeignKeyState(fk, True, row[0], bool(row[1]), ON_DELETE_CODES[row[2]], row[3]))
    return states


def foreign_key_table(states: list[ForeignKeyState]) -> pd.DataFrame:
    return pd.DataFrame([{
        "column": s.fk.label, "constraint": s.name or "(none)", "exists": s.exists, "validated": s.validated,
        "on_delete": s.on_delete or "", "expected_on_delete": s.fk.on_delete, "ok": s.matches,
    } for s in states])


@dataclass(frozen=True)
class IndexState:
    """Indexes relevant to one foreign-key column."""
    fk: ForeignKey
    covering: str | None       # a valid index led by the FK column, over every row with a value there
    named_exists: bool         # the spec's index name exists (on any table of the schema)
    named_valid: bool

    @property
    def leftover(self) -> bool:
        """The spec's index exists but is INVALID: a failed CONCURRENTLY build to drop and rebuild."""
        return self.named_exists and not self.named_valid


def covering_index(conn: Connection, schema: str, table: str, column: str, prefer: str = "") -> str | None:
    """The name of a valid index of schema.table whose leading column is ``column`` and that every
    row with a value there is in: no ``WHERE``, or ``WHERE <column> IS NOT NULL`` (the delete and
    the key check look for ``column = $1``, which implies it; PostgreSQL uses such an index for
    them). ``prefer`` first, then the one with the fewest columns; None when there is none."""
    return conn.execute(text(
        "SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
        "WHERE n.nspname = :schema AND c.relname = :table AND a.attname = :column "
        "AND i.indisvalid AND i.indisready AND (i.indpred IS NULL "
        "OR pg_get_expr(i.indpred, i.indrelid) = '(' || quote_ident(a.attname) || ' IS NOT NULL)') "
        "ORDER BY ic.relname = :name DESC, i.indpred IS NOT NULL, i.indnatts, ic.relname LIMIT 1"),
        {"schema": schema, "table": table, "column": column, "name": prefer}).scalar()


def index_states(conn: Connection, spec: Spec) -> list[IndexState]:
    states = []
    for fk in spec.foreign_keys:
        covering = covering_index(conn, spec.schema, fk.table, fk.column, fk.index)
        named = conn.execute(text(
            "SELECT i.indisvalid AND i.indisready FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE n.nspname = :schema AND ic.relname = :name"),
            {"schema": spec.schema, "name": fk.index}).fetchone()
        states.append(IndexState(fk, covering, named is not None, bool(named and named[0])))
    return states


def environment_identity(conn: Connection, environment: str) -> dict:
    """What identifies the database a plan is for: the environment name, the database, and the
    cluster's system identifier where the role may read it (not on Supabase's non-superuser roles)."""
    database = conn.execute(text("SELECT current_database()")).scalar()
    try:
        with conn.begin_nested():
            system_id = str(conn.execute(text("SELECT system_identifier FROM pg_control_system()")).scalar())
    except Exception:  # permission denied: the name and database still identify it
        system_id = None
    return {"environment": environment, "database": database, "system_identifier": system_id}
