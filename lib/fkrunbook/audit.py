"""The schema-wide FK audit: every organization reference and every foreign key, from the live
catalog, not from the spec's list.

Findings (each either declared in the spec as an intentional exception, with its reason, or not):

- ``missing_fk``: a uuid column named like an organization reference (``organization_id``,
  ``org_id``, ``*_org_id``, ``*_organization_id`` by default) in a base table, with no foreign
  key to the organizations table, direct or indirect;
- ``unindexed_fk``: a foreign key that no valid index serves for the check PostgreSQL runs on
  every delete of a parent row (``SELECT 1 FROM ONLY child x WHERE col = $1 FOR KEY SHARE OF x``):
  no index leads with its columns, and no partial one does that the planner uses for that query
  under a generic plan (decided by EXPLAIN, so ``WHERE col IS NOT NULL`` counts and ``WHERE
  archived_at IS NULL`` does not); every such delete scans the child;
- ``blocking_delete``: a foreign key to the organizations table with ON DELETE NO ACTION or
  RESTRICT: a hard delete of an organization with such children fails;
- ``not_valid``: a foreign key left NOT VALID: old rows were never checked;
- ``polymorphic``: an id column beside a ``*_type`` discriminator (``stream_id``/``stream_type``),
  or one the spec declares with a discriminator: it points at a different table per row, so no
  foreign key is possible; reported, never as missing, with the values its discriminator holds
  and a warning when the spec's filter matches none of a table's rows.

Reported for the record, never failing the gate:

- ``planned``: an organization reference without a key that the spec adds;
- ``covered_indirectly``: an organization reference without a key of its own that is part of a
  composite key to a table whose matching column has a key to the organizations table (directly
  or, in turn, indirectly): a row cannot name an organization that its parent row does not.

A finding is declared when the spec lists its column as an intentional exception, or lists the
finding itself under ``accepted_findings`` with a reason and an expiry date; once that date has
passed, the finding counts as undeclared again (and says it expired).

Partitions are audited through their partitioned parent; views are not tables and have no keys.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone

from sqlalchemy import text

from .catalog import ON_DELETE_CODES
from .database import Database
from .polymorphic import discriminator_values, scan_payload
from .spec import FINDINGS, Spec

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
FIX["planned"] = "nothing: the spec's runbook adds it (run it, then this disappears)"
FIX["covered_indirectly"] = "nothing required; a key of its own would make the cascade explicit"
INFO = ("planned", "covered_indirectly")  # reported, never failing the gate
ORDER = FINDINGS + INFO  # report order; the spec's accepted_findings take the gating kinds' names


@dataclass(frozen=True)
class Finding:
    table: str          # schema.table
    column: str         # comma-separated for composite keys
    finding: str
    declared: bool
    detail: str
    reason: str = ""    # the spec's reason, when declared
    expires: str = ""   # an accepted finding's expiry date (YYYY-MM-DD), passed or not
    warning: str = ""   # the data is at odds with the spec (a discriminator filter that matches no row)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def gates(self) -> bool:
        """Whether this finding fails the audit gate: a gating kind, not declared."""
        return not self.declared and self.finding in FINDINGS

    @property
    def mark(self) -> str:
        if self.finding in INFO:
            return self.finding
        if self.expires:
            return f"accepted until {self.expires}" if self.declared else f"UNDECLARED: accepted until {self.expires}, expired"
        return "declared" if self.declared else "UNDECLARED"


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
       ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord) AS types,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord) AS ref_columns,
       pn.nspname AS parent_schema, p.relname AS parent, con.confdeltype, con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
WHERE con.contype = 'f' AND con.conparentid = 0 AND NOT c.relispartition AND n.nspname = ANY(:schemas)
ORDER BY 2, 3, 1
"""

INDEXES = """
SELECT i.indrelid AS relid, (i.indkey::int2[])[0:i.indnkeyatts - 1] AS keys, i.indisvalid AND i.indisready AS valid,
       i.indpred IS NOT NULL AS partial, i.indisunique AS unique, ic.relname AS name,
       pg_get_expr(i.indpred, i.indrelid) AS predicate
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE n.nspname = ANY(:schemas)
"""


@dataclass(frozen=True)
class Reference:
    """An organization reference without a foreign key of its own, as the catalog shows it:
    ``missing_fk``, ``planned``, ``covered_indirectly``, or ``polymorphic`` (an id whose table is
    chosen per row by ``discriminator``)."""
    schema: str
    table: str
    column: str
    kind: str
    detail: str
    discriminator: str | None = None


@dataclass
class References:
    """What :func:`find_references` read from the catalog (the audit and the blast radius use it)."""
    specs: list[Spec]
    schemas: list[str]
    columns: dict[tuple[str, str], dict[str, str]]   # (schema, table) -> column -> type
    fks: list
    indexes: list
    references: list[Reference]


def find_references(conn, spec: Spec, schemas: list[str] | None = None, patterns: list[str] | None = None,
                    related: tuple[Spec, ...] = ()) -> References:
    """The organization references in the live catalog that have no foreign key of their own:
    uuid columns named like one (``patterns``, by default :data:`DEFAULT_PATTERNS` and every column
    a spec gives a key), each ``covered_indirectly`` (a composite key ties it), ``planned`` (a spec
    adds its key) or ``missing_fk``; and the ``polymorphic`` ones: an ``x_id`` beside an ``x_type``
    that is not unique by itself, or a spec's exception with a discriminator. Catalog only, no data."""
    specs = [spec] + [r for r in related if (r.schema, r.parent) == (spec.schema, spec.parent)]
    schemas = schemas or list(dict.fromkeys([spec.schema, spec.parent.schema]))
    patterns = list(patterns or dict.fromkeys([*DEFAULT_PATTERNS, *(fk.column for s in specs for fk in s.foreign_keys)]))
    parent = (spec.parent.schema, spec.parent.table)
    columns = conn.execute(text(COLUMNS), {"schemas": schemas}).mappings().all()
    fks = conn.execute(text(FOREIGN_KEYS), {"schemas": schemas}).mappings().all()
    indexes = conn.execute(text(INDEXES), {"schemas": schemas}).mappings().all()
    refs: list[Reference] = []
    by_table: dict[tuple[str, str], dict[str, str]] = {}
    for col in columns:
        by_table.setdefault((col["schema"], col["table"]), {})[col["column"]] = col["type"]
    unique_alone = {(idx["relid"], idx["keys"][0]) for idx in indexes if idx["unique"] and len(idx["keys"]) == 1}
    unique_columns = {(c["schema"], c["table"], c["column"]) for c in columns if (c["relid"], c["attnum"]) in unique_alone}
    discriminators = {(s.schema, e.table, e.column): e.discriminator.column
                      for s in reversed(specs) for e in s.exceptions if e.discriminator}
    polymorphic = set()
    for (schema, table), cols in by_table.items():
        for name in cols:
            # x_id beside x_type, where x_id is not unique by itself (a one-to-one event_id is not a stream);
            # or a column the spec declares with a discriminator
            by = discriminators.get((schema, table, name))
            if by is None and name.endswith("_id") and f"{name[:-3]}_type" in cols \
                    and (schema, table, name) not in unique_columns:
                by = f"{name[:-3]}_type"
            if by is not None and by in cols:
                polymorphic.add((schema, table, name))
                refs.append(Reference(schema, table, name, "polymorphic",
                                      f"points at a different table per row, by {by}: no foreign key is possible", by))
    org_keys = {}  # (schema, table, column) -> the key that ties it to the organizations table
    for fk in fks:
        if (fk["parent_schema"], fk["parent"]) == parent:
            for column in fk["columns"]:
                org_keys[(fk["schema"], fk["table"], column)] = fk["conname"]
    planned = {(s.schema, fk.table, fk.column): (s, fk) for s in reversed(specs) for fk in s.foreign_keys}
    for (schema, table), cols in by_table.items():
        for name, type_ in cols.items():
            if type_ != "uuid" or not any(fnmatch.fnmatchcase(name, p) for p in patterns):
                continue
            if (schema, table, name) in polymorphic or (schema, table, name) in org_keys:
                continue
            via = _indirect_key(fks, org_keys, parent, (schema, table, name))
            if via:
                refs.append(Reference(schema, table, name, "covered_indirectly", via))
            elif (schema, table, name) in planned:
                by, fk = planned[(schema, table, name)]
                refs.append(Reference(schema, table, name, "planned",
                                      f"no foreign key yet; the spec {by.name!r} adds {fk.constraint} "
                                      f"ON DELETE {fk.on_delete_sql} to {parent[0]}.{parent[1]}"))
            else:
                refs.append(Reference(schema, table, name, "missing_fk",
                                      f"uuid organization reference with no foreign key to {parent[0]}.{parent[1]}, "
                                      "direct or through a composite key"))
    return References(specs, schemas, by_table, list(fks), list(indexes), refs)


def audit_schema(db: Database, spec: Spec, schemas: list[str] | None = None,
                 patterns: list[str] | None = None, today: date | None = None,
                 related: tuple[Spec, ...] = ()) -> list[Finding]:
    """Audit the live catalog. Read-only. Findings are ordered by kind, then table and column.

    By default the spec's schema and its parent's are audited (keys into a tenant table from its
    own schema block its deletes too), and the organization references are the default patterns
    plus every column the spec gives a key (a basejump project's ``account_id``). ``today`` (UTC by
    default) decides which accepted findings have expired. ``related``: the project's other specs
    to the same organizations table, whose exceptions, accepted findings and planned keys count too.

    A ``polymorphic`` finding also says what its discriminator holds (values and row counts, one
    ``GROUP BY`` per table), and warns when the spec's filter matches no row of a table that has
    rows (without failing the gate: the data, not the schema, is at odds with the spec)."""
    today = today or datetime.now(timezone.utc).date()
    parent = (spec.parent.schema, spec.parent.table)
    with db.read_only() as conn:
        found = find_references(conn, spec, schemas, patterns, related)
        exceptions = {(s.schema, e.table, e.column): e for s in reversed(found.specs) for e in s.exceptions}
        values, payloads = {}, {}
        for ref in found.references:
            if ref.kind == "polymorphic":
                exc = exceptions.get((ref.schema, ref.table, ref.column))
                d = exc.discriminator if exc else None
                value = d.value if d and d.column == ref.discriminator else None  # the spec's filter, if any
                values[(ref.schema, ref.table, ref.column)] = discriminator_values(
                    conn, ref.schema, ref.table, ref.discriminator, value)
                if exc and exc.payload:  # the keys that hold organization ids, from a sample
                    payloads[(ref.schema, ref.table, ref.column)] = scan_payload(
                        conn, spec, ref.schema, ref.table, exc.payload.column, exc.payload.keys)
    specs, fks, indexes = found.specs, found.fks, found.indexes
    accepted = {(s.schema, a.table, a.column, a.finding): a for s in specs for a in s.accepted}
    declared = {(s.schema, e.table, e.column): e.reason for s in specs for e in s.exceptions}
    findings: list[Finding] = []

    def add(schema, table, column, kind, detail, warning=""):
        reason = declared.get((schema, table, column), "")
        accept = accepted.get((schema, table, column, kind))
        if accept and not reason:
            findings.append(Finding(f"{schema}.{table}", column, kind, accept.expires >= today, detail,
                                    accept.reason, accept.expires.isoformat(), warning))
            return
        findings.append(Finding(f"{schema}.{table}", column, kind, bool(reason), detail, reason, warning=warning))

    for ref in found.references:
        if ref.kind != "polymorphic":
            add(ref.schema, ref.table, ref.column, ref.kind, ref.detail)
            continue
        seen = values[(ref.schema, ref.table, ref.column)]
        held = f"; {seen.column} values: {seen.describe()}" if seen.total else "; no row yet"
        scan = payloads.get((ref.schema, ref.table, ref.column))
        if scan and scan.found:
            held += f"; organization ids in {scan.column} under: {', '.join(scan.found)} ({scan.sampled} rows sampled)"
        warnings = ([seen.warning] if seen.warning else []) + (scan.warnings if scan else [])
        add(ref.schema, ref.table, ref.column, "polymorphic", ref.detail + held, "; ".join(warnings))
    covering: dict[int, list] = {}
    for idx in indexes:
        covering.setdefault(idx["relid"], []).append(idx)
    explain = []  # (fk, partial indexes leading with its columns): the planner decides
    for fk in fks:
        column = ", ".join(fk["columns"])
        target = f"{fk['parent_schema']}.{fk['parent']}"
        n = len(fk["conkey"])
        leading = [idx for idx in covering.get(fk["relid"], [])
                   if idx["valid"] and sorted(list(idx["keys"])[:n]) == sorted(fk["conkey"])]
        if not any(not idx["partial"] for idx in leading):
            explain.append((fk, [idx for idx in leading if idx["partial"]]))
        if (fk["parent_schema"], fk["parent"]) == parent and fk["confdeltype"] in ("a", "r"):
            add(fk["schema"], fk["table"], column, "blocking_delete",
                f"{fk['conname']} is ON DELETE {ON_DELETE_CODES[fk['confdeltype']].upper()}: deleting an "
                "organization with such rows fails")
        if not fk["convalidated"]:
            add(fk["schema"], fk["table"], column, "not_valid", f"{fk['conname']} -> {target} is NOT VALID")
    if explain:
        with db.read_only() as conn:
            for fk, partial in explain:
                used = _index_for_key_check(conn, fk) if partial else None
                if used:
                    continue  # a partial index the key check uses: covered
                column = ", ".join(fk["columns"])
                why = (f"no index leads with ({column})" if not partial else
                       f"the key check ({column} = $1) cannot use the partial index"
                       f"{'es' if len(partial) > 1 else ''} "
                       + ", ".join(f"{idx['name']} (WHERE {idx['predicate']})" for idx in partial))
                add(fk["schema"], fk["table"], column, "unindexed_fk",
                    f"{fk['conname']} -> {fk['parent_schema']}.{fk['parent']}: {why}")
    return sorted(findings, key=lambda f: (ORDER.index(f.finding), f.table, f.column))


def _indirect_key(fks, org_keys, parent, column, seen=()) -> str | None:
    """How ``column`` (schema, table, name) is tied to the organizations table through a composite
    key whose referenced column has a key there (directly, or in turn indirectly); None if not."""
    schema, table, name = column
    for fk in fks:
        if (fk["schema"], fk["table"]) != (schema, table) or len(fk["columns"]) < 2 or name not in fk["columns"]:
            continue
        ref = (fk["parent_schema"], fk["parent"], fk["ref_columns"][fk["columns"].index(name)])
        if ref in seen or (ref[0], ref[1]) == parent:
            continue
        direct = org_keys.get(ref)
        further = None if direct else _indirect_key(fks, org_keys, parent, ref, seen + (column,))
        if direct or further:
            target = f"{ref[0]}.{ref[1]}({', '.join(fk['ref_columns'])})"
            then = f"has {direct} to {parent[0]}.{parent[1]}" if direct else f"is covered in turn: {further}"
            return f"{fk['conname']} ({', '.join(fk['columns'])}) -> {target}, whose {ref[2]} {then}"
    return None


def _index_for_key_check(conn, fk) -> str | None:
    """The index PostgreSQL's foreign-key check on ``fk``'s table would use, by EXPLAIN of that
    check's query as a generic plan (sequential scans disabled, so a small table's statistics do
    not hide a usable index); None when it can use none."""
    from sqlalchemy import text as sql_text

    table = f"{_quote(fk['schema'])}.{_quote(fk['table'])}"
    where = " AND ".join(f"{_quote(c)} = ${i}" for i, c in enumerate(fk["columns"], 1))
    conn.execute(sql_text("SET LOCAL plan_cache_mode = force_generic_plan"))
    conn.execute(sql_text("SET LOCAL enable_seqscan = off"))
    conn.execute(sql_text(f"PREPARE fkrunbook_key_check ({', '.join(fk['types'])}) AS "
                          f"SELECT 1 FROM ONLY {table} x WHERE {where} FOR KEY SHARE OF x"))
    try:
        plan = conn.execute(sql_text("EXPLAIN (FORMAT JSON) EXECUTE fkrunbook_key_check "
                                     f"({', '.join(['NULL'] * len(fk['columns']))})")).scalar()
    finally:
        conn.execute(sql_text("DEALLOCATE fkrunbook_key_check"))
        conn.execute(sql_text("RESET enable_seqscan"))
        conn.execute(sql_text("RESET plan_cache_mode"))
    plan = plan if isinstance(plan, list) else json.loads(plan)
    return next(iter(_index_names(plan[0]["Plan"])), None)


def _index_names(node: dict) -> list[str]:
    names = [node["Index Name"]] if "Index Name" in node else []
    for child in node.get("Plans", []):
        names += _index_names(child)
    return names


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


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
        open_ = [f for f in group if f.gates]
        if kind in INFO:
            lines.append(f"{kind}: {len(group)} (not failing the gate). To do: {FIX[kind]}")
        else:
            lines.append(f"{kind}: {len(group)} ({len(open_)} undeclared). Fix: {FIX[kind]}")
        for f in group:
            lines.append(f"  [{f.mark}] {f.table}.{f.column}: {f.detail}" + (f" (reason: {f.reason})" if f.reason else ""))
            if f.warning:
                lines.append(f"    WARNING: {f.warning}")
    undeclared = sum(f.gates for f in findings)
    lines.append(f"{len(findings)} finding(s), {undeclared} undeclared")
    return "\n".join(lines)


FORMATS = ("text", "json", "github", "markdown")


def format_findings(findings: list[Finding], fmt: str = "text") -> str:
    """The findings as ``text`` (grouped, for people), ``json`` (a list of objects), ``github``
    (workflow annotations: an error per finding that fails the gate, a notice per other one) or
    ``markdown`` (a table for a pull request or a job summary)."""
    if fmt == "json":
        return json.dumps([f.as_dict() for f in findings], indent=2)
    if fmt == "github":
        return "\n".join(_annotation(f) for f in findings) or "::notice title=fkrunbook audit::no finding"
    if fmt == "markdown":
        return render_markdown(findings)
    return render_findings(findings)


def _annotation(f: Finding) -> str:
    level = "error" if f.gates else "warning" if f.warning else "notice"
    title = _escape(f"fkrunbook audit: {f.finding} ({f.mark})", property_=True)
    message = f"{f.table}.{f.column}: {f.detail}" + (f" (reason: {f.reason})" if f.reason else "") + \
        (f". Fix: {FIX[f.finding]}" if f.gates else "") + (f". WARNING: {f.warning}" if f.warning else "")
    return f"::{level} title={title}::{_escape(message)}"


def _escape(text: str, property_: bool = False) -> str:
    """GitHub's workflow-command escaping (``%``, CR, LF; and ``:``, ``,`` in a property)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_ else text


def render_markdown(findings: list[Finding]) -> str:
    gating = sum(f.gates for f in findings)
    head = (f"### fkrunbook FK audit: {'FAIL' if gating else 'PASS'}\n\n"
            f"{len(findings)} finding(s), {gating} failing the gate.\n")
    if not findings:
        return head
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    rows = ["| Status | Finding | Column | Why | Reason |", "|---|---|---|---|---|"]
    for f in findings:
        status = "**fails the gate**" if f.gates else f.mark
        why = f.detail + (f" **Warning:** {f.warning}" if f.warning else "")
        rows.append(f"| {cell(status)} | `{f.finding}` | `{cell(f.table)}.{cell(f.column)}` | {cell(why)} | "
                    f"{cell(f.reason)} |")
    return head + "\n" + "\n".join(rows) + "\n"
