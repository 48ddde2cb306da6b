"""The orphan clean-up's quarantine: list what a run removed, and put it back exactly.

Every row a confirmed clean-up deletes is kept, as jsonb, in ``fkrunbook_quarantine.orphan_rows``
(and in the run's evidence folder). Restoring re-inserts the rows of one run as they were, column
by column (jsonb, arrays, identity values included), in one transaction, and marks them restored
so a second restore does nothing.
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
        groups = conn.execute(text(f"SELECT DISTINCT schema_name, table_name FROM {TABLE} WHERE run_id = :run "
                                   "AND restored_at IS NULL ORDER BY 1, 2"), {"run": run_id}).fetchall()
        for schema, table in groups:
            target = qualified(schema, table)
            cols = conn.execute(text(
                "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 "
                "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"), {"t": target}).scalars().all()
            listed_cols = ", ".join(ident(c) for c in cols)
            try:
                with conn.begin_nested():
                    count = conn.execute(text(
                        f"INSERT INTO {target} ({listed_cols}) OVERRIDING SYSTEM VALUE "
                        f"SELECT {', '.join('r.' + ident(c) for c in cols)} FROM {TABLE} q, "
                        f"jsonb_populate_record(NULL::{target}, q.row_data) r "
                        "WHERE q.run_id = :run AND q.schema_name = :schema AND q.table_name = :table "
                        "AND q.restored_at IS NULL"), {"run": run_id, "schema": schema, "table": table}).rowcount
            except Exception as err:  # a foreign key added since, a row put back by hand: nothing is restored
                detail = str(getattr(err, "orig", err)).splitlines()[0]
                raise QuarantineError(f"cannot restore run {run_id!r} into {schema}.{table}: {db.redact(detail)}; "
                                      "nothing was restored (if a foreign key now rejects the rows, their "
                                      "organization is gone: restore it first)") from None
            conn.execute(text(f"UPDATE {TABLE} SET restored_at = now() WHERE run_id = :run AND schema_name = :schema "
                              "AND table_name = :table AND restored_at IS NULL"),
                         {"run": run_id, "schema": schema, "table": table})
            restored.append((f"{schema}.{table}", count))
    return pd.DataFrame(restored, columns=["table", "rows_restored"])


def _has_restored_column(conn) -> bool:
    return bool(conn.execute(text(
        "SELECT 1 FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attname = 'restored_at' "
        "AND NOT attisdropped"), {"t": TABLE}).scalar())
