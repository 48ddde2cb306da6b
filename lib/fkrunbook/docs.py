"""Schema docs for the tables the runbook touches, generated from the live catalog and written into
the team's own docs, where the team keeps them (a :class:`~fkrunbook.config.DocsLayout`).

- A table's doc (``layout.table_doc(table)``) gets a generated block between two markers: its keys
  in and out with their ON DELETE actions, covering indexes, why the new keys exist, the keys
  missing on purpose. The team's text outside the markers (front matter, TL;DR, notes) is kept
  byte for byte. A table without a doc gets one only where fkrunbook may create files
  (``layout.new``); elsewhere it is skipped, with the reason.
- ``organization-fk-graph.md`` (a mermaid ER diagram) and ``orphan-detection.md`` (the methodology
  with its queries) live in ``layout.new``.
- The org clean-up procedures (``layout.procedure_files()``) get the non-FK orphan steps; fkrunbook
  never creates a procedure.
- The keyword index gets rows written the way its own rows are (markdown links or bare paths,
  relative to the index's folder), in the columns its header has.
- Lines outside the markers that say a column has no foreign key, when the database now has a
  validated one, are listed as stale text to review; they are never edited.

Because the content comes from the database (not from the spec), the docs show drift: a key the
spec plans but the database lacks is listed as not in the database yet. Diff first, write on
request; a second run changes nothing; no file is created outside ``layout.new``.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import text

from .catalog import ON_DELETE_CODES, RELKINDS, foreign_key_states, index_states, relation_kind
from .config import DocsLayout
from .database import Database
from .errors import FkrunbookError
from .keywords import IndexEntry, escape_cell, merge_keyword_rows
from .polymorphic import Profile, profile_exceptions
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


GRAPH = "organization-fk-graph.md"
METHODOLOGY = "orphan-detection.md"
TABLE_TOPICS = "foreign keys, organization, ON DELETE, orphans"

VALIDATED_FK_COLUMNS = """
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey)
WHERE con.contype = 'f' AND con.convalidated AND n.nspname = :schema AND c.relname = ANY (:tables)
ORDER BY 1, 2
"""

# Words with which a team's doc says a column has no foreign key.
NO_FK = re.compile(r"not enforced|\b(?:no|implicit|missing|without(?: an?)?) (?:foreign keys?|fks?)\b", re.I)


@dataclass
class DocsChange:
    files: pd.DataFrame     # file (relative to the docs root), state (new | changed | unchanged | skipped), written, reason
    diff: str
    stale: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["file", "line", "column", "text"]))

    @property
    def changed(self) -> int:
        return int(self.files["state"].isin(["new", "changed"]).sum())

    @property
    def skipped(self) -> int:
        return int((self.files["state"] == "skipped").sum())

    def results(self) -> dict:
        return {"files_changed": self.changed, "written": bool(self.files["written"].any()) if len(self.files) else False,
                "skipped": self.skipped, "stale_lines": len(self.stale)}

    def _repr_markdown_(self) -> str:
        parts = [f"```diff\n{self.diff}\n```" if self.diff else "_No change: the docs match the database._"]
        if len(self.stale):
            parts.append("**Stale text to review** (outside the markers, not edited): these lines say a column has no "
                         "foreign key, and the database now has a validated one.\n\n| file | line | column | text |\n"
                         "|---|---|---|---|\n" + "\n".join(
                             f"| {r.file} | {r.line} | {r.column} | {escape_cell(r.text)} |"
                             for r in self.stale.itertuples()))
        skipped = self.files[self.files["state"] == "skipped"]
        if len(skipped):
            parts.append("**Skipped** (nothing written):\n\n" + "\n".join(
                f"- `{r.file}`: {r.reason}" for r in skipped.itertuples()))
        return "\n\n".join(parts)


def touched_tables(spec: Spec) -> list[tuple[str, str]]:
    """The parent, the child tables and the tables with intentional exceptions, each name once, as
    (schema, table): the parent in its own schema, the others in the spec's. A table's doc is
    named by the table alone."""
    tables = {spec.parent.table: spec.parent.schema}
    for table in spec.child_tables + [e.table for e in spec.exceptions]:
        tables.setdefault(table, spec.schema)
    return [(schema, table) for table, schema in tables.items()]


def render_table_docs(db: Database, spec: Spec) -> dict[str, str]:
    """Generated markdown block per touched table in the database: ``{table: block}``."""
    tables = touched_tables(spec)
    blocks = {}
    with db.read_only() as conn:
        planned = {s.fk.label: s for s in foreign_key_states(conn, spec)}
        indexes = index_states(conn, spec)
        for schema, table in tables:
            kind = relation_kind(conn, schema, table)
            if kind is None:
                continue
            fks = conn.execute(text(FK_QUERY), {"schema": schema, "table": table}).fetchall()
            lines = [BEGIN, "", f"_{RELKINDS.get(kind, kind).capitalize()} `{schema}.{table}`._", ""]
            outgoing = [r for r in fks if r.child == table and r.child_schema == schema]
            incoming = [r for r in fks if r.parent == table and r.parent_schema == schema]
            lines += ["### Foreign keys from this table", ""]
            if outgoing:
                lines += ["| column | references | on delete | constraint | validated |", "|---|---|---|---|---|"]
                lines += [f"| {', '.join(r.columns)} | {_parent_name(spec, r)}({', '.join(r.parent_columns)}) | "
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
                lines += [f"| {_child_name(spec, r)} | {', '.join(r.columns)} | "
                          f"{ON_DELETE_CODES[r.confdeltype].upper()} | {r.conname} | {'yes' if r.convalidated else 'NO'} |"
                          for r in incoming]
            else:
                lines.append("None.")
            covering = [(s.fk.column, s.covering) for s in indexes if s.fk.table == table]
            if covering:
                lines += ["", "### Indexes covering the foreign-key columns", ""]
                lines += [f"- `{c}`: " + (f"`{i}`" if i else "**none**: every delete of an organization scans this "
                                                             "table") for c, i in covering]
            reasons = [(fk.column, f"Foreign key to {spec.parent_name}.{spec.parent.column} "
                        f"({fk.classification}): {fk.reason}") for fk in spec.foreign_keys if fk.table == table]
            if reasons:
                lines += ["", "### Why these foreign keys exist", ""] + [f"- `{c}`: {r}" for c, r in reasons]
            missing = [e for e in spec.exceptions if e.table == table]
            if missing:
                lines += ["", "### Intentionally missing foreign keys", "", "| column | why there is no foreign key |",
                          "|---|---|"]
                lines += [f"| {e.column} | {e.reason} |" for e in missing]
            lines += ["", END]
            blocks[table] = "\n".join(lines) + "\n"
    return blocks


def _parent_name(spec: Spec, fk) -> str:
    """A key's referenced table, as a table doc shows it: the spec's parent as the spec names it."""
    return spec.parent_name if (fk.parent_schema, fk.parent) == (spec.parent.schema, spec.parent.table) else fk.parent


def _child_name(spec: Spec, fk) -> str:
    """A key's table, as a table doc shows it: schema-qualified outside the spec's schema when the
    parent is in another one (a basejump project's own tables beside the app's)."""
    if fk.child_schema == spec.schema or spec.parent.schema == spec.schema:
        return fk.child
    return f"{fk.child_schema}.{fk.child}"


def merge_block(existing: str | None, block: str, title: str) -> str:
    """Put the generated block into a document, replacing the old block or appending it after the
    team's text; every byte outside the markers is kept (line endings included)."""
    if existing is None:
        return f"# {title}\n\n{block}"
    eol = "\r\n" if "\r\n" in existing else "\n"
    block = block.replace("\n", eol)
    start = existing.find(BEGIN)
    end = existing.find(END, start) if start >= 0 else -1
    if start >= 0 and end > start:
        return existing[:start] + block.rstrip("\r\n") + existing[end + len(END):]
    gap = "" if not existing or existing.endswith(eol * 2) else eol if existing.endswith(eol) else eol * 2
    return existing + gap + block


def render_graph(db: Database, spec: Spec) -> str:
    """A mermaid ER diagram of every foreign key into the organizations table, the keys the spec
    plans that the database lacks (drift), and the references that have none on purpose."""
    parent = spec.parent.table  # mermaid names an entity without its schema
    lines = [BEGIN, "", "```mermaid", "erDiagram"]
    with db.read_only() as conn:
        fks = conn.execute(text(FK_QUERY), {"schema": spec.parent.schema, "table": parent}).fetchall()
        states = {s.fk.label: s for s in foreign_key_states(conn, spec)}
    for r in fks:
        if r.parent == parent and r.parent_schema == spec.parent.schema:
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


def render_methodology(spec: Spec, seen: Profile | None = None) -> str:
    """How orphans are found, with the exact queries, for the FK columns and the polymorphic ones.
    ``seen`` (what the data holds, :func:`fkrunbook.polymorphic.profile_exceptions`) adds the
    discriminator values found, a warning where the spec's filter matches none of them, and the
    payload keys that hold organization ids but are not checked. Values, not counts: the text
    changes when the data's kinds change, not with every row written."""
    from .orphans import orphan_query, payload_orphan_query, stream_orphan_query

    seen = seen or Profile()
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
              "organizations table. Ids carried inside event payloads are checked the same way, under every key "
              "the spec lists. These rows are history: they are reported, never deleted.", ""]
    for exc in spec.exceptions:
        if exc.discriminator:
            d = exc.discriminator
            query = stream_orphan_query(spec, exc, "count(*)").replace(":stream_type", f"'{d.value}'")
            lines += [f"`{exc.label}` where `{d.column} = '{d.value}'`:", ""]
            values = seen.discriminators.get(exc.label)
            if values is not None:
                lines += [_values_line(values), ""]
                if values.warning:
                    lines += [f"**Warning:** `{d.column} = '{d.value}'` matches no row of `{exc.table}`, so this "
                              "query finds no orphan there whatever the data; the spec's filter may be wrong: fix "
                              "its discriminator value, then generate these docs again.", ""]
            lines += ["```sql", query + ";", "```", ""]
        if exc.payload:
            for key in exc.payload.keys:
                lines += [f"`{_payload_text(exc.table, exc.payload.column, key)}`:", "", "```sql",
                          payload_orphan_query(spec, exc, "count(*)", key) + ";", "```", ""]
            lines += _unchecked_keys(seen, exc.label)
    lines += [END]
    return "\n".join(lines) + "\n"


def _values_line(values) -> str:
    shown = ", ".join(f"`{'NULL' if v is None else v}`" for v, _ in values.counts)
    more = " and others" if values.others else ""
    return (f"Values of `{values.column}` in the database when this was generated: {shown}{more}."
            if values.counts else f"`{values.table}` had no row when this was generated.")


def _payload_text(table: str, column: str, key: str) -> str:
    path = key.split(".")
    if len(path) == 1:
        return f"{table}.{column}->>'{key}'"
    return f"{table}.{column} #>> '{{{','.join(path)}}}'"


def _unchecked_keys(seen: Profile, label: str) -> list[str]:
    """A warning for the payload keys a sample found holding organization ids that the spec does not list."""
    scan = seen.payloads.get(label)
    missed = [k.key for k in scan.keys if k.organizations and not k.listed] if scan else []
    if not missed:
        return []
    keys = ", ".join(f"`{_payload_text(scan.table, scan.column, k)}`" for k in missed)
    return [f"**Warning:** a sample of `{scan.table}.{scan.column}` also found organization ids under {keys}, "
            "which the spec's payload keys do not list: those are not checked; add them to the spec.", ""]


def render_cleanup_steps(spec: Spec, dry_run: bool, methodology: str = METHODOLOGY, seen: Profile | None = None) -> str:
    """The non-FK orphan steps to add to the organization clean-up procedures; ``methodology`` is
    how the procedure refers to the methodology doc (a link relative to it); ``seen`` (what the
    data holds) marks a filter that matches no row and payload keys the spec misses."""
    seen = seen or Profile()
    verb = "Report" if dry_run else "Report (never delete)"
    lines = [BEGIN, "", "### Orphans that no foreign key can catch", "",
             "1. Run the orphan check: `fkrunbook run --env staging --phase orphan_check` (read-only).",
             f"2. {verb} the organization streams and payload references whose organization is gone:"]
    for exc in spec.exceptions:
        if exc.discriminator:
            d = exc.discriminator
            values = seen.discriminators.get(exc.label)
            warn = ""
            if values is not None and values.warning:
                found = ", ".join(f"`{v}`" for v, _ in values.counts)
                warn = f": **this filter matches no row here** (values found: {found}); fix the spec first"
            lines.append(f"   - `{exc.label}` with `{d.column} = '{d.value}'`{warn}")
        if exc.payload:
            for key in exc.payload.keys:
                lines.append(f"   - `{_payload_text(exc.table, exc.payload.column, key)}`")
            scan = seen.payloads.get(exc.label)
            for k in (scan.keys if scan else ()):
                if k.organizations and not k.listed:
                    lines.append(f"   - not checked: `{_payload_text(scan.table, scan.column, k.key)}` also holds "
                                 "organization ids; add it to the spec's payload keys")
    lines.append("   These are append-only history: they stay, and the count is recorded in the run's evidence.")
    if dry_run:
        lines.append("3. Dry run of the clean-up: `fkrunbook run --env staging --phase orphan_cleanup` shows every "
                     "foreign-key orphan row that would be deleted and the clean-up plan hash; nothing changes.")
    else:
        lines.append("3. Delete the foreign-key orphans, keeping a copy of each row: `fkrunbook run --env staging "
                     "--phase orphan_cleanup --confirm` (on a protected environment add `--approve` with the dry "
                     "run's hash). Then `fkrunbook run --env staging --phase orphan_check` must show 0.")
    lines += ["", f"See {methodology} for the queries.", "", END]
    return "\n".join(lines) + "\n"


# Stale text ------------------------------------------------------------------------------------

def validated_fk_columns(db: Database, spec: Spec, tables: list[tuple[str, str]]) -> dict[str, set[str]]:
    """``{table: columns}``: the columns of each (schema, table) that a validated foreign key covers."""
    found: dict[str, set[str]] = {}
    with db.read_only() as conn:
        for schema in dict.fromkeys(schema for schema, _ in tables):
            names = [table for s, table in tables if s == schema]
            for table, column in conn.execute(text(VALIDATED_FK_COLUMNS), {"schema": schema, "tables": names}):
                found.setdefault(table, set()).add(column)
    return found


def stale_lines(doc: str, columns: dict[str, list[str]]) -> list[tuple[int, str, str]]:
    """Lines outside the markers that say a column has no foreign key when it has a validated one:
    ``(line number, table.column, text)``. The column is named on the line itself, or else by the
    list item or paragraph the line belongs to, or else by the heading above it (as in
    ``- **organizations_projection** → `org_id``` followed by ``  - Implicit foreign key (not
    enforced)``). A column that several tables have is narrowed to the tables the line names."""
    def named(line: str) -> list[str]:
        return [c for c in columns if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", line)]

    found, inside, block, heading = [], False, [], []
    for number, line in enumerate(doc.splitlines(), 1):
        if BEGIN in line:
            inside = True
        if not line.strip() or line.lstrip().startswith("#"):
            block = []
        if line.lstrip().startswith("#"):
            heading = named(line)
        elif line.strip() and not line.startswith((" ", "\t")):
            block = named(line)  # a new top-level item or paragraph
        elif named(line):
            block = named(line)
        if not inside and NO_FK.search(line):
            for column in named(line) or block or heading:
                tables = columns[column]
                which = [t for t in tables if re.search(rf"(?<!\w){re.escape(t)}(?!\w)", line)] or tables
                found.append((number, ", ".join(f"{t}.{column}" for t in which), line.strip()))
        if END in line:
            inside = False
    return found


# The plan and the update -----------------------------------------------------------------------

@dataclass
class _Doc:
    """One document of the plan: its new text, or why it is skipped; the columns to check for stale text."""
    file: str
    path: Path | None
    text: str | None
    reason: str = ""
    columns: dict[str, list[str]] = field(default_factory=dict)


def _plan(db: Database, spec: Spec, layout: DocsLayout) -> list[_Doc]:
    tables = touched_tables(spec)
    blocks = render_table_docs(db, spec)
    validated = validated_fk_columns(db, spec, tables)
    new_folder = layout.rel(layout.new)
    docs = []
    for schema, table in tables:
        path = layout.table_doc(table)
        old = _read(path)
        if table not in blocks:
            docs.append(_Doc(layout.rel(path), path, None, f"no relation {schema}.{table} in the database"))
        elif old is None and not layout.may_create(path):
            docs.append(_Doc(layout.rel(path), path, None, f"no doc for {table} here, and fkrunbook creates files only "
                             f"under {new_folder}/ ([docs] new): write the doc, or point [docs] table at it"))
        else:
            docs.append(_Doc(layout.rel(path), path, merge_block(old, blocks[table], table),
                             columns={c: [table] for c in sorted(validated.get(table, ()))}))
    table_docs = [(t, d) for (_, t), d in zip(tables, docs) if d.text is not None]
    with db.read_only() as conn:
        seen = profile_exceptions(conn, spec)  # what the polymorphic references hold, for the methodology
    graph, methodology = layout.new / GRAPH, layout.new / METHODOLOGY
    docs.append(_Doc(layout.rel(graph), graph, merge_block(_read(graph), render_graph(db, spec),
                                                           "Organization foreign-key graph")))
    docs.append(_Doc(layout.rel(methodology), methodology, merge_block(
        _read(methodology), render_methodology(spec, seen), "Orphan detection methodology")))
    by_column: dict[str, list[str]] = {}
    for _, table in tables:
        for column in sorted(validated.get(table, ())):
            by_column.setdefault(column, []).append(table)
    procedures = layout.procedure_files()
    for path in procedures:
        link = f"[{layout.rel(methodology)}]({Path(os.path.relpath(methodology, path.parent)).as_posix()})"
        steps = render_cleanup_steps(spec, _is_dry_run(path), link, seen)
        docs.append(_Doc(layout.rel(path), path, merge_block(_read(path), steps, path.stem), columns=by_column))
    if not procedures:
        docs.append(_Doc(", ".join(layout.procedures) or "[docs] procedures", None, None,
                         "no org clean-up procedure matches [docs] procedures; the non-FK orphan steps were not "
                         "written (fkrunbook never creates a procedure)"))
    if layout.index is not None:
        old = _read(layout.index)
        if old is None and not layout.may_create(layout.index):
            docs.append(_Doc(layout.rel(layout.index), layout.index, None,
                             f"no keyword index here, and fkrunbook creates files only under {new_folder}/ "
                             "([docs] new): create the index, or fix [docs] index"))
        else:
            entries = [IndexEntry(t, d.path, t, TABLE_TOPICS) for t, d in table_docs]
            entries += [IndexEntry("orphan detection", methodology, "Orphan detection methodology",
                                   "orphans, polymorphic, event store"),
                        IndexEntry("organization foreign keys", graph, "Organization foreign-key graph",
                                   "ER diagram, cascade")]
            docs.append(_Doc(layout.rel(layout.index), layout.index,
                             merge_keyword_rows(old, entries, layout.index.parent)))
    return docs


def _is_dry_run(path: Path) -> bool:
    """A procedure is the dry run when its name says so (a skill's name is its folder's)."""
    name = path.parent.name if path.stem.upper() == "SKILL" else path.stem
    return re.search(r"dry[-_]?run", name, re.I) is not None


def _read(path: Path) -> str | None:
    return path.read_bytes().decode("utf-8") if path.is_file() else None


def planned_docs(db: Database, spec: Spec, layout: DocsLayout) -> dict[Path, str]:
    """Every document the docs phase would write: its path -> its new text (merged into the old).
    Skipped documents are not in it."""
    return {doc.path: doc.text for doc in _plan(db, spec, layout) if doc.text is not None}


def update_docs(db: Database, spec: Spec, layout: DocsLayout, write: bool = False) -> DocsChange:
    """Compare the team's docs with the database; with ``write``, bring them up to date. The docs
    root (the team's repository) must exist: a mistyped path is an error, not a new folder."""
    if write and not layout.root.is_dir():
        raise FkrunbookError(f"docs folder {str(layout.root)!r} does not exist; pass the team's docs folder "
                             "(the repository the [docs] paths are relative to)")
    rows, diffs, stale = [], [], []
    for doc in _plan(db, spec, layout):
        if doc.text is None:
            rows.append((doc.file, "skipped", False, doc.reason))
            continue
        old = _read(doc.path)
        state = "new" if old is None else "unchanged" if old == doc.text else "changed"
        if state != "unchanged":
            diffs += difflib.unified_diff((old or "").splitlines(keepends=True), doc.text.splitlines(keepends=True),
                                          fromfile=f"a/{doc.file}", tofile=f"b/{doc.file}")
            if write:
                doc.path.parent.mkdir(parents=True, exist_ok=True)
                doc.path.write_bytes(doc.text.encode("utf-8"))
        rows.append((doc.file, state, write and state != "unchanged", doc.reason))
        stale += [(doc.file, n, column, line) for n, column, line in stale_lines(doc.text, doc.columns)]
    return DocsChange(pd.DataFrame(rows, columns=["file", "state", "written", "reason"]), "".join(diffs),
                      pd.DataFrame(stale, columns=["file", "line", "column", "text"]))
