"""Blast radius: what a hard delete of one organization would really do, following every foreign
key transitively: rows deleted by ON DELETE CASCADE, rows changed by SET NULL / SET DEFAULT, rows
that would make the delete fail (NO ACTION, RESTRICT), and rows the delete would leave behind as
orphans because their column has no foreign key yet. Read-only: nothing is deleted.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from IPython.display import Markdown
from sqlalchemy import text

from .catalog import ON_DELETE_CODES, foreign_key_states
from .database import Database
from .errors import OrganizationNotFoundError
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


COLUMNS = ["path", "table", "columns", "on_delete", "rows", "effect"]


@dataclass
class BlastRadius:
    organization: dict | None   # id, slug; None: the parent table has no organization to measure
    rows: pd.DataFrame          # path, table, columns, on_delete, rows, effect
    parent: str = ""            # the parent table, schema-qualified

    @property
    def blocked(self) -> bool:
        return bool(((self.rows["effect"] == "BLOCKS the delete") & (self.rows["rows"] > 0)).any())

    @property
    def verdict(self) -> Markdown:
        if self.organization is None:
            return Markdown(f"**Nothing to measure**: {self.parent} has no organization yet, so no hard delete "
                            "can remove anything here.")
        org = f"`{self.organization['slug']}` ({self.organization['id']})"
        if self.blocked:
            blockers = self.rows[(self.rows["effect"] == "BLOCKS the delete") & (self.rows["rows"] > 0)]
            return Markdown(f"**A hard delete of {org} would FAIL**: blocked by " +
                            ", ".join(f"{r.table}.{r.columns} ({r.rows} rows)" for r in blockers.itertuples()))
        deleted = self.rows[self.rows["effect"] == "deleted"]
        left = self.rows[self.rows["effect"] == "left behind as orphans"]
        return Markdown(f"**A hard delete of {org} would remove {int(deleted['rows'].sum())} row(s) in "
                        f"{deleted.loc[deleted['rows'] > 0, 'table'].nunique()} table(s)** besides the organization"
                        + (f", and leave {int(left['rows'].sum())} orphan row(s) behind in columns without a "
                           "foreign key" if left["rows"].sum() else "") + ".")

    def results(self) -> dict:
        return {"organization": self.organization["id"] if self.organization else None, "blocked": self.blocked,
                "rows_deleted": int(self.rows.loc[self.rows["effect"] == "deleted", "rows"].sum())}


def blast_radius(db: Database, spec: Spec, organization: str = "") -> BlastRadius:
    """Follow the foreign keys from one organization (by id or slug; by default the one with the
    most rows referencing it through foreign keys). With no organization named and none in the
    parent table, there is nothing to measure: the result says so."""
    parent = spec.parent
    root = qualified(parent.schema, parent.table)
    with db.read_only() as conn:
        edges = conn.execute(text(EDGES)).mappings().all()
        org = _pick(conn, spec, edges, organization)
        if org is None:
            return BlastRadius(None, pd.DataFrame([], columns=COLUMNS), f"{parent.schema}.{parent.table}")
        cond = f"{ident(parent.column)} = {literal(org['id'])}"
        rows = []
        _walk(conn, edges, (parent.schema, parent.table), cond, [parent.table], rows, 1)
        for state in foreign_key_states(conn, spec):
            if not state.exists:
                count = conn.execute(text(
                    f"SELECT count(*) FROM {qualified(spec.schema, state.fk.table)} WHERE {ident(state.fk.column)} = "
                    f"(SELECT {ident(parent.column)} FROM {root} WHERE {cond})")).scalar()
                rows.append((f"{parent.table} ~> {state.fk.table}", f"{spec.schema}.{state.fk.table}", state.fk.column,
                             "(no foreign key)", int(count), "left behind as orphans"))
        for exc in spec.exceptions:
            if exc.discriminator is None or conn.execute(text("SELECT to_regclass(:n)"),
                                                         {"n": qualified(spec.schema, exc.table)}).scalar() is None:
                continue
            count = conn.execute(text(
                f"SELECT count(*) FROM {qualified(spec.schema, exc.table)} WHERE {ident(exc.column)} = :id "
                f"AND {ident(exc.discriminator.column)} = :kind"),
                {"id": org["id"], "kind": exc.discriminator.value}).scalar()
            rows.append((f"{parent.table} ~> {exc.table}", f"{spec.schema}.{exc.table}", exc.column,
                         "(intentionally none)", int(count), "left behind: kept as history"))
    return BlastRadius(org, pd.DataFrame(rows, columns=COLUMNS), f"{parent.schema}.{parent.table}")


def _walk(conn, edges, table, cond, path, rows, depth) -> None:
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
        effect = {"cascade": "deleted", "set null": "set to NULL", "set default": "set to default"}.get(
            action, "BLOCKS the delete")
        rows.append((" -> ".join(path + [edge["child"]]), f"{child[0]}.{child[1]}", ", ".join(edge["columns"]),
                     action.upper(), int(count), effect))
        if action == "cascade" and count and edge["child"] not in path:
            _walk(conn, edges, child, child_cond, path + [edge["child"]], rows, depth + 1)


def _pick(conn, spec: Spec, edges, organization: str) -> dict | None:
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
        direct = [e for e in edges if (e["parent_schema"], e["parent"]) == (parent.schema, parent.table)
                  and e["ref_columns"] == [parent.column] and len(e["columns"]) == 1]
        counts = " UNION ALL ".join(
            f"SELECT {ident(e['columns'][0])} AS id FROM {qualified(e['child_schema'], e['child'])}" for e in direct)
        order = f"(SELECT count(*) FROM ({counts}) d WHERE d.id = o.{ident(parent.column)}) DESC, " if direct else ""
        row = conn.execute(text(f"SELECT o.{ident(parent.column)}::text, o.{ident(label)}::text FROM {root} o "
                                f"ORDER BY {order}o.{ident(parent.column)} LIMIT 1")).fetchone()
        if row is None:
            return None
    return {"id": row[0], "slug": row[1]}

