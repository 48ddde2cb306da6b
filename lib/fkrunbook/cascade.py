"""Cascade validation: prove that deleting an organization removes the rows that reference it.

Inside ONE transaction that is always rolled back: make a test organization (and a second one
for tables with two organization columns), make one child row per spec'd foreign key that
references it, delete the test organization, and check that each child row is gone while the
second organization is untouched. Nothing is left behind on any environment.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from psycopg import sql

from .catalog import foreign_key_states
from .database import Database
from .errors import CascadeValidationError
from .rowmaker import RowMaker, RowMakerError
from .spec import Spec
from .sqltext import literal

STATEMENT_TIMEOUT = "60s"  # the test touches a handful of rows; its lock waits use the spec's lock_timeout


@dataclass
class CascadeResult:
    checks: pd.DataFrame        # one row per foreign key: child row made, gone after the delete
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
    tables = [spec.parent.table] + spec.child_tables
    before = _counts(db, spec, tables)
    parent = spec.parent
    rows = []
    with db.connect_raw() as conn:
        try:
            conn.execute(f"SET lock_timeout = {literal(spec.migration.lock_timeout)}")
            conn.execute(f"SET statement_timeout = {literal(STATEMENT_TIMEOUT)}")
            maker = RowMaker(conn)
            try:
                test_org = maker.insert(spec.schema, parent.table)[parent.column]
                bystander = maker.insert(spec.schema, parent.table)[parent.column]
                children = []
                for fk in spec.foreign_keys:
                    values = {fk.column: test_org}
                    values.update({other.column: bystander for other in spec.foreign_keys
                                   if other.table == fk.table and other.column != fk.column})
                    row = maker.insert(spec.schema, fk.table, values)
                    key = maker.table(spec.schema, fk.table).primary_key or list(row)
                    children.append((fk, {k: row[k] for k in key}))
            except RowMakerError as err:
                raise CascadeValidationError(f"cannot make test rows: {err}; the cascade test needs rows the "
                                             "database accepts", table=None) from None
            deleted = conn.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                sql.Identifier(spec.schema, parent.table), sql.Identifier(parent.column)), (test_org,)).rowcount
            for fk, key in children:
                remaining = _exists(conn, spec.schema, fk.table, key)
                rows.append((fk.label, fk.on_delete, ", ".join(f"{k}={v}" for k, v in key.items()), deleted == 1,
                             not remaining))
            bystander_kept = _exists(conn, spec.schema, parent.table, {parent.column: bystander})
        finally:
            conn.rollback()
    after = _counts(db, spec, tables)
    checks = pd.DataFrame(rows, columns=["column", "on_delete", "test_row", "organization_deleted", "cascaded"])
    counts = pd.DataFrame({"table": tables, "before": [before[t] for t in tables], "after": [after[t] for t in tables]})
    result = CascadeResult(checks, counts)
    if not result.passed:
        survivors = ", ".join(checks.loc[~checks["cascaded"], "column"])
        raise CascadeValidationError(f"deleting the test organization left rows behind in {survivors}; "
                                     "check the ON DELETE action of those foreign keys", table=survivors)
    if not bystander_kept:
        raise CascadeValidationError("deleting the test organization also removed the second test organization",
                                     table=parent.table)
    return result


def _exists(conn, schema: str, table: str, key: dict) -> bool:
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key)
    return conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier(schema, table), where),
                        list(key.values())).fetchone()[0] > 0


def _counts(db: Database, spec: Spec, tables: list[str]) -> dict[str, int]:
    with db.connect_raw() as conn:
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(spec.schema, t))).fetchone()[0]
                for t in tables}
