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
removed). Indexes come from ``CREATE INDEX`` (one without a name gets the name PostgreSQL would
give it, ``<table>_<columns>_idx``) and from the primary keys and unique constraints of ``CREATE
TABLE`` and ``ALTER TABLE ... ADD`` (named as their constraint, by default ``<table>_pkey`` and
``<table>_<columns>_key``); ``DROP INDEX``, ``ALTER INDEX ... RENAME TO`` and ``ALTER TABLE ... DROP
CONSTRAINT`` later in the folder are followed. Statements inside ``DO`` blocks or functions are not
looked at.
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
CREATE_TABLE = re.compile(
    r"CREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    rf"(?:(?P<schema>{IDENT})\s*\.\s*)?(?P<table>{IDENT})\s*\(", re.IGNORECASE | re.DOTALL)
ALTER_TABLE = re.compile(rf"ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?:(?P<schema>{IDENT})\s*\.\s*)?"
                         rf"(?P<table>{IDENT})\s+(?P<actions>.*)", re.IGNORECASE | re.DOTALL)
# a primary key or unique constraint: of the table (with its columns in parentheses), or in a column's definition
TABLE_KEY = re.compile(rf"(?:CONSTRAINT\s+(?P<name>{IDENT})\s+)?(?P<kind>PRIMARY\s+KEY|UNIQUE)"
                       r"(?:\s+NULLS\s+(?:NOT\s+)?DISTINCT)?\s*\(", re.IGNORECASE | re.DOTALL)
USING_INDEX = re.compile(rf"ADD\s+(?:CONSTRAINT\s+(?P<name>{IDENT})\s+)?(?:PRIMARY\s+KEY|UNIQUE)\s+USING\s+INDEX\s+"
                         rf"(?P<index>{IDENT})", re.IGNORECASE | re.DOTALL)
COLUMN_KEY = re.compile(rf"(?:\bCONSTRAINT\s+(?P<name>{IDENT})\s+)?\b(?P<kind>PRIMARY\s+KEY|UNIQUE)\b",
                        re.IGNORECASE | re.DOTALL)
NOT_A_COLUMN = re.compile(r"(?:CONSTRAINT|CHECK|FOREIGN|EXCLUDE|LIKE|PRIMARY|UNIQUE)\b", re.IGNORECASE)
NAMEDATALEN = 64


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


def object_name(name1: str, name2: str | None, label: str) -> str:
    """PostgreSQL's makeObjectName: ``name1_name2_label`` within 63 bytes, the longer part cut first."""
    name2 = name2 or None
    overhead = len(label) + 1 + (1 if name2 else 0)
    first, second = len(name1), len(name2 or "")
    while first + second > NAMEDATALEN - 1 - overhead:
        if first > second:
            first -= 1
        else:
            second -= 1
    return "_".join(filter(None, [name1[:first], (name2 or "")[:second], label]))


def default_index_name(table: str, columns: list[str], label: str, taken=frozenset()) -> str:
    """The name PostgreSQL gives an index it names itself (ChooseIndexName): the table, the columns'
    names joined by ``_`` and ``label`` (``idx``, ``key``), numbered (``idx1``) past a name in ``taken``."""
    addition = ""
    for column in columns:
        addition += ("_" if addition else "") + column
        if len(addition) >= NAMEDATALEN:
            break
    name, n = object_name(table, addition, label), 0
    while name in taken:
        n += 1
        name = object_name(table, addition, f"{label}{n}")
    return name


def _key_name(key: str) -> str:
    """How PostgreSQL names an index key in a default index name: the column (``email DESC``:
    email), the function an expression calls (``lower(email)``: lower), else ``expr``."""
    column = LEADING_COLUMN.fullmatch(key)
    if column and not column.group("after").startswith("("):
        return unquote(column.group("column"))
    called = re.match(rf"\s*\(*\s*(?:{IDENT}\s*\.\s*)?(?P<name>{IDENT})\s*\(", key)
    return unquote(called.group("name")) if called else "expr"


def parse_create_index(statement: str, file: str = "", taken=frozenset()) -> CreatedIndex | None:
    """The index a ``CREATE INDEX`` statement creates (comments already removed), or None for any other
    statement. One without a name gets PostgreSQL's (numbered past the names in ``taken``)."""
    match = CREATE_INDEX.match(statement.strip())
    if not match:
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
    schema, table = match.group("schema"), unquote(match.group("table"))
    if match.group("name"):
        name = unquote(match.group("name"))
    else:
        include = re.match(r"\s*INCLUDE\s*\(", text[close_at + 1:], re.IGNORECASE)
        included = []
        if include:
            start = close_at + 1 + include.end() - 1
            included = _top_level_split(text[start + 1:_closing(text, start)])
        name = default_index_name(table, [_key_name(k) for k in keys + included], "idx", taken)
    return CreatedIndex(name, unquote(schema) if schema else None, table, column, len(keys), where is not None,
                        file, not_null)


def _columns_in(text: str, open_at: int) -> list[str]:
    """The column names listed in the parentheses opening at ``open_at``."""
    return [unquote(LEADING_COLUMN.fullmatch(c).group("column")) for c in
            _top_level_split(text[open_at + 1:_closing(text, open_at)]) if LEADING_COLUMN.fullmatch(c)]


def _flat(text: str) -> str:
    """``text`` without its quoted strings and parenthesized parts (a CHECK, a DEFAULT call, a type's
    modifiers): what is left of a column definition are its words."""
    text = re.sub(r"'(?:[^']|'')*'", "''", text)
    while True:
        flatter = re.sub(r"\([^()]*\)", " ", text)
        if flatter == text:
            return text
        text = flatter


def parse_table_keys(statement: str, file: str = "", taken=frozenset()) -> tuple[list[CreatedIndex], list[str],
                                                                                 dict[str, str]]:
    """What a ``CREATE TABLE`` or ``ALTER TABLE`` statement does to indexes: the primary keys and
    unique constraints it adds (each an index of the constraint's name), the constraints it drops and
    the indexes it renames (``ADD CONSTRAINT c PRIMARY KEY USING INDEX i``)."""
    text = statement.strip()
    created = CREATE_TABLE.match(text)
    altered = None if created else ALTER_TABLE.match(text)
    if not created and not altered:
        return [], [], {}
    found = created or altered
    schema = unquote(found.group("schema")) if found.group("schema") else None
    table = unquote(found.group("table"))
    keys: list[tuple[str | None, str, list[str], list[str]]] = []  # (constraint name, kind, key columns, INCLUDE)
    dropped, renamed = [], {}
    if created:
        open_at = created.end() - 1
        elements = _top_level_split(text[open_at + 1:_closing(text, open_at)])
    else:
        elements = []
        for action in _top_level_split(found.group("actions")):
            action = action.strip()
            if using := USING_INDEX.match(action):
                if using.group("name"):
                    renamed[unquote(using.group("index"))] = unquote(using.group("name"))
            elif drop := re.match(rf"DROP\s+CONSTRAINT\s+(?:IF\s+EXISTS\s+)?(?P<name>{IDENT})", action, re.I):
                dropped.append(unquote(drop.group("name")))
            elif add := re.match(r"ADD\s+(?:COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?)?", action, re.I):
                elements.append(action[add.end():])
    for element in (e.strip() for e in elements):
        if key := TABLE_KEY.match(element):
            name = unquote(key.group("name")) if key.group("name") else None
            rest = element[_closing(element, key.end() - 1) + 1:]
            include = re.match(r"\s*INCLUDE\s*\(", rest, re.IGNORECASE)
            keys.append((name, key.group("kind"), _columns_in(element, key.end() - 1),
                         _columns_in(rest, include.end() - 1) if include else []))
        elif not NOT_A_COLUMN.match(element) and (column := LEADING_COLUMN.fullmatch(element)):
            if key := COLUMN_KEY.search(_flat(column.group("after"))):
                keys.append((unquote(key.group("name")) if key.group("name") else None, key.group("kind"),
                             [unquote(column.group("column"))], []))
    indexes, taken = [], set(taken)
    for name, kind, columns, included in keys:
        if not columns:
            continue
        primary = kind.upper().startswith("PRIMARY")
        name = name or (object_name(table, None, "pkey") if primary else
                        default_index_name(table, columns + included, "key", taken))
        taken.add(name)
        indexes.append(CreatedIndex(name, schema, table, columns[0], len(columns), False, file))
    return indexes, dropped, renamed


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
    or DROP CONSTRAINT removes it, a later ALTER INDEX ... RENAME TO renames it)."""
    indexes: dict[str, CreatedIndex] = {}

    def rename(old: str, new: str) -> None:
        if old in indexes:
            indexes[new] = replace(indexes.pop(old), name=new)

    for migration in files:
        for statement in split_statements(migration.path.read_text()):
            statement = strip_comments(statement).strip()
            if created := parse_create_index(statement, migration.filename, indexes.keys()):
                indexes.setdefault(created.name, created)  # IF NOT EXISTS on an existing one changes nothing
            elif dropped := DROP_INDEX.fullmatch(statement):
                for name in _names(dropped.group("names")):
                    indexes.pop(name, None)
            elif renamed := RENAME_INDEX.fullmatch(statement):
                rename(unquote(renamed.group("old")), unquote(renamed.group("new")))
            else:
                keys, dropped_keys, renamed_keys = parse_table_keys(statement, migration.filename, indexes.keys())
                for key in keys:
                    indexes.setdefault(key.name, key)
                for name in dropped_keys:
                    indexes.pop(name, None)
                for old, new in renamed_keys.items():
                    rename(old, new)
    return indexes


def covering_in_files(indexes: dict[str, CreatedIndex], schema: str, table: str, column: str) -> str | None:
    """The name of an index the files create on schema.table that covers ``column``
    (:meth:`CreatedIndex.covers`): one without WHERE first, then the one with the fewest columns,
    the earliest first."""
    candidates = [i for i in indexes.values() if i.covers(schema, table, column)]
    return min(candidates, key=lambda i: (i.partial, i.columns)).name if candidates else None
