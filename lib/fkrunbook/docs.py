"""Schema docs for the tables the runbook touches, generated from the live catalog.

Each table gets ``<docs_dir>/tables/<table>.md``; ``organization-fk-graph.md`` holds a mermaid ER
diagram, ``orphan-detection.md`` the methodology with its queries, the org clean-up procedures
(``org-cleanup`` and its dry run, wherever the team keeps them) get the non-FK orphan steps, and
``AGENT-INDEX.md`` gets keyword rows. The generated part of each document sits between two
markers; text outside them is the team's and is kept as it is. Because the content comes from the
database (not from the spec), the docs show drift: a key the spec plans but the database lacks
is listed as not in the database yet. Diff first, write on request; a second run changes nothing.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from .catalog import ON_DELETE_CODES, RELKINDS, foreign_key_states, index_states, relation_kind
from .database import Database
from .errors import FkrunbookError
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
        indexes = index_states(conn, spec)
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
            covering = [(s.fk.column, s.covering) for s in indexes if s.fk.table == table]
            if covering:
                lines += ["", "### Indexes covering the foreign-key columns", ""]
                lines += [f"- `{c}`: " + (f"`{i}`" if i else "**none**: every delete of an organization scans this "
                                                             "table") for c, i in covering]
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


def render_graph(db: Database, spec: Spec) -> str:
    """A mermaid ER diagram of every foreign key into the organizations table, the keys the spec
    plans that the database lacks (drift), and the references that have none on purpose."""
    parent = spec.parent.table
    lines = [BEGIN, "", "```mermaid", "erDiagram"]
    with db.read_only() as conn:
        fks = conn.execute(text(FK_QUERY), {"schema": spec.schema, "table": parent}).fetchall()
        states = {s.fk.label: s for s in foreign_key_states(conn, spec)}
    for r in fks:
        if r.parent == parent:
            lines.append(f'    {parent} ||--o{{ {r.child} : "{", ".join(r.columns)} ON DELETE '
                         f'{ON_DELETE_CODES[r.confdeltype].upper()}"')
    for fk in spec.foreign_keys:
        if not states[fk.label].exists:
            lines.append(f'    {parent} ||..o{{ {fk.table} : "{fk.column} planned, not in the database yet"')
    for exc in spec.exceptions:
        lines.append(f'    {parent} ||..o{{ {exc.table} : "{exc.column} no FK on purpose"')
    lines += ["```", "", "Solid lines are foreign keys in the database; dotted lines are references without one.",
              "", END]
    return "\n".join(lines) + "\n"


def render_methodology(spec: Spec) -> str:
    """How orphans are found, with the exact queries, for the FK columns and the polymorphic ones."""
    from .orphans import orphan_query, payload_orphan_query, stream_orphan_query

    lines = [BEGIN, "", "An orphan is a row whose organization no longer exists. They are counted with a `NOT EXISTS` "
             "anti-join, never `NOT IN` (a single NULL makes `NOT IN` return nothing); a NULL in a nullable column is "
             "not an orphan.", "", "## Foreign-key columns", "",
             "Once a foreign key exists the database prevents new orphans; before (and for any key left NOT VALID) "
             "they are found, and removed by the clean-up phase, which keeps a copy of each row.", ""]
    for fk in spec.foreign_keys:
        lines += [f"`{fk.label}`:", "", "```sql", orphan_query(spec, fk, "count(*)") + ";", "```", ""]
    lines += ["## References that cannot have a foreign key", "",
              "Polymorphic references point at a different table per row, chosen by a discriminator column. They "
              "are checked per discriminator value: only the rows of the organization type are compared with the "
              "organizations table. Ids carried inside event payloads are checked the same way. These rows are "
              "history: they are reported, never deleted.", ""]
    for exc in spec.exceptions:
        if exc.discriminator:
            query = stream_orphan_query(spec, exc, "count(*)").replace(":stream_type", f"'{exc.discriminator.value}'")
            lines += [f"`{exc.label}` where `{exc.discriminator.column} = '{exc.discriminator.value}'`:", "",
                      "```sql", query + ";", "```", ""]
        if exc.payload:
            lines += [f"`{exc.table}.{exc.payload.column}->>'{exc.payload.key}'`:", "", "```sql",
                      payload_orphan_query(spec, exc, "count(*)") + ";", "```", ""]
    lines += [END]
    return "\n".join(lines) + "\n"


def render_cleanup_steps(spec: Spec, dry_run: bool) -> str:
    """The non-FK orphan steps to add to the organization clean-up procedures."""
    verb = "Report" if dry_run else "Report (never delete)"
    lines = [BEGIN, "", "### Orphans that no foreign key can catch", "",
             "1. Run the orphan check: `fkrunbook run --env staging --phase orphan_check` (read-only).",
             f"2. {verb} the organization streams and payload references whose organization is gone:"]
    for exc in spec.exceptions:
        if exc.discriminator:
            lines.append(f"   - `{exc.label}` with `{exc.discriminator.column} = '{exc.discriminator.value}'`")
        if exc.payload:
            lines.append(f"   - `{exc.table}.{exc.payload.column}->>'{exc.payload.key}'`")
    lines.append("   These are append-only history: they stay, and the count is recorded in the run's evidence.")
    if dry_run:
        lines.append("3. Dry run of the clean-up: `fkrunbook run --env staging --phase orphan_cleanup` shows every "
                     "foreign-key orphan row that would be deleted and the clean-up plan hash; nothing changes.")
    else:
        lines.append("3. Delete the foreign-key orphans, keeping a copy of each row: `fkrunbook run --env staging "
                     "--phase orphan_cleanup --confirm` (on a protected environment add `--approve` with the dry "
                     "run's hash). Then `fkrunbook run --env staging --phase orphan_check` must show 0.")
    lines += ["", "See orphan-detection.md for the queries.", "", END]
    return "\n".join(lines) + "\n"


def merge_keyword_rows(existing: str | None, rows: dict[str, str]) -> str:
    """Add or update rows of the AGENT-INDEX.md keyword table, keyed by their first cell."""
    header = "| Keyword | Document | Topics |\n|---|---|---|\n"
    text = existing if existing is not None else "# Agent index\n\n" + header
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lower().replace(" ", "").startswith("|keyword|")), None)
    if start is None:
        lines += [""] + header.splitlines()
        start = len(lines) - 2
    end = start + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    table = lines[start + 2:end]
    keyed = {row.split("|")[1].strip().strip("`"): i for i, row in enumerate(table)}
    for key, row in rows.items():
        if key in keyed:
            table[keyed[key]] = row
        else:
            table.append(row)
    return "\n".join(lines[:start + 2] + table + lines[end:]) + "\n"


def planned_docs(db: Database, spec: Spec, docs_dir: Path) -> dict[str, str]:
    """Every document the docs phase owns: relative path -> its new text (merged into the old)."""
    def read(rel):
        path = docs_dir / rel
        return path.read_text() if path.exists() else None

    docs = {}
    for rel, block in render_table_docs(db, spec).items():
        docs[rel] = merge_block(read(rel), block, Path(rel).stem)
    docs["organization-fk-graph.md"] = merge_block(read("organization-fk-graph.md"), render_graph(db, spec),
                                                   "Organization foreign-key graph")
    docs["orphan-detection.md"] = merge_block(read("orphan-detection.md"), render_methodology(spec),
                                              "Orphan detection methodology")
    for name, dry_run in (("org-cleanup", False), ("org-cleanup-dryrun", True)):
        found = sorted(docs_dir.rglob(f"{name}.md")) + sorted(docs_dir.rglob(f"{name}/SKILL.md"))
        rel = str(found[0].relative_to(docs_dir)) if found else f"skills/{name}.md"
        docs[rel] = merge_block(read(rel), render_cleanup_steps(spec, dry_run), name)
    tables = list(dict.fromkeys([spec.parent.table] + spec.child_tables + [e.table for e in spec.exceptions]))
    rows = {t: f"| `{t}` | tables/{t}.md | foreign keys, organization, ON DELETE, orphans |"
            for t in tables if f"tables/{t}.md" in docs}
    rows["orphan detection"] = "| `orphan detection` | orphan-detection.md | orphans, polymorphic, event store |"
    rows["organization foreign keys"] = ("| `organization foreign keys` | organization-fk-graph.md | "
                                         "ER diagram, cascade |")
    docs["AGENT-INDEX.md"] = merge_keyword_rows(read("AGENT-INDEX.md"), rows)
    return docs


def update_docs(db: Database, spec: Spec, docs_dir: str | Path, write: bool = False) -> DocsChange:
    """Compare the docs with the database; with ``write``, bring them up to date. The docs folder
    (the team's repository) must exist: a mistyped path is an error, not a new folder."""
    docs_dir = Path(docs_dir)
    if write and not docs_dir.is_dir():
        raise FkrunbookError(f"docs folder {str(docs_dir)!r} does not exist; pass the team's docs folder")
    rows, diffs = [], []
    for rel, new in planned_docs(db, spec, docs_dir).items():
        path = docs_dir / rel
        old = path.read_text() if path.exists() else None
        state = "new" if old is None else "unchanged" if old == new else "changed"
        if state != "unchanged":
            diffs += difflib.unified_diff((old or "").splitlines(keepends=True), new.splitlines(keepends=True),
                                          fromfile=f"a/{rel}", tofile=f"b/{rel}")
            if write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(new)
        rows.append((str(rel), state, write and state != "unchanged"))
    return DocsChange(pd.DataFrame(rows, columns=["file", "state", "written"]), "".join(diffs))
