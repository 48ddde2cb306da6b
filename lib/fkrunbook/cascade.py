"""Cascade validation: prove that deleting an organization removes the rows that reference it.

Inside ONE transaction that is always rolled back: make a test organization (and a second one
for tables with two organization columns), make one child row per spec'd foreign key that
references it, delete the test organization, and check that each child row is gone while the
second organization is untouched. Nothing is left behind on any environment.

A key ``ON DELETE SET NULL`` (or ``SET DEFAULT``) passes when its child row is still there and no
longer names the test organization. Deferred keys are checked right after the delete, as the
commit of a real delete would check them: a reference left behind to the test organization fails
the test even though the transaction is rolled back.

Every other organization column of a child row names the second organization. Where row-level
security filters a child table for the runbook's role, a row that looks gone may only be hidden:
the transaction's own deletion count for that table must account for it. A database error (a
timeout, a lost connection, a refused delete) stops the test with one line; nothing is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg import sql

from .catalog import foreign_key_states
from .database import Database
from .errors import CascadeValidationError
from .rowmaker import RowMaker, RowMakerError
from .spec import Spec
from .sqltext import literal, qualified

STATEMENT_TIMEOUT = "60s"  # the test touches a handful of rows; its lock waits use the spec's lock_timeout


@dataclass
class CascadeResult:
    checks: pd.DataFrame        # one row per foreign key: child row made, its ON DELETE action done (cascaded)
    counts: pd.DataFrame        # rows per table before the test and after the rollback

    @property
    def passed(self) -> bool:
        return bool(self.checks["cascaded"].all())

    @property
    def counts_match(self) -> bool:
        return bool((self.counts["before"] == self.counts["after"]).all())

    def results(self) -> dict:
        return {"passed": self.passed, "counts_match": self.counts_match,
                "foreign_keys": dict(zip(self.checks["column"], self.checks["cascaded"].astype(bool)))}


def validate_cascade(db: Database, spec: Spec) -> CascadeResult:
    """Run the cascade test in a rolled-back transaction; raise if a child row survives the delete."""
    with db.read_only() as conn:
        states = foreign_key_states(conn, spec)
    missing = [s.fk.label for s in states if not s.exists]
    if missing:
        raise CascadeValidationError(f"no foreign key on {missing[0]} yet: run the apply phase first", table=missing[0])
    tables = _tables(spec)
    before = _counts(db, tables)
    with db.connect_raw() as conn:
        try:
            conn.execute(f"SET lock_timeout = {literal(spec.migration.lock_timeout)}")
            conn.execute(f"SET statement_timeout = {literal(STATEMENT_TIMEOUT)}")
            rows, bystander_kept = _run_test(conn, spec)
        except psycopg.Error as err:  # a timeout, a lost connection, a refused delete: nothing was kept
            raise CascadeValidationError(
                f"the cascade test stopped: {db.redact(_first_line(err))} (SQLSTATE {err.sqlstate or 'none'}); "
                "its transaction was rolled back and nothing was kept; fix the cause and run it again",
                table=None) from err
        finally:
            try:
                conn.rollback()
            except psycopg.Error:
                pass  # the connection is gone, and its transaction with it
    after = _counts(db, tables)
    checks = pd.DataFrame(rows, columns=["column", "on_delete", "test_row", "organization_deleted", "cascaded"])
    counts = pd.DataFrame({"table": [name for name, _ in tables], "before": [before[name] for name, _ in tables],
                           "after": [after[name] for name, _ in tables]})
    result = CascadeResult(checks, counts)
    if not result.passed:
        failed = checks.loc[~checks["cascaded"]]
        survivors = ", ".join(failed.loc[failed["on_delete"] == "cascade", "column"])
        unchanged = ", ".join(f"{c} (ON DELETE {a.upper()})" for c, a in zip(failed["column"], failed["on_delete"])
                              if a != "cascade")
        problems = "; ".join(filter(None, [survivors and f"left rows behind in {survivors}",
                                           unchanged and f"did not clear {unchanged} in its row, or removed the row"]))
        raise CascadeValidationError(f"deleting the test organization {problems}; "
                                     "check the ON DELETE action of those foreign keys",
                                     table=", ".join(failed["column"]))
    if not bystander_kept:
        raise CascadeValidationError("deleting the test organization also removed the second test organization",
                                     table=spec.parent_name)
    return result


def _run_test(conn, spec: Spec) -> tuple[list[tuple], bool]:
    """Make the test rows, delete the test organization, and look at what is left (all in the
    caller's transaction, which the caller rolls back)."""
    parent = spec.parent
    maker = RowMaker(conn)
    try:
        test_org = maker.insert(parent.schema, parent.table)[parent.column]
        bystander = maker.insert(parent.schema, parent.table)[parent.column]
        children = []
        for fk in spec.foreign_keys:
            values = {c: bystander for c in _organization_columns(maker, spec, fk.table)}
            values[fk.column] = test_org  # every other organization column names the bystander
            row = maker.insert(spec.schema, fk.table, values)
            key = maker.table(spec.schema, fk.table).primary_key or list(row)
            children.append((fk, {k: row[k] for k in key}))
    except RowMakerError as err:
        raise CascadeValidationError(f"cannot make test rows: {err}", table=err.table) from None
    hidden = _hidden_tables(conn, spec, children)
    deletions = {t: _deleted(conn, spec.schema, t) for t in hidden}
    deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(
        sql.Identifier(parent.schema, parent.table), sql.Identifier(parent.column)), (test_org,)).rowcount
    _check_deferred(conn)
    done = [_took_effect(conn, spec, fk, key, test_org) for fk, key in children]
    for table in hidden:  # row-level security may hide a row that is still there: count the deletions
        looks_gone = [i for i, (fk, _) in enumerate(children) if fk.table == table and done[i]
                      and fk.on_delete == "cascade"]
        if _deleted(conn, spec.schema, table) - deletions[table] < len(looks_gone):
            for i in looks_gone:
                done[i] = False
    rows = [(fk.label, fk.on_delete, ", ".join(f"{k}={v}" for k, v in key.items()), deleted == 1, done[i])
            for i, (fk, key) in enumerate(children)]
    return rows, _exists(conn, parent.schema, parent.table, {parent.column: bystander})


def _took_effect(conn, spec: Spec, fk, key: dict, test_org) -> bool:
    """Whether the key's ON DELETE action happened to its child row: gone (CASCADE), or still there
    and no longer naming the test organization (SET NULL, SET DEFAULT)."""
    if fk.on_delete == "cascade":
        return not _exists(conn, spec.schema, fk.table, key)
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key)
    row = conn.execute(sql.SQL("SELECT CAST({} AS text) FROM {} WHERE {}").format(
        sql.Identifier(fk.column), sql.Identifier(spec.schema, fk.table), where), list(key.values())).fetchone()
    if row is None:
        return False
    return row[0] is None if fk.on_delete == "set null" else row[0] != str(test_org)


def _check_deferred(conn) -> None:
    """Check the deferred constraints now, as the commit of a real delete would (inside a savepoint
    rolled back afterwards, so the transaction goes on as it was): raise when the delete leaves a
    reference that only the commit would have refused."""
    try:
        with conn.transaction():
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
            raise psycopg.Rollback()
    except psycopg.errors.ForeignKeyViolation as err:
        raise CascadeValidationError(
            f"deleting the test organization breaks the deferred foreign key {err.diag.constraint_name} on "
            f"{err.diag.schema_name}.{err.diag.table_name} (checked at commit): {_first_line(err)}; a real delete "
            "of an organization would fail the same way: give that key ON DELETE CASCADE or SET NULL, or add it to "
            "the spec", table=err.diag.table_name) from None


def _organization_columns(maker: RowMaker, spec: Spec, table: str) -> list[str]:
    """The table's columns with a one-column foreign key to the organization column."""
    return [cols[0] for cols, ref_schema, ref_table, ref_cols in maker.table(spec.schema, table).foreign_keys.values()
            if len(cols) == 1 and (ref_schema, ref_table, ref_cols) == (spec.parent.schema, spec.parent.table,
                                                                         [spec.parent.column])]


def _hidden_tables(conn, spec: Spec, children) -> list[str]:
    """Child tables whose rows row-level security filters for this role (FORCE ROW LEVEL SECURITY
    on an owner, or a role that is not the owner): a row missing there may only be hidden."""
    tables = sorted({fk.table for fk, _ in children})
    return [t for t in tables if conn.execute("SELECT row_security_active(CAST(%s AS regclass))",
                                              (qualified(spec.schema, t),)).fetchone()[0]]


def _deleted(conn, schema: str, table: str) -> int:
    """Rows this transaction has deleted from the table (and its partitions), row-level security or not."""
    name = qualified(schema, table)
    return conn.execute("SELECT coalesce(sum(pg_stat_get_xact_tuples_deleted(r)), 0) FROM (SELECT CAST(%s AS regclass) "
                        "AS r UNION SELECT relid FROM pg_partition_tree(CAST(%s AS regclass))) t", (name, name)).fetchone()[0]


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _exists(conn, schema: str, table: str, key: dict) -> bool:
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key)
    return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(schema, table), where),
                        list(key.values())).fetchone()[0] > 0


def _tables(spec: Spec) -> list[tuple[str, tuple[str, str]]]:
    """The parent and the child tables: (the name the counts show, (schema, table))."""
    return ([(spec.parent_name, (spec.parent.schema, spec.parent.table))]
            + [(t, (spec.schema, t)) for t in spec.child_tables])


def _counts(db: Database, tables: list[tuple[str, tuple[str, str]]]) -> dict[str, int]:
    with db.connect_raw() as conn:
        return {name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table))).fetchone()[0]
                for name, table in tables}
