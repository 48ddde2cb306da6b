"""Orphans: rows whose organization no longer exists.

For a foreign-key column an orphan is a non-NULL value with no parent row (a NOT EXISTS
anti-join; never NOT IN, which one NULL turns into "no rows"); the parent table is looked up in
its own schema, which may differ from the children's. The clean-up does to an orphan what
its key will do when an organization is deleted: it deletes the row (CASCADE), or keeps it and
clears the column (SET NULL, SET DEFAULT). For a polymorphic event-store reference an orphan is a
stream of the organization type whose organization is gone, or an organization id under one of
the spec's payload keys whose organization is gone; those are reported, never deleted (the event
store is append-only history). Beside them the check shows what the data says about those
references (:mod:`fkrunbook.polymorphic`): the discriminator's values and the payload keys that
hold organization ids, with a warning where the spec's filter or keys miss them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from IPython.display import Markdown
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from .catalog import environment_identity, relation_kind
from .database import Database
from .errors import EvidenceUnwritableError, OrphanCleanupError, OrphansPresentError
from .guard import exclusive_change, require_approval
from .polymorphic import UUID_PATTERN, Profile, profile_exceptions
from .spec import ForeignKey, IntentionalException, Payload, Spec
from .sqltext import ident, literal, qualified

QUARANTINE_SCHEMA = "fkrunbook_quarantine"
QUARANTINE_TABLE = "orphan_rows"
CLEARED_TO = {"set null": "NULL", "set default": "DEFAULT"}  # keys whose clean-up keeps the row


def cleanup_action(fk: ForeignKey) -> str:
    """What the clean-up does to an orphan of this key: ``delete`` the row, or ``set null`` / ``set
    default`` its column (as the key will when an organization is deleted)."""
    return fk.on_delete if fk.on_delete in CLEARED_TO else "delete"


def orphan_predicate(spec: Spec, fk: ForeignKey, alias: str = "c") -> str:
    parent = spec.parent
    return (f"{alias}.{ident(fk.column)} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
            f"{qualified(parent.schema, parent.table)} p WHERE p.{ident(parent.column)} = {alias}.{ident(fk.column)})")


def orphan_query(spec: Spec, fk: ForeignKey, select: str = "c.*") -> str:
    return f"SELECT {select} FROM {qualified(spec.schema, fk.table)} c WHERE {orphan_predicate(spec, fk)}"


def stream_orphan_query(spec: Spec, exc: IntentionalException, select: str) -> str:
    d, parent = exc.discriminator, spec.parent
    return (f"SELECT {select} FROM {qualified(spec.schema, exc.table)} e WHERE e.{ident(d.column)} = :stream_type "
            f"AND NOT EXISTS (SELECT 1 FROM {qualified(parent.schema, parent.table)} p "
            f"WHERE p.{ident(parent.column)} = e.{ident(exc.column)})")


def payload_reference(payload: Payload, key: str, alias: str = "e") -> str:
    """The text under one payload key: ``(e.event_data ->> 'org_id')``, or ``#>> '{organization,id}'``
    one level down."""
    path = payload.path(key)
    if len(path) == 1:
        return f"({alias}.{ident(payload.column)} ->> {literal(key)})"
    return f"({alias}.{ident(payload.column)} #>> {literal('{' + ','.join(path) + '}')})"


def payload_orphan_query(spec: Spec, exc: IntentionalException, select: str, key: str | None = None) -> str:
    """Rows whose jsonb payload names, under ``key`` (default the spec's first), an organization (a
    well-formed uuid) that does not exist."""
    parent = spec.parent
    ref = payload_reference(exc.payload, key or exc.payload.keys[0])
    return (f"SELECT {select} FROM {qualified(spec.schema, exc.table)} e WHERE {ref} ~ {literal(UUID_PATTERN)} "
            f"AND NOT EXISTS (SELECT 1 FROM {qualified(parent.schema, parent.table)} p "
            f"WHERE p.{ident(parent.column)} = {ref}::uuid)")


@dataclass
class OrphanReport:
    summary: pd.DataFrame                 # one row per spec'd column
    samples: dict[str, pd.DataFrame] = field(default_factory=dict)  # "table.column" -> orphan rows / stream ids
    seen: Profile = field(default_factory=Profile)  # discriminator values and payload keys, from the data

    @property
    def warnings(self) -> list[str]:
        """Where the spec's discriminator filter or payload keys miss what the data holds."""
        return self.seen.warnings

    @property
    def fk_orphans(self) -> dict[str, int]:
        rows = self.summary[self.summary["kind"] == "foreign key"]
        return dict(zip(rows["column"], rows["orphan_rows"].astype(int)))

    @property
    def clean(self) -> bool:
        return not any(self.fk_orphans.values())

    @property
    def verdict(self) -> str:
        if self.clean:
            return "GO: no orphan rows in the foreign-key columns; the constraints can be added."
        total = sum(self.fk_orphans.values())
        return (f"NO-GO for apply: {total} orphan rows in the foreign-key columns; "
                "run 02_orphan_cleanup (dry run first, then confirm = True).")

    def conclude(self, fail: bool = False) -> Markdown:
        """The verdict, for display; with ``fail``, raise :class:`OrphansPresentError` when not clean
        (a scheduled orphan detection should fail loudly). The warnings follow it."""
        if fail and not self.clean:
            raise OrphansPresentError(self.fk_orphans)
        return Markdown(f"**{self.verdict}**" + "".join(f"\n\n**Warning:** {w}" for w in self.warnings))

    def results(self) -> dict:
        return {"orphans": self.fk_orphans, "clean": self.clean,
                "orphan_streams": {r["column"]: int(r["orphan_rows"]) for _, r in self.summary.iterrows()
                                   if r["kind"] in ("event stream", "event payload")},
                "warnings": self.warnings, **self.seen.results()}


def find_orphans(db: Database, spec: Spec, sample_size: int = 5) -> OrphanReport:
    """Count orphans in every spec'd column and sample a few per foreign key. Read-only."""
    rows, samples = [], {}
    with db.read_only() as conn:
        for fk in spec.foreign_keys:
            count = conn.execute(text(orphan_query(spec, fk, "count(*)"))).scalar()
            limit = sample_size if count else 0  # with no orphan, a LIMIT query would scan the table again
            result = conn.execute(text(orphan_query(spec, fk) + " LIMIT :n"), {"n": limit})
            samples[fk.label] = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
            rows.append((fk.label, "foreign key", int(count), None,
                         f"{cleanup_action(fk)} in orphan_cleanup" if count else "none"))
        for exc in spec.exceptions:
            if exc.discriminator is None:
                continue
            if relation_kind(conn, spec.schema, exc.table) is None:
                rows.append((exc.label, "event stream", 0, 0, "absent in this environment"))
                continue
            column = f"e.{ident(exc.column)}"
            params = {"stream_type": exc.discriminator.value}
            count, streams = conn.execute(text(stream_orphan_query(
                spec, exc, f"count(*), count(DISTINCT {column})")), params).one()
            result = conn.execute(text(stream_orphan_query(
                spec, exc, f"{column} AS {ident(exc.column)}, count(*) AS rows") +
                f" GROUP BY {column} ORDER BY count(*) DESC, {column} LIMIT :n"), {**params, "n": sample_size})
            samples[exc.label] = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
            rows.append((exc.label, "event stream", int(count), int(streams),
                         "report only (append-only history)" if count else "none"))
        for exc in spec.exceptions:
            if exc.payload is None or relation_kind(conn, spec.schema, exc.table) is None:
                continue
            for key in exc.payload.keys:
                ref = payload_reference(exc.payload, key)
                count, refs = conn.execute(text(payload_orphan_query(
                    spec, exc, f"count(*), count(DISTINCT {ref})", key))).one()
                rows.append((exc.payload.label(exc.table, key), "event payload", int(count), int(refs),
                             "report only (append-only history)" if count else "none"))
        seen = profile_exceptions(conn, spec)
    summary = pd.DataFrame(rows, columns=["column", "kind", "orphan_rows", "orphan_streams", "action"])
    summary["orphan_streams"] = summary["orphan_streams"].astype("Int64")
    return OrphanReport(summary, samples, seen)


@dataclass
class CleanupResult:
    confirmed: bool
    summary: pd.DataFrame                  # column, action, rows (deleted or cleared, or that would be)
    rows: dict[str, pd.DataFrame]          # "table.column" -> the rows
    plan_hash: str                         # sha256 of exactly these rows on this database
    quarantine_files: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(self.summary["rows"].sum())

    def summary_text(self) -> Markdown:
        cleared = int(self.summary.loc[self.summary["action"] != "delete", "rows"].sum())
        if cleared:
            verb = "Cleaned up" if self.confirmed else "Would clean up"
        else:
            verb = "Deleted" if self.confirmed else "Would delete"
        how = f" ({cleared} kept with the column cleared)" if cleared else ""
        return Markdown(f"**{verb} {self.total} orphan row(s){how}.** Clean-up plan hash `{self.plan_hash}` "
                        f"(a protected environment needs it: `approve = \"{self.plan_hash}\"` here, `--approve` on the "
                        "command line).")

    def results(self) -> dict:
        return {"confirmed": self.confirmed, "rows": dict(zip(self.summary["column"], self.summary["rows"].astype(int))),
                "cleanup_hash": self.plan_hash, "quarantine_files": self.quarantine_files}


def clean_up_orphans(db: Database, spec: Spec, evidence_dir: str | Path, run_id: str,
                     confirm: bool = False, approve: str = "") -> CleanupResult:
    """Without ``confirm``: show the orphan rows that would be deleted and their plan hash (read-only).

    With ``confirm``: in ONE transaction, lock those rows, check the approval (required on a
    protected environment: the plan hash of exactly these rows), delete them (a SET NULL or SET
    DEFAULT key's: clear the column, keeping the row), check the deferred keys as the commit will,
    and copy each row (as jsonb, exactly as it was) into ``fkrunbook_quarantine.orphan_rows`` and
    into ``<evidence_dir>/quarantine/<table>.<column>.jsonl``. The transaction commits only after
    the files are written and synced, so a row is never changed without both copies, and no file
    is written for a change the database refuses. Only one clean-up or apply runs on a database at
    a time.
    """
    if not confirm:
        with db.read_only() as conn:
            found = _orphan_rows(conn, spec, lock=False)
            digest = _rows_hash(conn, db, spec, found)
        frames = {label: pd.DataFrame([r for _, r in rows]) for label, rows in found.items()}
        return CleanupResult(False, _summary(spec, frames), frames, digest)
    out = Path(evidence_dir) / "quarantine"
    frames, files = {}, []
    with db.transaction() as conn, exclusive_change(db, conn.connection.driver_connection, spec.name):
        found = _orphan_rows(conn, spec, lock=True)
        digest = _rows_hash(conn, db, spec, found)
        require_approval(db, "orphan clean-up", "orphan_cleanup", digest, approve or None)
        _ensure_quarantine(conn)
        moved: dict[str, str] = {}  # physical key at the scan -> now, for a row cleared in an earlier column
        try:
            with conn.begin_nested():  # a refusal leaves the transaction usable (to unlock), then it rolls back
                for fk in spec.foreign_keys:
                    frames[fk.label] = _clean_up(conn, spec, fk, [key for key, _ in found[fk.label]], run_id, moved)
                conn.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # deferred keys, checked as the commit will
        except IntegrityError as err:
            raise _refused(err) from None
        for fk in spec.foreign_keys:
            path = out / f"{fk.table}.{fk.column}.jsonl"
            try:
                out.mkdir(parents=True, exist_ok=True)
                _write_synced(path, frames[fk.label])
            except OSError as err:  # the transaction rolls back: no row is deleted without its copy
                raise EvidenceUnwritableError(f"cannot write the quarantine copy {path} ({err.strerror or err}); "
                                              "nothing was deleted: free space or fix the evidence folder") from None
            files.append(str(path.relative_to(Path(evidence_dir))))
    frames = {label: pd.DataFrame(rows) for label, rows in frames.items()}
    return CleanupResult(True, _summary(spec, frames), frames, digest, files)


def _clean_up(conn, spec: Spec, fk: ForeignKey, keys: list[str], run_id: str, moved: dict[str, str]) -> list[dict]:
    """Delete the rows (physical keys ``keys``, as the scan saw them), or clear their ``fk.column``,
    copying each row as it is into the quarantine table first; returns those copies. A cleared row
    gets a new physical key: ``moved`` follows it, for a second column of the same row."""
    table, action = qualified(spec.schema, fk.table), cleanup_action(fk)
    now = {key: moved.get(key, key) for key in keys}
    where = "(c.tableoid::text || ':' || c.ctid::text) = ANY(:keys)"
    params = {"keys": list(now.values()), "run_id": run_id, "schema": spec.schema, "table": fk.table,
              "column": fk.column, "action": action}
    keep = (f"INSERT INTO {qualified(QUARANTINE_SCHEMA, QUARANTINE_TABLE)} "
            "(run_id, schema_name, table_name, column_name, action, row_data) "
            "SELECT :run_id, :schema, :table, :column, :action, to_jsonb(c) FROM {rows} RETURNING row_data")
    if action == "delete":
        return conn.execute(text(f"WITH gone AS (DELETE FROM {table} c WHERE {where} RETURNING c.*) "
                                 + keep.format(rows="gone c")), params).scalars().all()
    kept = conn.execute(text(keep.format(rows=f"{table} c WHERE {where}")), params).scalars().all()
    renamed = dict(conn.execute(text(
        f"UPDATE {table} t SET {ident(fk.column)} = {CLEARED_TO[action]} "
        f"FROM (SELECT c.tableoid AS rel, c.ctid AS tid FROM {table} c WHERE {where}) old "
        "WHERE t.tableoid = old.rel AND t.ctid = old.tid "
        "RETURNING old.rel::text || ':' || old.tid::text, t.tableoid::text || ':' || t.ctid::text"), params).fetchall())
    for key, current in now.items():
        moved[key] = renamed.get(current, current)
    return kept


def _refused(err: IntegrityError) -> OrphanCleanupError:
    """One line for a clean-up the database refused: a row still referenced from another table
    through a key without an ON DELETE action (at once, or deferred to the commit)."""
    diag = err.orig.diag
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    return OrphanCleanupError(
        f"the database refused the clean-up: {diag.message_primary}{detail}; nothing was deleted and no quarantine "
        "file was written: remove or re-point the rows that depend on these orphans first, or give that key an "
        "ON DELETE action", table=diag.table_name, constraint=diag.constraint_name)


def _orphan_rows(conn, spec: Spec, lock: bool) -> dict[str, list[tuple[str, dict]]]:
    """Per foreign key, the orphan rows as (physical key, row): locked FOR UPDATE when cleaning up.
    A row orphaned in two columns whose keys delete is listed under the first only, so it is deleted
    (and kept) once; a row that a key deletes is not listed under a key that clears its column."""
    found, deleted = {}, set()
    for fk in sorted(spec.foreign_keys, key=lambda fk: cleanup_action(fk) != "delete"):  # deleting keys first
        rows = conn.execute(text(
            orphan_query(spec, fk, "c.tableoid::text || ':' || c.ctid::text, to_jsonb(c)")
            + (" FOR UPDATE OF c" if lock else ""))).fetchall()
        found[fk.label] = [(key, row) for key, row in rows if (fk.table, key) not in deleted]
        if cleanup_action(fk) == "delete":
            deleted |= {(fk.table, key) for key, _ in rows}
    return {fk.label: found[fk.label] for fk in spec.foreign_keys}


def _rows_hash(conn, db: Database, spec: Spec, found: dict) -> str:
    identity = environment_identity(conn, db.env.name)
    payload = {"identity": identity, "spec": spec.name,
               "rows": {label: sorted(json.dumps(r, sort_keys=True) for _, r in rows) for label, rows in found.items()}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _ensure_quarantine(conn) -> None:
    """The quarantine table; ``action`` (what the clean-up did to the row: delete, set null, set
    default) added to a table made before it had one, whose rows were all deleted."""
    table = qualified(QUARANTINE_SCHEMA, QUARANTINE_TABLE)
    conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {ident(QUARANTINE_SCHEMA)}"))
    conn.execute(text(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, run_id text NOT NULL, schema_name text NOT NULL, "
        "table_name text NOT NULL, column_name text NOT NULL, row_data jsonb NOT NULL, "
        "quarantined_at timestamptz NOT NULL DEFAULT now())"))
    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS action text NOT NULL DEFAULT 'delete'"))


def _write_synced(path: Path, rows: list) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _frame(result) -> pd.DataFrame:
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _summary(spec: Spec, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    actions = {fk.label: cleanup_action(fk) for fk in spec.foreign_keys}
    return pd.DataFrame([(label, actions[label], len(frame)) for label, frame in frames.items()],
                        columns=["column", "action", "rows"])
