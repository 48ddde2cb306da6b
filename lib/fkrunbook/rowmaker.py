"""Make a row that a real table accepts, whatever it requires, without anyone writing SQL for it.

The team's tables carry more NOT NULL, UNIQUE, CHECK and foreign-key constraints (and extension
types) than the columns the runbook cares about. :class:`RowMaker` reads them from the catalog,
proposes values per column (CHECK literals and numbers, enum labels, fresh uuids and texts, an
existing or newly made parent row for a foreign key) and inserts under a savepoint, moving on to
the next candidates for the constraint named in each rejection. Use it only in a transaction
that is rolled back.
"""
from __future__ import annotations

import datetime as dt
import itertools
import re
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import errors, sql

from .errors import RowMakerError

MAX_ATTEMPTS = 60
MAX_DEPTH = 4


@dataclass
class ColumnInfo:
    name: str
    type_sql: str          # format_type(), used for the cast
    category: str          # pg_type.typcategory of the (domain's base) type
    typtype: str
    type_oid: int
    not_null: bool
    has_default: bool
    skip: bool             # generated, or identity ALWAYS
    max_length: int | None
    enum_labels: list[str] = field(default_factory=list)
    check_defs: list[str] = field(default_factory=list)


@dataclass
class TableInfo:
    schema: str
    name: str
    columns: dict[str, ColumnInfo]
    primary_key: list[str]
    checks: dict[str, list[str]]                         # constraint -> columns
    uniques: dict[str, list[str]]                        # constraint -> columns
    foreign_keys: dict[str, tuple[list[str], str, str, list[str]]]  # name -> (cols, ref schema, ref table, ref cols)


class RowMaker:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self._tables: dict[tuple[str, str], TableInfo] = {}
        self._serial = itertools.count(1)

    # -- catalog -------------------------------------------------------------------------------
    def table(self, schema: str, name: str) -> TableInfo:
        key = (schema, name)
        if key not in self._tables:
            self._tables[key] = self._read_table(schema, name)
        return self._tables[key]

    def _read_table(self, schema: str, name: str) -> TableInfo:
        q = self.conn.execute
        oid = q("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
        if oid is None:
            raise RowMakerError(f"table {schema}.{name} does not exist")
        oid = oid[0]
        columns = {}
        for row in q("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod),
                   coalesce(bt.typcategory, t.typcategory), coalesce(bt.typtype, t.typtype),
                   coalesce(bt.oid, t.oid), a.attnotnull OR coalesce(t.typnotnull, false), a.atthasdef,
                   a.attgenerated <> '' OR a.attidentity = 'a',
                   CASE WHEN a.atttypmod > 4 AND coalesce(bt.typcategory, t.typcategory) = 'S'
                        THEN a.atttypmod - 4 END,
                   t.typtype = 'd', t.oid
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
            WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""", (oid,)):
            col = ColumnInfo(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])
            if col.typtype == "e":
                col.enum_labels = [r[0] for r in q("SELECT enumlabel FROM pg_enum WHERE enumtypid = %s "
                                                   "ORDER BY enumsortorder", (col.type_oid,))]
            if row[9]:  # a domain: its own CHECKs constrain the column too
                col.check_defs += [r[0] for r in q("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                                   "WHERE contypid = %s AND contype = 'c'", (row[10],))]
            columns[col.name] = col
        names = {num: n for num, n in q("SELECT attnum, attname FROM pg_attribute WHERE attrelid = %s "
                                        "AND attnum > 0", (oid,))}
        checks, uniques, fks, pk = {}, {}, {}, []
        for conname, contype, conkey, definition, ref_schema, ref_table, confkey in q("""
            SELECT con.conname, con.contype, con.conkey, pg_get_constraintdef(con.oid), rn.nspname, r.relname,
                   ARRAY(SELECT ra.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                         JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = k.num ORDER BY k.ord)
            FROM pg_constraint con LEFT JOIN pg_class r ON r.oid = con.confrelid
            LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
            WHERE con.conrelid = %s""", (oid,)):
            cols = [names[k] for k in (conkey or [])]
            if contype == "c":
                checks[conname] = cols
                for c in cols:
                    columns[c].check_defs.append(definition)
            elif contype in ("u", "p"):
                uniques[conname] = cols
                if contype == "p":
                    pk = cols
            elif contype == "f":
                fks[conname] = (cols, ref_schema, ref_table, list(confkey))
        for idx_name, cols in q("""
            SELECT ic.relname, ARRAY(SELECT a.attname FROM unnest(i.indkey) k JOIN pg_attribute a
                                     ON a.attrelid = i.indrelid AND a.attnum = k)
            FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = %s AND i.indisunique""", (oid,)):
            uniques.setdefault(idx_name, list(cols))
        return TableInfo(schema, name, columns, pk, checks, uniques, fks)

    # -- values ----------------------------------------------------------------------------------
    def candidates(self, col: ColumnInfo) -> list[str]:
        """Text representations to try for a column, most likely first (fresh on every call)."""
        n = next(self._serial)
        tag = f"fkrunbook-cascade-{uuid.uuid4().hex[:12]}"
        found = []
        for definition in col.check_defs:
            for pattern in re.findall(r"~\*?\s*'((?:[^']|'')*)'", definition):
                example = example_for_regex(pattern.replace("''", "'"))
                if example is not None:
                    found.append(example)
            found += [m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", definition)]
            for number in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])", definition):
                found += [number, str(float(number) + 1) if "." in number else str(int(number) + 1)]
        now = dt.datetime.now(dt.timezone.utc)
        by_category = {
            "B": ["true", "false"],
            "N": [str(n), "1", "0"],
            "D": [now.isoformat(), (now + dt.timedelta(days=1)).isoformat(), (now - dt.timedelta(days=1)).isoformat()],
            "T": ["1 hour", "1 day"],
            "A": ["{}"],
            "I": ["127.0.0.1"],
            "V": ["1"],
        }
        if col.enum_labels:
            base = col.enum_labels
        elif col.category == "U" and col.type_sql.startswith("uuid"):
            base = [str(uuid.uuid4())]
        elif col.type_sql in ("json", "jsonb"):
            base = ["{}", "[]"]
        elif col.category == "S" or col.type_sql in ("citext",):
            base = [tag[: col.max_length] if col.max_length else tag]
        else:
            base = by_category.get(col.category, [tag, str(n)])
        if col.category == "N" or col.category == "D":
            found = [f for f in found if _looks_like(col.category, f)]
        return list(dict.fromkeys(found + base)) or base

    # -- insert ----------------------------------------------------------------------------------
    def insert(self, schema: str, table: str, values: dict[str, object] | None = None, depth: int = 0) -> dict:
        """Insert one row into schema.table that satisfies its constraints; ``values`` are fixed.
        Returns the inserted row (all columns, as text)."""
        if depth > MAX_DEPTH:
            raise RowMakerError(f"foreign keys nest deeper than {MAX_DEPTH} tables from {schema}.{table}")
        info = self.table(schema, table)
        fixed = {k: (None if v is None else str(v)) for k, v in (values or {}).items()}
        unknown = set(fixed) - set(info.columns)
        if unknown:
            raise RowMakerError(f"{schema}.{table} has no column {sorted(unknown)[0]}")
        needed = [c for c in info.columns.values()
                  if c.name not in fixed and not c.skip and c.not_null and not c.has_default]
        self._fill_foreign_keys(info, fixed, {c.name for c in needed}, depth)
        choice = {c.name: 0 for c in needed if c.name not in fixed}
        pools = {name: self.candidates(info.columns[name]) for name in choice}
        last_error = None
        for _ in range(MAX_ATTEMPTS):
            row = dict(fixed)
            for name, index in choice.items():
                row[name] = pools[name][index % len(pools[name])]
            try:
                with self.conn.transaction():  # a savepoint inside the caller's transaction
                    return self._insert(info, row)
            except (errors.CheckViolation, errors.UniqueViolation, errors.NotNullViolation,
                    errors.InvalidTextRepresentation, errors.StringDataRightTruncation,
                    errors.NumericValueOutOfRange, errors.InvalidDatetimeFormat, errors.ForeignKeyViolation,
                    errors.DatatypeMismatch, errors.InvalidParameterValue, errors.DataException) as err:
                last_error = err
                self._advance(info, err, fixed, choice, pools, depth)
        raise RowMakerError(f"could not make a row that {schema}.{table} accepts: "
                            f"{str(last_error).splitlines()[0] if last_error else 'no attempt'}")

    def _insert(self, info: TableInfo, row: dict[str, str | None]) -> dict:
        target = sql.Identifier(info.schema, info.name)
        if row:
            cols = list(row)
            query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
                target, sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(sql.SQL("CAST({} AS {})").format(sql.Placeholder(), sql.SQL(info.columns[c].type_sql))
                                   for c in cols))
            cur = self.conn.execute(query, [row[c] for c in cols])
        else:
            cur = self.conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING *").format(target))
        values = cur.fetchone()
        return {d.name: v for d, v in zip(cur.description, values)}

    def _fill_foreign_keys(self, info: TableInfo, fixed: dict, needed: set[str], depth: int,
                           only: str | None = None) -> None:
        for name, (cols, ref_schema, ref_table, ref_cols) in info.foreign_keys.items():
            if only and name != only:
                continue
            if not only and (all(c in fixed for c in cols) or not any(c in needed for c in cols)):
                continue
            existing = self.conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 1").format(
                sql.SQL(", ").join(map(sql.Identifier, ref_cols)), sql.Identifier(ref_schema, ref_table))).fetchone()
            if existing is None or only:
                made = self.insert(ref_schema, ref_table, depth=depth + 1)
                existing = [made[c] for c in ref_cols]
            for col, value in zip(cols, existing):
                fixed.setdefault(col, None if value is None else str(value))

    def _advance(self, info, err, fixed, choice, pools, depth) -> None:
        """Change the values the rejection points at: the constraint's columns, or the column named."""
        diag = err.diag
        if isinstance(err, errors.ForeignKeyViolation) and diag.constraint_name in info.foreign_keys:
            cols = info.foreign_keys[diag.constraint_name][0]
            for c in cols:
                if c in fixed and c not in choice:
                    fixed.pop(c)
            self._fill_foreign_keys(info, fixed, set(cols), depth, only=diag.constraint_name)
            return
        cols = info.checks.get(diag.constraint_name) or info.uniques.get(diag.constraint_name) or []
        if not cols and diag.column_name:
            cols = [diag.column_name]
        if isinstance(err, errors.NotNullViolation) and diag.column_name and diag.column_name not in choice:
            choice[diag.column_name] = 0
            pools[diag.column_name] = self.candidates(info.columns[diag.column_name])
            return
        movable = [c for c in cols if c in choice] or list(choice)
        if isinstance(err, errors.UniqueViolation):
            for c in movable:
                pools[c] = self.candidates(info.columns[c])  # fresh uuids and texts
                choice[c] += 1
            return
        for c in movable:  # odometer over the columns concerned
            choice[c] += 1
            if choice[c] % len(pools[c]):
                break


def example_for_regex(pattern: str) -> str | None:
    """A short string matching a (simple) regular expression, or None when it cannot tell."""
    import re._parser as sre_parse  # Python 3.11+
    from re import _constants as c

    def build(items) -> str:
        out = []
        for op, arg in items:
            if op is c.LITERAL:
                out.append(chr(arg))
            elif op is c.IN:
                out.append(_first_in(arg))
            elif op is c.ANY:
                out.append("a")
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
                low, _high, body = arg
                out.append(build(body) * max(low, 1))
            elif op is c.SUBPATTERN:
                out.append(build(arg[-1]))
            elif op is c.BRANCH:
                out.append(build(arg[1][0]))
            elif op is c.AT:
                continue
            else:
                raise ValueError(op)
        return "".join(out)

    def _first_in(items) -> str:
        for op, arg in items:
            if op is c.LITERAL:
                return chr(arg)
            if op is c.RANGE:
                return chr(arg[0])
            if op is c.CATEGORY:
                return {"CATEGORY_DIGIT": "0", "CATEGORY_SPACE": " "}.get(str(arg), "a")
        raise ValueError("negated or empty class")

    try:
        example = build(sre_parse.parse(pattern))
        return example if re.search(pattern, example) else None
    except (ValueError, re.error, TypeError):
        return None


def _looks_like(category: str, text: str) -> bool:
    if category == "N":
        return bool(re.fullmatch(r"-?\d+(\.\d+)?", text))
    return bool(re.match(r"\d{4}-\d{2}-\d{2}", text))
