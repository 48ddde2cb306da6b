"""The schema-wide FK audit: every organization reference and every foreign key, from the live
catalog, not from the spec's list.

Findings (each either declared in the spec as an intentional exception, with its reason, or not):

- ``missing_fk``: a uuid column named like an organization reference (``organization_id``,
  ``org_id``, ``*_org_id``, ``*_organization_id`` by default) in a base table, with no foreign
  key to the organizations table;
- ``unindexed_fk``: a foreign key whose columns lead no valid index over every row with a value
  there (no ``WHERE``, or ``WHERE <leading column> IS NOT NULL``; Supabase's advisor lint 0001,
  GitLab's rule): every delete of a parent row scans the child;
- ``blocking_delete``: a foreign key to the organizations table with ON DELETE NO ACTION or
  RESTRICT: a hard delete of an organization with such children fails;
- ``not_valid``: a foreign key left NOT VALID: old rows were never checked;
- ``polymorphic``: an id column beside a ``*_type`` discriminator (``stream_id``/``stream_type``):
  it points at a different table per row, so no foreign key is possible; reported, never as missing.

Partitions are audited through their partitioned parent; views are not tables and have no keys.
"""
from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass

from sqlalchemy import text

from .catalog import ON_DELETE_CODES
from .database import Database
from .spec import Spec

DEFAULT_PATTERNS = ("organization_id", "org_id", "*_org_id", "*_organization_id")
FIX = {
    "missing_fk": "add a foreign key (NOT VALID, then VALIDATE, after an orphan check), or declare it in the spec "
                  "as an intentional exception with its reason",
    "unindexed_fk": "create an index CONCURRENTLY whose leading columns are the foreign key's columns",
    "blocking_delete": "choose ON DELETE CASCADE (or SET NULL) if the rows should go with the organization, or "
                       "declare why deletes must be blocked",
    "not_valid": "run ALTER TABLE ... VALIDATE CONSTRAINT (after an orphan check): old rows were never checked",
    "polymorphic": "declare it in the spec with its reason; check it for orphans by its discriminator",
}
ORDER = tuple(FIX)


@dataclass(frozen=True)
class Finding:
    table: str          # schema.table
    column: str         # comma-separated for composite keys
    finding: str
    declared: bool
    detail: str
    reason: str = ""    # the spec's reason, when declared

    def as_dict(self) -> dict:
        return asdict(self)


COLUMNS = """
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
       c.oid AS relid, a.attnum
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(:schemas)
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2, a.attnum
"""

FOREIGN_KEYS = """
SELECT con.conname, n.nspname AS schema, c.relname AS table, con.conrelid AS relid, con.conkey,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord) AS columns,
       pn.nspname AS parent_schema, p.relname AS parent, con.confdeltype, con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND NOT c.relispartition AND n.nspname = ANY(:schemas)
ORDER BY 2, 3, 1
"""

# partial: the index leaves out rows that have a value in its leading column (a WHERE other than
# `<leading column> IS NOT NULL`, which every lookup by that column implies)
INDEXES = """
SELECT i.indrelid AS relid, (i.indkey::int2[])[0:i.indnkeyatts - 1] AS keys, i.indisvalid AND i.indisready AS valid,
       i.indpred IS NOT NULL AND pg_get_expr(i.indpred, i.indrelid)
           IS DISTINCT FROM '(' || quote_ident(a.attname) || ' IS NOT NULL)' AS partial,
       i.indisunique AS unique
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE n.nspname = ANY(:schemas)
"""


def audit_schema(db: Database, spec: Spec, schemas: list[str] | None = None,
                 patterns: list[str] | None = None) -> list[Finding]:
    """Audit the live catalog. Read-only. Findings are ordered by kind, then table and column."""
    schemas = schemas or [spec.schema]
    patterns = list(patterns or DEFAULT_PATTERNS)
    parent = (spec.schema, spec.parent.table)
    declared = {(spec.schema, e.table, e.column): e.reason for e in spec.exceptions}
    with db.read_only() as conn:
        columns = conn.execute(text(COLUMNS), {"schemas": schemas}).mappings().all()
        fks = conn.execute(text(FOREIGN_KEYS), {"schemas": schemas}).mappings().all()
        indexes = conn.execute(text(INDEXES), {"schemas": schemas}).mappings().all()
    findings: list[Finding] = []

    def add(schema, table, column, kind, detail):
        reason = declared.get((schema, table, column), "")
        findings.append(Finding(f"{schema}.{table}", column, kind, bool(reason), detail, reason))

    by_table: dict[tuple[str, str], dict[str, str]] = {}
    for col in columns:
        by_table.setdefault((col["schema"], col["table"]), {})[col["column"]] = col["type"]
    unique_alone = {(idx["relid"], idx["keys"][0]) for idx in indexes if idx["unique"] and len(idx["keys"]) == 1}
    unique_columns = {(c["schema"], c["table"], c["column"]) for c in columns if (c["relid"], c["attnum"]) in unique_alone}
    polymorphic = set()
    for (schema, table), cols in by_table.items():
        for name in cols:
            # x_id beside x_type, where x_id is not unique by itself (a one-to-one event_id is not a stream)
            if name.endswith("_id") and f"{name[:-3]}_type" in cols and (schema, table, name) not in unique_columns:
                polymorphic.add((schema, table, name))
                add(schema, table, name, "polymorphic",
                    f"points at a different table per row, by {name[:-3]}_type: no foreign key is possible")
    org_fk_columns = {(fk["schema"], fk["table"], column) for fk in fks
                      if (fk["parent_schema"], fk["parent"]) == parent for column in fk["columns"]}
    for (schema, table), cols in by_table.items():
        for name, type_ in cols.items():
            if type_ != "uuid" or not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            if (schema, table, name) in polymorphic or (schema, table, name) in org_fk_columns:
                continue
            add(schema, table, name, "missing_fk", f"uuid organization reference with no foreign key to "
                                                   f"{parent[0]}.{parent[1]}")
    covering: dict[int, list[tuple[list[int], bool, bool]]] = {}
    for idx in indexes:
        covering.setdefault(idx["relid"], []).append((list(idx["keys"]), idx["valid"], idx["partial"]))
    for fk in fks:
        column = ", ".join(fk["columns"])
        target = f"{fk['parent_schema']}.{fk['parent']}"
        n = len(fk["conkey"])
        if not any(valid and not partial and sorted(keys[:n]) == sorted(fk["conkey"])
                   for keys, valid, partial in covering.get(fk["relid"], [])):
            add(fk["schema"], fk["table"], column, "unindexed_fk",
                f"{fk['conname']} -> {target}: no valid index over every row leads with ({column})")
        if (fk["parent_schema"], fk["parent"]) == parent and fk["confdeltype"] in ("a", "r"):
            add(fk["schema"], fk["table"], column, "blocking_delete",
                f"{fk['conname']} is ON DELETE {ON_DELETE_CODES[fk['confdeltype']].upper()}: deleting an "
                "organization with such rows fails")
        if not fk["convalidated"]:
            add(fk["schema"], fk["table"], column, "not_valid", f"{fk['conname']} -> {target} is NOT VALID")
    return sorted(findings, key=lambda f: (ORDER.index(f.finding), f.table, f.column))


def render_findings(findings: list[Finding]) -> str:
    """Human output: grouped by finding, each group with what to do."""
    if not findings:
        return "No finding: every organization reference has a foreign key, and every foreign key is indexed, valid " \
               "and lets an organization be deleted."
    lines = []
    for kind in ORDER:
        group = [f for f in findings if f.finding == kind]
        if not group:
            continue
        open_ = [f for f in group if not f.declared]
        lines.append(f"{kind}: {len(group)} ({len(open_)} undeclared). Fix: {FIX[kind]}")
        for f in group:
            mark = "declared" if f.declared else "UNDECLARED"
            lines.append(f"  [{mark}] {f.table}.{f.column}: {f.detail}" + (f" (reason: {f.reason})" if f.reason else ""))
    undeclared = sum(not f.declared for f in findings)
    lines.append(f"{len(findings)} finding(s), {undeclared} undeclared")
    return "\n".join(lines)
