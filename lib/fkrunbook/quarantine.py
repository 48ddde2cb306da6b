"""The orphan clean-up's quarantine: list what a run removed, and put it back exactly.

Every row a confirmed clean-up deletes (or keeps with its column cleared, for a SET NULL or SET
DEFAULT key) is kept, as jsonb, in ``fkrunbook_quarantine.orphan_rows`` (and in the run's evidence
folder). Restoring re-inserts the deleted rows of one run as they were, column by column (jsonb,
arrays, identity values included), and gives each cleared column its value back (the row found by
its primary key), in one transaction, and marks them restored so a second restore does nothing.
"""
from __future__ import annotations

import pandas as pd
from sqlalchemy import text

from .database import Database
from .errors import QuarantineError
from .guard import exclusive_change
from .orphans import QUARANTINE_SCHEMA, QUARANTINE_TABLE
from .sqltext import ident, qualified

TABLE = qualified(QUARANTINE_SCHEMA, QUARANTINE_TABLE)


def list_quarantine(db: Database, run_id: str | None = None) -> pd.DataFrame:
    """Rows kept per run and table, newest first (restored ones counted apart)."""
    columns = ["run_id", "table", "column", "rows", "restored", "quarantined_at"]
    with db.read_only() as conn:
        if conn.execute(text("SELECT to_regclass(:t)"), {"t": TABLE}).scalar() is None:
            return pd.DataFrame(columns=columns)
        restored = _has_restored_column(conn)
        rows = conn.execute(text(
            f"SELECT run_id, schema_name || '.' || table_name, column_name, count(*), "
            f"{'count(restored_at)' if restored else '0'}, min(quarantined_at) FROM {TABLE} "
            f"WHERE (CAST(:run AS text) IS NULL OR run_id = :run) GROUP BY 1, 2, 3 ORDER BY 6 DESC, 2, 3"),
            {"run": run_id}).fetchall()
    return pd.DataFrame(rows, columns=columns)


def restore_quarantine(db: Database, run_id: str) -> pd.DataFrame:
    """Put back every row the clean-up of ``run_id`` removed and has not been restored yet."""
    if db.env.protected:
        raise QuarantineError(f"environment {db.env.name!r} is protected: restore there by hand after review "
                              f"(rows: SELECT row_data FROM {TABLE} WHERE run_id = '{run_id}')")
    listed = list_quarantine(db, run_id)
    if listed.empty:
        raise QuarantineError(f"run {run_id!r} has nothing in quarantine; `fkrunbook quarantine list` shows the runs "
                              "whose clean-up removed rows")
    restored = []
    with db.transaction() as conn, exclusive_change(db, conn.connection.driver_connection, "quarantine"):
        conn.execute(text(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS restored_at timestamptz"))
        conn.execute(text(f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS action text NOT NULL DEFAULT 'delete'"))
        groups = conn.execute(text(f"SELECT schema_name, table_name, column_name, action FROM {TABLE} "
                                   "WHERE run_id = :run AND restored_at IS NULL GROUP BY 1, 2, 3, 4 "
                                   "ORDER BY action <> 'delete', 1, 2, 3"), {"run": run_id}).fetchall()
        for schema, table, column, action in groups:
            target = qualified(schema, table)
            params = {"run": run_id, "schema": schema, "table": table, "column": column, "action": action}
            try:
                with conn.begin_nested():
                    if action == "delete":
                        count = _reinsert(conn, target, params)
                    else:
                        count = _set_back(conn, target, column, params)
            except QuarantineError:
                raise
            except Exception as err:  # a foreign key added since, a row put back by hand: nothing is restored
                detail = str(getattr(err, "orig", err)).splitlines()[0]
                raise QuarantineError(f"cannot restore run {run_id!r} into {schema}.{table}: {db.redact(detail)}; "
                                      "nothing was restored (if a foreign key now rejects the rows, their "
                                      "organization is gone: restore it first)") from None
            conn.execute(text(f"UPDATE {TABLE} SET restored_at = now() WHERE run_id = :run AND schema_name = :schema "
                              "AND table_name = :table AND column_name = :column AND action = :action "
                              "AND restored_at IS NULL"), params)
            restored.append((f"{schema}.{table}", count))
    restored = pd.DataFrame(restored, columns=["table", "rows_restored"])
    return restored.groupby("table", as_index=False, sort=False)["rows_restored"].sum()


# The run's kept rows of one table, column and action (``r``: each as a row of the table).
KEPT = (f"{TABLE} q, jsonb_populate_record(NULL::{{target}}, q.row_data) r")
PICKED = ("q.run_id = :run AND q.schema_name = :schema AND q.table_name = :table AND q.column_name = :column "
          "AND q.action = :action AND q.restored_at IS NULL")


def _reinsert(conn, target: str, params: dict) -> int:
    """Insert the deleted rows back, every column as it was (identity values included)."""
    cols = _columns(conn, target)
    return conn.execute(text(
        f"INSERT INTO {target} ({', '.join(ident(c) for c in cols)}) OVERRIDING SYSTEM VALUE "
        f"SELECT {', '.join('r.' + ident(c) for c in cols)} FROM {KEPT.format(target=target)} WHERE {PICKED}"),
        params).rowcount


def _set_back(conn, target: str, column: str, params: dict) -> int:
    """Give the cleared column its value back, in each row found by its primary key."""
    key = conn.execute(text(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary ORDER BY a.attnum"), {"t": target}).scalars().all()
    if not key:
        raise QuarantineError(f"cannot restore {target}.{column}: the table has no primary key to find its rows by; "
                              f"nothing was restored: set the column back by hand from the rows in {TABLE} "
                              f"(run_id '{params['run']}')")
    match = " AND ".join(f"t.{ident(k)} = r.{ident(k)}" for k in key)
    return conn.execute(text(f"UPDATE {target} t SET {ident(column)} = r.{ident(column)} "
                             f"FROM {KEPT.format(target=target)} WHERE {match} AND {PICKED}"), params).rowcount


def _columns(conn, target: str) -> list[str]:
    return conn.execute(text(
        "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"), {"t": target}).scalars().all()


def _has_restored_column(conn) -> bool:
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attname = 'restored_at' "
        "AND NOT attisdropped"), {"t": TABLE}).scalar())
