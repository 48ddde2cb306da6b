"""Verification after apply: each spec'd key exists, is validated, has its ON DELETE action, and
its column has a valid covering index (or every organization delete scans the child table)."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import text

from .catalog import foreign_key_states, foreign_key_table, index_states
from .database import Database
from .errors import VerificationFailedError
from .spec import Spec


def verify_constraints(db: Database, spec: Spec) -> pd.DataFrame:
    """Check through pg_constraint, information_schema and pg_index; raise
    :class:`VerificationFailedError` naming every key that is not fully in place."""
    with db.read_only() as conn:
        table = foreign_key_table(foreign_key_states(conn, spec))
        rules = dict(conn.execute(text(
            "SELECT constraint_name, delete_rule FROM information_schema.referential_constraints "
            "WHERE constraint_schema = :schema"), {"schema": spec.schema}).fetchall())
        indexes = index_states(conn, spec)
    table["information_schema_delete_rule"] = [rules.get(name, "") for name in table["constraint"]]
    table["covering_index"] = [s.covering or "" for s in indexes]
    failures = []
    for (_, row), idx in zip(table.iterrows(), indexes):
        if not row["exists"]:
            failures.append(f"{row['column']}: missing")
        elif not row["validated"]:
            failures.append(f"{row['column']}: NOT VALID")
        elif row["on_delete"] != row["expected_on_delete"]:
            failures.append(f"{row['column']}: ON DELETE {row['on_delete']}")
        if not idx.covering:
            failures.append(f"{row['column']}: no valid covering index"
                            + (f" ({idx.fk.index} is INVALID)" if idx.leftover else ""))
    table["ok"] = [not any(f.startswith(c + ":") for f in failures) for c in table["column"]]
    if failures:
        raise VerificationFailedError("foreign keys not in place: " + "; ".join(failures)
                                      + "; run migration_preview to see what is pending", failures=failures)
    return table
