"""Blast radius: what a hard delete of one organization would really do, following every foreign
key transitively: rows deleted by ON DELETE CASCADE, rows changed by SET NULL / SET DEFAULT, rows
that would make the delete fail (NO ACTION, RESTRICT), and every other organization reference the
audit knows (:func:`fkrunbook.audit.find_references`), which no key follows: columns named like
one without a key (``missing_fk``, ``planned``, the spec's), left behind as orphans; polymorphic
references (by their discriminator) and ids in the spec's payload keys, left behind as history
when the spec declares them. A row a cascade deletes anyway is not counted as left behind.

A table reached along several paths (``project_members`` through ``account_id`` and through
``projects``) is listed once per path in ``rows``, and counted once per row in ``tables`` (the
paths' conditions OR-ed together); the verdict uses ``tables``. Read-only: nothing is deleted.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from IPython.display import Markdown
from sqlalchemy import text

from .audit import find_references
from .catalog import ON_DELETE_CODES, foreign_key_states
from .database import Database
from .errors import OrganizationNotFoundError
from .orphans import payload_reference
from .polymorphic import UUID_PATTERN
from .spec import Spec
from .sqltext import ident, literal, qualified

MAX_DEPTH = 6

EDGES = """
SELECT con.conname, pn.nspname AS parent_schema, p.relname AS parent, cn.nspname AS child_schema, c.relname AS child,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord) AS columns,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord) AS ref_columns,
       con.confdeltype
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND NOT c.relispartition
  AND cn.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY c.relname, con.conname
"""

ORPHANED = "left behind as orphans"
HISTORY = "left behind: kept as history"
BLOCKS = "BLOCKS the delete"


COLUMNS = ["path", "table", "columns", "on_delete", "rows", "effect", "detail"]
TABLE_COLUMNS = ["table", "effect", "rows", "paths"]


@dataclass
class BlastRadius:
    organization: dict | None   # id, slug; None: the parent table has no organization to measure
    rows: pd.DataFrame          # path, table, columns, on_delete, rows, effect, detail: one row per path
    parent: str = ""            # the parent table, schema-qualified
    tables: pd.DataFrame = field(default_factory=lambda: pd.DataFrame([], columns=TABLE_COLUMNS))
    # table, effect, rows (distinct: a row reached along several paths counts once), paths

    def _total(self, effect: str) -> int:
        return int(self.tables.loc[self.tables["effect"] == effect, "rows"].sum())

    @property
    def blocked(self) -> bool:
        return self._total(BLOCKS) > 0

    @property
    def verdict(self) -> Markdown:
        if self.organization is None:
            return Markdown(f"**Nothing to measure**: {self.parent} has no organization yet, so no hard delete "
                            "can remove anything here.")
        org = f"`{self.organization['slug']}` ({self.organization['id']})"
        if self.blocked:
            blockers = self.tables[(self.tables["effect"] == BLOCKS) & (self.tables["rows"] > 0)]
            return Markdown(f"**A hard delete of {org} would FAIL**: blocked by " +
                            ", ".join(f"{r.table} ({r.rows} rows)" for r in blockers.itertuples()))
        deleted = self.tables[(self.tables["effect"] == "deleted") & (self.tables["rows"] > 0)]
        text_ = (f"**A hard delete of {org} would remove {self._total('deleted')} row(s) in {len(deleted)} "
                 "table(s)** besides the organization")
        if (deleted["paths"] > 1).any():
            text_ += " (each row counted once, however many paths reach it)"
        cleared = self._total("set to NULL") + self._total("set to default")
        if cleared:
            text_ += f", and clear the reference in {cleared} row(s)"
        text_ += "."
        for effect, says in ((ORPHANED, "also point at it without a key: the delete would leave them behind as orphans"),
                             (HISTORY, "name it and stay (declared history, no key on purpose)")):
            left = self.rows[(self.rows["effect"] == effect) & (self.rows["rows"] > 0)]
            if len(left):
                listed = [f"{r.rows} {r.table}.{r.columns}" for r in left.itertuples()]
                text_ += f" {', '.join(listed[:-1]) + ' and ' if len(listed) > 1 else ''}{listed[-1]} row(s) {says}."
        return Markdown(text_)

    def results(self) -> dict:
        return {"organization": self.organization["id"] if self.organization else None, "blocked": self.blocked,
                "rows_deleted": self._total("deleted"), "rows_left_behind": self._total(ORPHANED),
                "rows_kept_as_history": self._total(HISTORY)}


def blast_radius(db: Database, spec: Spec, organization: str = "") -> BlastRadius:
    """Follow the foreign keys from one organization (by id or slug; by default the one with the
    most rows referencing it, through keys or the audit's references without one), then count the
    rows that reference it without a key. With no organization named and none in the parent table,
    there is nothing to measure: the result says so."""
    parent = spec.parent
    root = qualified(parent.schema, parent.table)
    with db.read_only() as conn:
        edges = conn.execute(text(EDGES)).mappings().all()
        loose = _loose_references(conn, spec)
        org = _pick(conn, spec, edges, loose, organization)
        if org is None:
            return BlastRadius(None, pd.DataFrame([], columns=COLUMNS), f"{parent.schema}.{parent.table}")
        cond = f"{ident(parent.column)} = {literal(org['id'])}"
        the_org = f"(SELECT {ident(parent.column)} FROM {root} WHERE {cond})"
        rows: list[tuple] = []
        reached: dict[tuple[str, str], list[tuple[str, str]]] = {}  # table -> (ON DELETE action, condition) per path
        _walk(conn, edges, (parent.schema, parent.table), cond, [parent.table], rows, reached, 1)
        gone = {table: _any(c for action, c in paths if action == "cascade") for table, paths in reached.items()}
        left: dict[tuple[tuple[str, str], str], list[str]] = {}  # (table, effect) -> condition per reference
        for ref in loose:
            table = (ref["schema"], ref["table"])
            name, arrow = qualified(*table), f"{parent.table} ~> {ref['table']}"
            if ref["payload"] is not None:
                exc, key = ref["payload"]
                value = payload_reference(exc.payload, key, alias=name)
                where = f"CASE WHEN {value} ~ {literal(UUID_PATTERN)} THEN {value}::uuid END = {the_org}"
                row = (arrow, f"{table[0]}.{table[1]}", "->".join((exc.payload.column,) + exc.payload.path(key)),
                       "(intentionally none)", HISTORY, "organization id in the payload")
            else:
                where = f"{ident(ref['column'])} = {the_org}"
                if ref["discriminator"]:
                    row = (arrow, f"{table[0]}.{table[1]}", ref["column"],
                           "(intentionally none)" if ref["declared"] else "(no key possible)",
                           HISTORY if ref["declared"] else ORPHANED, f"polymorphic, by {ref['discriminator']}")
                else:
                    row = (arrow, f"{table[0]}.{table[1]}", ref["column"], "(no foreign key)", ORPHANED, ref["detail"])
            if table in gone and gone[table]:
                where = f"({where}) AND NOT ({gone[table]})"  # a row a cascade deletes anyway is not left behind
            by = ident(ref["discriminator"]) + "::text" if ref["discriminator"] else "NULL::text"
            counts = conn.execute(text(f"SELECT {by}, count(*) FROM {name} WHERE {where} GROUP BY 1 "
                                       "ORDER BY 2 DESC, 1")).fetchall()
            detail = row[5] + (": " + ", ".join(f"{v} {n}" for v, n in counts) if ref["discriminator"] and counts else "")
            rows.append(row[:4] + (sum(int(n) for _, n in counts), row[4], detail))
            left.setdefault((table, row[4]), []).append(where)
        tables = _distinct(conn, reached, left)
    return BlastRadius(org, pd.DataFrame(rows, columns=COLUMNS), f"{parent.schema}.{parent.table}", tables)


def _loose_references(conn, spec: Spec) -> list[dict]:
    """Every organization reference no foreign key follows, from the audit's discovery: columns
    without a key (``missing_fk``, ``planned``; and the spec's keys not in the database yet),
    polymorphic references (declared or not) whose id has the parent key's type, and the spec's
    payload keys. Each: schema, table, column, discriminator, payload (exception, key), declared, detail."""
    parent = spec.parent
    found = find_references(conn, spec)
    parent_type = conn.execute(text(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) "
        "AND attname = :c"), {"t": qualified(parent.schema, parent.table), "c": parent.column}).scalar()
    declared = {(spec.schema, e.table, e.column) for e in spec.exceptions}
    loose, seen = [], set()
    for ref in found.references:
        key = (ref.schema, ref.table, ref.column)
        if ref.kind not in ("missing_fk", "planned", "polymorphic") or \
                found.columns.get((ref.schema, ref.table), {}).get(ref.column) != parent_type:
            continue
        seen.add(key)
        loose.append({"schema": ref.schema, "table": ref.table, "column": ref.column, "payload": None,
                      "discriminator": ref.discriminator, "declared": key in declared,
                      "detail": "planned by the spec" if ref.kind == "planned" else ref.kind})
    for state in foreign_key_states(conn, spec):  # a spec's column the naming patterns do not catch
        if not state.exists and (spec.schema, state.fk.table, state.fk.column) not in seen:
            loose.append({"schema": spec.schema, "table": state.fk.table, "column": state.fk.column, "payload": None,
                          "discriminator": None, "declared": False, "detail": "planned by the spec"})
    if parent_type == "uuid":
        for exc in spec.exceptions:
            if exc.payload and (spec.schema, exc.table) in found.columns:
                loose += [{"schema": spec.schema, "table": exc.table, "column": exc.column, "payload": (exc, key),
                           "discriminator": None, "declared": True, "detail": ""} for key in exc.payload.keys]
    return loose


def _any(conditions) -> str | None:
    conditions = list(conditions)
    return " OR ".join(f"({c})" for c in conditions) if conditions else None


def _distinct(conn, reached: dict, left: dict) -> pd.DataFrame:
    """Per table and effect, the rows counted once, however many paths or columns reach them:
    deleted (any CASCADE path), cleared (SET NULL / SET DEFAULT, unless deleted), blocking
    (RESTRICT, or NO ACTION unless another path deletes the row: NO ACTION is checked at the end of
    the statement), and left behind (``left``: per (table, effect) the conditions of its references
    without a key, already net of the deleted rows)."""
    out = []
    for table, paths in reached.items():
        by = {action: _any(c for a, c in paths if a == action) for action in ON_DELETE_CODES.values()}
        gone = by["cascade"]
        keep = f" AND NOT ({gone})" if gone else ""
        for effect, actions, where in (
                ("deleted", ("cascade",), gone),
                ("set to NULL", ("set null",), by["set null"] and f"({by['set null']}){keep}"),
                ("set to default", ("set default",), by["set default"] and f"({by['set default']}){keep}"),
                (BLOCKS, ("restrict", "no action"),
                 _any(filter(None, [by["restrict"], by["no action"] and f"({by['no action']}){keep}"])))):
            if where:
                count = conn.execute(text(f"SELECT count(*) FROM {qualified(*table)} WHERE {where}")).scalar()
                out.append((f"{table[0]}.{table[1]}", effect, int(count), sum(a in actions for a, _ in paths)))
    for (table, effect), conditions in left.items():
        count = conn.execute(text(f"SELECT count(*) FROM {qualified(*table)} WHERE {_any(conditions)}")).scalar()
        out.append((f"{table[0]}.{table[1]}", effect, int(count), len(conditions)))
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def _walk(conn, edges, table, cond, path, rows, reached, depth) -> None:
    if depth > MAX_DEPTH:
        return
    schema, name = table
    for edge in edges:
        if (edge["parent_schema"], edge["parent"]) != table:
            continue
        child = (edge["child_schema"], edge["child"])
        cols = ", ".join(ident(c) for c in edge["columns"])
        refs = ", ".join(ident(c) for c in edge["ref_columns"])
        child_cond = f"({cols}) IN (SELECT {refs} FROM {qualified(schema, name)} WHERE {cond})"
        count = conn.execute(text(f"SELECT count(*) FROM {qualified(*child)} WHERE {child_cond}")).scalar()
        action = ON_DELETE_CODES[edge["confdeltype"]]
        effect = {"cascade": "deleted", "set null": "set to NULL", "set default": "set to default"}.get(action, BLOCKS)
        rows.append((" -> ".join(path + [edge["child"]]), f"{child[0]}.{child[1]}", ", ".join(edge["columns"]),
                     action.upper(), int(count), effect, edge["conname"]))
        reached.setdefault(child, []).append((action, child_cond))
        if action == "cascade" and count and edge["child"] not in path:
            _walk(conn, edges, child, child_cond, path + [edge["child"]], rows, reached, depth + 1)


def _pick(conn, spec: Spec, edges, loose: list[dict], organization: str) -> dict | None:
    parent = spec.parent
    root = qualified(parent.schema, parent.table)
    columns = conn.execute(text(
        "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"),
        {"t": root}).scalars().all()
    label = "slug" if "slug" in columns else parent.column
    if organization:
        where = f"{ident(parent.column)}::text = :o" + (" OR slug = :o" if label == "slug" else "")
        row = conn.execute(text(f"SELECT {ident(parent.column)}::text, {ident(label)}::text FROM {root} WHERE {where}"),
                           {"o": organization}).fetchone()
        if row is None:
            raise OrganizationNotFoundError(f"organization {organization!r} is not in {root} (by id or slug); "
                                            "pass an existing id or slug, or none for the one with most dependents")
    else:
        direct = [(e["child_schema"], e["child"], e["columns"][0]) for e in edges
                  if (e["parent_schema"], e["parent"]) == (parent.schema, parent.table)
                  and e["ref_columns"] == [parent.column] and len(e["columns"]) == 1]
        direct += [(r["schema"], r["table"], r["column"]) for r in loose
                   if r["payload"] is None and r["discriminator"] is None]  # references without a key count too
        counts = " UNION ALL ".join(f"SELECT {ident(column)} AS id FROM {qualified(schema, table)}"
                                    for schema, table, column in dict.fromkeys(direct))
        order = f"(SELECT count(*) FROM ({counts}) d WHERE d.id = o.{ident(parent.column)}) DESC, " if direct else ""
        row = conn.execute(text(f"SELECT o.{ident(parent.column)}::text, o.{ident(label)}::text FROM {root} o "
                                f"ORDER BY {order}o.{ident(parent.column)} LIMIT 1")).fetchone()
        if row is None:
            return None
    return {"id": row[0], "slug": row[1]}
