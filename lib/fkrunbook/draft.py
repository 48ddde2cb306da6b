"""The next foreign-key change, drafted from the audit: ``fkrunbook spec new NAME --from-audit``.

The audit's undeclared ``missing_fk`` findings become the draft's foreign keys, each with what an
engineer would otherwise look up by hand: the live index that already covers the column (so the
runbook builds none), an ``on_delete`` suggested from the column's nullability and from the keys
the schema already has to the organizations table (and why), and the next migration version (newer
than every file of the Supabase folder and every version the environment recorded). The reason is
left for the engineer: a spec whose reason still starts with ``TODO`` is refused by every command
(:func:`fkrunbook.spec.parse_spec`), so no draft runs unread.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from . import history
from .audit import Finding
from .catalog import covering_index
from .database import Database
from .errors import DraftError
from .migration import next_versions
from .spec import IDENTIFIER, MAX_IDENTIFIER, TODO, Spec

KEYS_TO_PARENT = """
SELECT con.confdeltype AS action, a.attnotnull AS not_null
FROM pg_constraint con
JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
WHERE con.contype = 'f' AND pn.nspname = :schema AND p.relname = :parent AND cardinality(con.conkey) = 1
"""
NULLABLE = """
SELECT NOT a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relname = :table AND a.attname = :column
"""
ACTIONS = {"c": "cascade", "n": "set null", "r": "restrict", "a": "no action", "d": "set default"}


@dataclass(frozen=True)
class DraftKey:
    table: str
    column: str
    nullable: bool
    index: str | None    # the live covering index, if the column has one
    on_delete: str
    basis: str           # why that on_delete is suggested


@dataclass(frozen=True)
class Draft:
    name: str
    version: str
    keys: tuple[DraftKey, ...]
    left: tuple[str, ...]  # findings the draft leaves out, one line each

    def yaml(self, base: Spec) -> str:
        """The spec as a file, with comments saying where each value came from."""
        q = json.dumps  # a JSON string is a YAML string
        lines = [f"# Drafted by `fkrunbook spec new {self.name} --from-audit` from the audit's undeclared missing_fk",
                 "# findings. Write each reason (the runbook refuses a reason that still starts with TODO),",
                 "# check each on_delete, then run the six phases with --spec " + self.name + ".",
                 f"name: {self.name}", f"schema: {base.schema}", "parent:", f"  table: {base.parent.table}",
                 f"  column: {base.parent.column}", "migration:",
                 f"  version: {q(self.version)}  # newer than every file in the folder and every recorded version",
                 f"  lock_timeout: {q(base.migration.lock_timeout)}",
                 f"  statement_timeout: {q(base.migration.statement_timeout)}", "foreign_keys:"]
        for key in self.keys:
            lines += [f"  - table: {key.table}", f"    column: {key.column}"]
            if key.index:
                lines.append(f"    index: {key.index}  # the live index that already covers the column")
            lines += [f"    on_delete: {key.on_delete}  # suggested: {key.basis}", "    classification: oversight",
                      f"    reason: {q(TODO + ' write why ' + key.table + '.' + key.column + ' must point at an existing organization')}"]
        return "\n".join(lines) + "\n"


def draft_from_audit(db: Database, base: Spec, name: str, findings: list[Finding],
                     migrations_dir: str | Path) -> Draft:
    """The draft for ``name`` from ``findings`` (the audit's, on ``db``): the undeclared
    ``missing_fk`` findings in the base spec's schema. Raise :class:`DraftError` when there is none."""
    if not IDENTIFIER.match(name) or len(name) > MAX_IDENTIFIER:
        raise DraftError(f"spec name {name!r} is not a lower-case identifier (letters, digits, _); e.g. "
                         "add_notification_org_fk")
    missing = [f for f in findings if f.finding == "missing_fk" and f.gates]
    ours = [f for f in missing if f.table.split(".", 1)[0] == base.schema]
    left = tuple(f"left out {f.table}.{f.column}: not in schema {base.schema!r} (a spec covers one schema)"
                 for f in missing if f not in ours)
    if not ours:
        raise DraftError("the audit finds no undeclared missing_fk in schema "
                         f"{base.schema!r}: nothing to draft" + (f" ({len(left)} in other schemas)" if left else ""))
    keys = []
    with db.read_only() as conn:
        existing = conn.execute(text(KEYS_TO_PARENT), {"schema": base.schema, "parent": base.parent.table}).all()
        remote = history.list_remote(conn.connection.driver_connection)
        for f in ours:
            table = f.table.split(".", 1)[1]
            nullable = bool(conn.execute(text(NULLABLE), {"schema": base.schema, "table": table,
                                                          "column": f.column}).scalar())
            on_delete, basis = suggest_on_delete(nullable, existing, base.parent.table)
            keys.append(DraftKey(table, f.column, nullable, covering_index(conn, base.schema, table, f.column),
                                 on_delete, basis))
    return Draft(name, next_versions(migrations_dir, remote)[0], tuple(keys), left)


def suggest_on_delete(nullable: bool, existing: list, parent: str) -> tuple[str, str]:
    """CASCADE for a NOT NULL column (the row means nothing without its organization, and SET NULL
    cannot apply); for a nullable one, what the schema's other nullable keys to the parent mostly
    do (SET NULL when as many or more of them set null as cascade), else CASCADE."""
    counts = {}
    for action, not_null in existing:
        if not_null != (not nullable):
            continue
        counts[ACTIONS.get(action, action)] = counts.get(ACTIONS.get(action, action), 0) + 1
    seen = ", ".join(f"{n} {action.upper()}" for action, n in sorted(counts.items())) or "none"
    kind = "nullable" if nullable else "NOT NULL"
    if not nullable:
        return "cascade", f"NOT NULL column (SET NULL cannot apply); the schema's NOT NULL keys to {parent}: {seen}"
    if counts.get("set null", 0) >= counts.get("cascade", 0) and counts.get("set null"):
        return "set null", f"{kind} column; the schema's nullable keys to {parent}: {seen}"
    return "cascade", f"{kind} column; the schema's nullable keys to {parent}: {seen}"


def write_draft(draft: Draft, base: Spec, folder: Path, force: bool = False) -> Path:
    path = folder / f"{draft.name}.yaml"
    if path.exists() and not force:
        raise DraftError(f"{path} already exists; nothing was written: pass --force to replace it, or choose "
                         "another name")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(draft.yaml(base))
    return path
