"""Which index already covers a foreign-key column, so the runbook never builds a second one.

When the migration files are generated, each foreign-key column's covering index is named, in
order: by the spec's ``index:``; after a valid index in the live database whose leading column is
the column and that holds every row with a value there (:func:`fkrunbook.catalog.covering_index`);
after a ``CREATE INDEX`` on that table, with that leading column and no ``WHERE`` (or only
``WHERE <column> IS NOT NULL``, which a lookup by the column implies), in an earlier migration
file of the folder (:func:`indexes_in_files`); else the spec's default ``<table>_<column>_idx``. The file then
says ``CREATE INDEX CONCURRENTLY IF NOT EXISTS <that name>``: a no-op where the index exists, and
the team's own name where it does not (a database rebuilt from the files).

The files are read statement by statement (split as the Supabase CLI splits them, comments
removed); ``DROP INDEX`` and ``ALTER INDEX ... RENAME TO`` later in the folder are followed.
Statements inside ``DO`` blocks or functions are not looked at.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .history import MigrationFile, split_statements
from .sqltext import IDENT, depth_split, lex, unquote

CREATE_INDEX = re.compile(
    r"CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"(?:(?P<name>{IDENT})\s+)?ON\s+(?:ONLY\s+)?(?:(?P<schema>{IDENT})\s*\.\s*)?(?P<table>{IDENT})\s*"
    rf"(?:USING\s+(?P<method>{IDENT})\s*)?\(", re.IGNORECASE | re.DOTALL)
DROP_INDEX = re.compile(r"DROP\s+INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?(?P<names>.+?)"
                        r"(?:\s+(?:CASCADE|RESTRICT))?", re.IGNORECASE | re.DOTALL)
RENAME_INDEX = re.compile(rf"ALTER\s+INDEX\s+(?:IF\s+EXISTS\s+)?(?:{IDENT}\s*\.\s*)?(?P<old>{IDENT})\s+"
                          rf"RENAME\s+TO\s+(?P<new>{IDENT})", re.IGNORECASE | re.DOTALL)
LEADING_COLUMN = re.compile(rf"\s*(?P<column>{IDENT})\s*(?P<after>.*)", re.DOTALL)
NOT_NULL = re.compile(rf"(?P<column>{IDENT})\s+IS\s+NOT\s+NULL", re.IGNORECASE)


@dataclass(frozen=True)
class CreatedIndex:
    """An index a migration file creates, as far as the runbook needs to know it."""
    name: str
    schema: str | None        # None: unqualified (the migration's search_path, public for the CLI)
    table: str
    leading_column: str | None  # None: the first key is an expression
    columns: int               # key columns (INCLUDE columns not counted)
    partial: bool              # has a WHERE clause
    file: str
    not_null: str | None = None  # the column of a WHERE that is only `<column> IS NOT NULL`

    def covers(self, schema: str, table: str, column: str) -> bool:
        """Whether a lookup of ``column = $1`` (the key check, an ON DELETE action) finds every row
        in this index: led by the column, and no WHERE or only ``WHERE <column> IS NOT NULL``."""
        return ((not self.partial or self.not_null == column) and self.table == table
                and self.leading_column == column and self.schema in (None, schema))


def strip_comments(sql: str) -> str:
    """The SQL without its -- and (nested) /* */ comments; quoted text and dollar quotes kept."""
    return "".join(" " if kind == "comment" else sql[i:end] for kind, i, end in lex(sql))


def _closing(text: str, start: int) -> int:
    """Index of the ')' matching the '(' at ``start``, skipping quoted text; -1 when unbalanced."""
    depth = 0
    for kind, i, _ in lex(text[start:]):
        if kind == "code" and text[start + i] in "()":
            depth += 1 if text[start + i] == "(" else -1
            if depth == 0:
                return start + i
    return -1


def _top_level_split(text: str) -> list[str]:
    """``text`` split on commas outside parentheses and quotes."""
    return [part.removesuffix(",") for part in depth_split(text, ",")]


def _without_quoted(text: str) -> str:
    return re.sub(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"", "''", text)


def parse_create_index(statement: str, file: str = "") -> CreatedIndex | None:
    """The index a ``CREATE INDEX`` statement creates (comments already removed), or None for any other
    statement and for one without a name."""
    match = CREATE_INDEX.match(statement.strip())
    if not match or not match.group("name"):
        return None
    open_at = match.end() - 1
    text = statement.strip()
    close_at = _closing(text, open_at)
    if close_at < 0:
        return None
    keys = _top_level_split(text[open_at + 1:close_at])
    leading = LEADING_COLUMN.fullmatch(keys[0])
    column = None
    if leading and not leading.group("after").startswith("("):  # `lower(x)`: an expression, not a column
        column = unquote(leading.group("column"))
    where = re.search(r"\bWHERE\b", _without_quoted(text[close_at + 1:]), re.IGNORECASE)
    not_null = None
    if where:  # the predicate follows the last WHERE (one in a quoted name before it is not the clause)
        tail = text[close_at + 1:]
        not_null = _not_null_column(tail[[m.end() for m in re.finditer(r"\bWHERE\b", tail, re.I)][-1]:])
    schema = match.group("schema")
    return CreatedIndex(unquote(match.group("name")), unquote(schema) if schema else None,
                        unquote(match.group("table")), column, len(keys), where is not None, file, not_null)


def _not_null_column(predicate: str) -> str | None:
    """The column of a predicate that is only ``<column> IS NOT NULL`` (in any parentheses), else None."""
    predicate = predicate.strip().removesuffix(";").strip()
    while predicate.startswith("(") and _closing(predicate, 0) == len(predicate) - 1:
        predicate = predicate[1:-1].strip()
    found = NOT_NULL.fullmatch(predicate)
    return unquote(found.group("column")) if found else None


def _names(listed: str) -> list[str]:
    """The index names of a DROP INDEX list (``a, s.b, "C"``), without their schemas."""
    names = []
    for item in _top_level_split(listed):
        parts = re.findall(IDENT, item)
        if parts:
            names.append(unquote(parts[-1]))
    return names


def indexes_in_files(files: list[MigrationFile]) -> dict[str, CreatedIndex]:
    """Index name -> the index as the files leave it, reading the files in order (a later DROP INDEX
    removes it, a later ALTER INDEX ... RENAME TO renames it)."""
    indexes: dict[str, CreatedIndex] = {}
    for migration in files:
        for statement in split_statements(migration.path.read_text()):
            statement = strip_comments(statement).strip()
            if created := parse_create_index(statement, migration.filename):
                indexes.setdefault(created.name, created)  # IF NOT EXISTS on an existing one changes nothing
            elif dropped := DROP_INDEX.fullmatch(statement):
                for name in _names(dropped.group("names")):
                    indexes.pop(name, None)
            elif renamed := RENAME_INDEX.fullmatch(statement):
                old = indexes.pop(unquote(renamed.group("old")), None)
                if old:
                    new = unquote(renamed.group("new"))
                    indexes[new] = replace(old, name=new)
    return indexes


def covering_in_files(indexes: dict[str, CreatedIndex], schema: str, table: str, column: str) -> str | None:
    """The name of an index the files create on schema.table that covers ``column``
    (:meth:`CreatedIndex.covers`): one without WHERE first, then the one with the fewest columns,
    the earliest first."""
    candidates = [i for i in indexes.values() if i.covers(schema, table, column)]
    return min(candidates, key=lambda i: (i.partial, i.columns)).name if candidates else None
