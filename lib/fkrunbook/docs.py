"""Schema docs for the tables the runbook touches, generated from the live catalog.

Each table gets ``<docs_dir>/tables/<table>.md``. The generated part sits between two markers;
text outside them is the team's and is kept as it is. Because the content comes from the
database (not from the spec), the docs show drift: a key the spec plans but the database lacks
is listed as not in the database yet. Diff first, write on request; a second run changes nothing.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from .catalog import ON_DELETE_CODES, foreign_key_states, relation_kind, RELKINDS
from .database import Database
from .spec import Spec

BEGIN = "<!-- fkrunbook:begin (generated from the live catalog by fkrunbook docs_update; edit outside the markers) -->"
END = "<!-- fkrunbook:end -->"

FK_QUERY = """
SELECT con.conname, cn.nspname AS child_schema, c.relname AS child,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord) AS columns,
       pn.nspname AS parent_schema, p.relname AS parent,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord) AS parent_columns,
       con.confdeltype, con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE con.contype = 'f' AND ((cn.nspname = :schema AND c.relname = :table) OR (pn.nspname = :schema AND p.relname = :table))
ORDER BY c.relname, con.conname
"""


@dataclass
class DocsChange:
    files: pd.DataFrame     # path, state (new | changed | unchanged), written
    diff: str

    @property
    def changed(self) -> int:
        return int((self.files["state"] != "unchanged").sum())

    def results(self) -> dict:
        return {"files_changed": self.changed, "written": bool(self.files["written"].any()) if len(self.files) else False}

    def _repr_markdown_(self) -> str:
        return f"```diff\n{self.diff}\n```" if self.diff else "_No change: the docs match the database._"


def render_table_docs(db: Database, spec: Spec) -> dict[str, str]:
    """Generated markdown block per touched table: ``{relative path: block}``."""
    tables = [spec.parent.table] + spec.child_tables + [e.table for e in spec.exceptions]
    tables = list(dict.fromkeys(tables))
    blocks = {}
    with db.read_only() as conn:
        planned = {s.fk.label: s for s in foreign_key_states(conn, spec)}
        for table in tables:
            kind = relation_kind(conn, spec.schema, table)
            if kind is None:
                continue
            fks = conn.execute(text(FK_QUERY), {"schema": spec.schema, "table": table}).fetchall()
            lines = [BEGIN, "", f"_{RELKINDS.get(kind, kind).capitalize()} `{spec.schema}.{table}`._", ""]
            outgoing = [r for r in fks if r.child == table and r.child_schema == spec.schema]
            incoming = [r for r in fks if r.parent == table and r.parent_schema == spec.schema]
            lines += ["### Foreign keys from this table", ""]
            if outgoing:
                lines += ["| column | references | on delete | constraint | validated |", "|---|---|---|---|---|"]
                lines += [f"| {', '.join(r.columns)} | {r.parent}({', '.join(r.parent_columns)}) | "
                          f"{ON_DELETE_CODES[r.confdeltype].upper()} | {r.conname} | {'yes' if r.convalidated else 'NO'} |"
                          for r in outgoing]
            else:
                lines.append("None.")
            for fk in spec.foreign_keys:
                if fk.table == table and not planned[fk.label].exists:
                    lines += ["", f"**Drift:** the runbook `{spec.name}` adds a foreign key on `{fk.column}` "
                                  f"(ON DELETE {fk.on_delete_sql}) that is not in the database yet."]
            lines += ["", "### Foreign keys into this table", ""]
            if incoming:
                lines += ["| from | column | on delete | constraint | validated |", "|---|---|---|---|---|"]
                lines += [f"| {r.child} | {', '.join(r.columns)} | {ON_DELETE_CODES[r.confdeltype].upper()} | "
                          f"{r.conname} | {'yes' if r.convalidated else 'NO'} |" for r in incoming]
            else:
                lines.append("None.")
            reasons = [(fk.column, f"Foreign key to {spec.parent.table}.{spec.parent.column} "
                        f"({fk.classification}): {fk.reason}") for fk in spec.foreign_keys if fk.table == table]
            if reasons:
                lines += ["", "### Why these foreign keys exist", ""] + [f"- `{c}`: {r}" for c, r in reasons]
            missing = [e for e in spec.exceptions if e.table == table]
            if missing:
                lines += ["", "### Intentionally missing foreign keys", "", "| column | why there is no foreign key |",
                          "|---|---|"]
                lines += [f"| {e.column} | {e.reason} |" for e in missing]
            lines += ["", END]
            blocks[f"tables/{table}.md"] = "\n".join(lines) + "\n"
    return blocks


def merge_block(existing: str | None, block: str, title: str) -> str:
    """Put the generated block into a document, replacing the old block and keeping all other text."""
    if existing is None:
        return f"# {title}\n\n{block}"
    start, end = existing.find(BEGIN), existing.find(END)
    if start >= 0 and end > start:
        return existing[:start] + block.rstrip("\n") + existing[end + len(END):]
    return existing.rstrip("\n") + "\n\n" + block


def update_docs(db: Database, spec: Spec, docs_dir: str | Path, write: bool = False) -> DocsChange:
    """Compare the docs with the database; with ``write``, bring them up to date."""
    docs_dir = Path(docs_dir)
    rows, diffs = [], []
    for rel, block in render_table_docs(db, spec).items():
        path = docs_dir / rel
        old = path.read_text() if path.exists() else None
        new = merge_block(old, block, Path(rel).stem)
        state = "new" if old is None else "unchanged" if old == new else "changed"
        if state != "unchanged":
            diffs += difflib.unified_diff((old or "").splitlines(keepends=True), new.splitlines(keepends=True),
                                          fromfile=f"a/{rel}", tofile=f"b/{rel}")
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(new)
        rows.append((str(rel), state, write and state != "unchanged"))
    return DocsChange(pd.DataFrame(rows, columns=["file", "state", "written"]), "".join(diffs))
