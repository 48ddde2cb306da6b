"""Make a row that a real table accepts, whatever it requires, without anyone writing SQL for it.

The team's tables carry more than the columns the runbook cares about: NOT NULL, UNIQUE, CHECK,
exclusion and foreign-key constraints, extension types, domains, partitions, row-level security
and triggers. :class:`RowMaker` copies an existing row of the table when there is one (with fresh
values where they must be unique), and otherwise proposes values per column (see
:mod:`.candidate`). Every attempt runs under a savepoint; any rejection of a value or a row (a
data or syntax error from a type, a violated constraint, a trigger's error, a row-level security
check, an insert that wrote no row) moves on to the next candidates for the columns the rejection
points at. Deferred constraints are checked after each insert as a commit would check them. When
a new referenced row's triggers wrote the very row wanted (a sign-up trigger that inserts the
user's profile), that row is taken and given the caller's values. Errors that mean the environment
is broken (a lost connection, a missing privilege, a timeout) are raised as they are. Use it only
in a transaction that is rolled back.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import psycopg
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from .candidate import TypeInfo, hints_from, mutate, values_for
from .errors import RowMakerError

MAX_ATTEMPTS = 60
MAX_DEPTH = 4

REJECTION_CLASSES = ("22", "23", "P0")  # data exceptions, integrity violations, PL/pgSQL raises
REJECTION_STATES = {"42601", "42804", "42846", "428C9"}  # type input syntax, mismatch, coercion, generated
BROKEN_CLASSES = ("08", "25", "28", "40", "53", "54", "55", "57", "58", "XX")  # connection, timeout, locks...


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


DEFAULT = _Sentinel("DEFAULT")  # leave the column out: its default (or NULL, or an identity) applies
PARENT = _Sentinel("PARENT")    # take the value from a row of the referenced table


@dataclass
class ColumnInfo:
    name: str
    type_sql: str          # format_type(), used for the cast
    type: TypeInfo
    typmod: int
    not_null: bool         # the column's or its domain's NOT NULL
    has_default: bool      # a default, or an identity BY DEFAULT
    skip: bool             # generated, or identity ALWAYS: never written
    check_defs: list[str] = field(default_factory=list)


@dataclass
class TableInfo:
    schema: str
    name: str
    columns: dict[str, ColumnInfo]
    primary_key: list[str]
    constraints: dict[str, tuple[str, list[str]]]   # name -> (kind, columns); kinds: check unique exclusion fk
    foreign_keys: dict[str, tuple[list[str], str, str, list[str]]]  # name -> (cols, ref schema, ref table, ref cols)
    partition_key: list[str] = field(default_factory=list)
    partition_hints: list[str] = field(default_factory=list)
    partitions: set[str] = field(default_factory=set)      # every partition's name, at any level
    policies: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    def groups(self, kinds: tuple[str, ...]) -> list[list[str]]:
        return [cols for kind, cols in self.constraints.values() if kind in kinds]


class RowMaker:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.rng = random.Random()
        self._tables: dict[tuple[str, str], TableInfo] = {}
        self._types: dict[int, TypeInfo] = {}
        self._made: dict[tuple[str, str], list[dict]] = {}   # rows this maker inserted or claimed, as text
        self._given: set[tuple[str, str, tuple]] = set()     # (schema, table, primary key) of rows handed to callers
        self._deferrable: bool | None = None                 # whether the database has deferrable constraints

    # -- catalog -------------------------------------------------------------------------------
    def table(self, schema: str, name: str) -> TableInfo:
        key = (schema, name)
        if key not in self._tables:
            self._tables[key] = self._read_table(schema, name)
        return self._tables[key]

    def _read_table(self, schema: str, name: str) -> TableInfo:
        q = self.conn.execute
        found = q("SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE n.nspname = %s AND c.relname = %s", (schema, name)).fetchone()
        if found is None:
            raise RowMakerError(f"table {schema}.{name} does not exist; check the spec's schema and table names",
                                table=f"{schema}.{name}")
        oid, relkind = found
        columns = {}
        for attname, type_sql, typid, typmod, not_null, has_default, identity, generated in q("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod, a.attnotnull,
                   a.atthasdef, a.attidentity, a.attgenerated
            FROM pg_attribute a WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
                (oid,)).fetchall():
            t = self._type(typid)
            columns[attname] = ColumnInfo(attname, type_sql, t, typmod, not_null or t.domain_not_null(),
                                          has_default or identity == "d", generated != "" or identity == "a",
                                          list(t.all_checks()))
        constraints, fks, pk = {}, {}, []
        for conname, contype, cols, definition, ref_schema, ref_table, ref_cols in q("""
            SELECT con.conname, con.contype,
                   ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                         JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord),
                   pg_get_constraintdef(con.oid), rn.nspname, r.relname,
                   ARRAY(SELECT ra.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                         JOIN pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = k.num ORDER BY k.ord)
            FROM pg_constraint con LEFT JOIN pg_class r ON r.oid = con.confrelid
            LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
            WHERE con.conrelid = %s AND con.contype IN ('c', 'u', 'p', 'f', 'x')""", (oid,)).fetchall():
            kind = {"c": "check", "u": "unique", "p": "unique", "f": "fk", "x": "exclusion"}[contype]
            constraints[conname] = (kind, list(cols))
            if contype == "c":
                for c in cols:
                    columns[c].check_defs.append(definition)
            elif contype == "p":
                pk = list(cols)
            elif contype == "f":
                fks[conname] = (list(cols), ref_schema, ref_table, list(ref_cols))
        for index, definition in q("""
            SELECT ic.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
            WHERE i.indrelid = %s AND i.indisunique""", (oid,)).fetchall():
            if index not in constraints:  # a unique index, maybe on expressions: the columns it names
                key = definition.split(" USING ", 1)[-1]
                constraints[index] = ("unique", [c for c in columns if re.search(rf'\b{re.escape(c)}\b', key)])
        info = TableInfo(schema, name, columns, pk, constraints, fks)
        if relkind == "p":
            self._read_partitions(info, oid)
        for policy, expression in q("""
            SELECT polname::text, coalesce(pg_get_expr(polwithcheck, polrelid), pg_get_expr(polqual, polrelid))
            FROM pg_policy WHERE polrelid = %s AND polcmd IN ('a', '*') ORDER BY 1""", (oid,)).fetchall():
            info.policies.append(policy)  # its literals are candidates for the columns it names
            for c in columns.values():
                if expression and re.search(rf'\b{re.escape(c.name)}\b', expression):
                    c.check_defs.append(expression)
        return info

    def _read_partitions(self, info: TableInfo, oid: int) -> None:
        """The partition key's columns and the literals of every partition's bounds (a value that routes)."""
        key, bounds = set(), []
        for relname, keydef, bound in self.conn.execute("""
            SELECT c.relname::text, pg_get_partkeydef(t.relid), pg_get_expr(c.relpartbound, c.oid)
            FROM pg_partition_tree(%s) t JOIN pg_class c ON c.oid = t.relid""", (oid,)).fetchall():
            info.partitions.add(relname)
            if keydef:
                key |= {c for c in info.columns if re.search(rf'\b{re.escape(c)}\b', keydef.split(" ", 1)[-1])}
            if bound:
                bounds.append(bound)
        info.partition_key = [c for c in info.columns if c in key]
        info.partition_hints = hints_from(bounds, self.rng)

    def _type(self, oid: int) -> TypeInfo:
        if oid in self._types:
            return self._types[oid]
        (name, typtype, category, base, typmod, not_null, elem, relid, subtype) = self.conn.execute("""
            SELECT t.typname, t.typtype, t.typcategory, t.typbasetype, t.typtypmod, t.typnotnull, t.typelem,
                   t.typrelid, r.rngsubtype
            FROM pg_type t LEFT JOIN pg_range r ON r.rngtypid = t.oid WHERE t.oid = %s""", (oid,)).fetchone()
        info = TypeInfo(name, typtype, category, typmod, not_null)
        self._types[oid] = info  # before recursing: a composite may refer back to itself
        if typtype == "d":
            info.base = self._type(base)
            info.checks = [d for (d,) in self.conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contypid = %s AND contype = 'c'", (oid,))]
        elif typtype == "e":
            info.labels = [lbl for (lbl,) in self.conn.execute(
                "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder", (oid,))]
        elif typtype == "r":
            info.subtype = self._type(subtype)
        elif typtype == "c":
            info.fields = [(n, self._type(t), mod) for n, t, mod in self.conn.execute(
                "SELECT attname::text, atttypid, atttypmod FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum", (relid,))]
        elif category == "A" and elem:
            info.element = self._type(elem)
        return info

    # -- values ----------------------------------------------------------------------------------
    def values(self, info: TableInfo, col: ColumnInfo) -> list[str]:
        """Text candidates for a column, most likely first (fresh uuids and random parts on every call)."""
        hints = hints_from(col.check_defs, self.rng)
        if col.name in info.partition_key:
            hints = info.partition_hints + hints
        return values_for(col.type, hints, self.rng, col.typmod)

    # -- insert ----------------------------------------------------------------------------------
    def insert(self, schema: str, table: str, values: dict[str, object] | None = None, depth: int = 0) -> dict:
        """Insert one row into schema.table that satisfies its constraints; ``values`` are fixed.
        Returns the inserted row (column name to value)."""
        if self.conn.autocommit:
            raise RowMakerError("the row maker writes only inside a transaction that is rolled back; "
                                "use a connection without autocommit")
        if self.conn.info.transaction_status == TransactionStatus.IDLE:
            self.conn.execute("SELECT 1")  # open the caller's transaction: each attempt is then a savepoint in it
        if depth > MAX_DEPTH:
            raise RowMakerError(f"foreign keys nest deeper than {MAX_DEPTH} tables from {schema}.{table}; "
                                "add rows to the referenced tables in this environment", table=f"{schema}.{table}")
        info = self.table(schema, table)
        fixed = {k: (None if v is None else str(v)) for k, v in (values or {}).items()}
        unknown = set(fixed) - set(info.columns)
        if unknown:
            raise RowMakerError(f"{info.label} has no column {sorted(unknown)[0]}; check the spec's column names",
                                table=info.label, column=sorted(unknown)[0])
        row = _Attempts(self, info, fixed, depth).run()
        self._made.setdefault((schema, table), []).append(_as_text(row))
        if depth == 0 and info.primary_key:
            self._given.add((schema, table, tuple(_as_text(row)[c] for c in info.primary_key)))
        return row

    def check_deferred(self) -> None:
        """Check the deferred constraints now, as a commit would, and raise what it would raise; then
        defer them again (the check runs in a savepoint rolled back afterwards, which leaves them
        pending as they were). A row that breaks a deferred key is refused here, not at a commit that
        never comes: the caller's later checks (the cascade test's) would otherwise blame the delete."""
        if self._deferrable is None:
            self._deferrable = bool(self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE condeferrable)").fetchone()[0])
        if self._deferrable:
            with self.conn.transaction():
                self.conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
                raise psycopg.Rollback()

    def made(self, schema: str, table: str, values: dict[str, str | None]) -> bool:
        """Whether this maker inserted (or claimed) a row of schema.table with these column values:
        such a row exists only in this transaction."""
        return any(all(row.get(c) == v for c, v in values.items()) for row in self._made.get((schema, table), []))

    def given(self, info: TableInfo, row: dict) -> bool:
        """Whether ``row`` is one this maker handed to its caller (who may hold on to it)."""
        return bool(info.primary_key) and (info.schema, info.name, tuple(
            _as_text(row)[c] for c in info.primary_key)) in self._given

    def template(self, info: TableInfo) -> dict[str, str | None] | None:
        """An existing row of the table (its writable columns, as text), or None when it has none."""
        cols = [c for c in info.columns.values() if not c.skip]
        if not cols:
            return None
        row = self.conn.execute(sql.SQL("SELECT {} FROM {} LIMIT 1").format(
            sql.SQL(", ").join(sql.SQL("CAST({} AS text)").format(sql.Identifier(c.name)) for c in cols),
            sql.Identifier(info.schema, info.name))).fetchone()
        return None if row is None else {c.name: v for c, v in zip(cols, row)}

    def accepts(self, col: ColumnInfo, value: str) -> psycopg.Error | None:
        """None when the column's type (with its domains) reads ``value``; else the error it gave."""
        try:
            with self.conn.transaction():
                self.conn.execute(sql.SQL("SELECT CAST(%s AS {})").format(sql.SQL(col.type_sql)), (value,))
        except psycopg.Error as err:
            if not is_rejection(err):
                raise
            return err
        return None


class _Attempts:
    """One row being made: a pool of candidates per column and an odometer over them."""

    def __init__(self, maker: RowMaker, info: TableInfo, fixed: dict, depth: int):
        self.maker, self.info, self.fixed, self.depth = maker, info, fixed, depth
        self.template = maker.template(info)
        self.fk_of = {}
        for name, (cols, *_rest) in info.foreign_keys.items():
            if not all(c in fixed for c in cols):
                for c in cols:
                    self.fk_of.setdefault(c, name)
        self.must_change = self._must_change()
        self.columns = [c for c in info.columns.values() if not c.skip and c.name not in fixed]
        self.pools = {c.name: self._pool(c) for c in self.columns}
        self.choice = {c.name: 0 for c in self.columns}
        self.checked: set[tuple[str, str]] = set()
        self.parents: dict[str, dict] = {}      # foreign key -> referenced row in use
        self.new_parent: set[str] = set()       # foreign keys whose referenced row must be a new one

    def _must_change(self) -> set[str]:
        """Columns that cannot keep the template's value: one unique or exclusion group copied whole."""
        if self.template is None:
            return set()
        change = set()
        for cols in self.info.groups(("unique", "exclusion")):
            if cols and not any(c in self.fixed for c in cols):
                change |= {c for c in cols if c not in self.fk_of} or set(cols)
        return change

    def _pool(self, col: ColumnInfo) -> list:
        """Candidates for one column: the template's value (unless it must change), the default,
        NULL if allowed, then a referenced row (a foreign-key column) or values made for its type."""
        pool = []
        if self.template is not None and col.name not in self.must_change:
            pool.append(self.template[col.name])
        if col.has_default:
            pool.append(DEFAULT)
        if col.name in self.must_change and (self.template or {}).get(col.name):
            pool += [m for m in (mutate(self.template[col.name], self.maker.rng),) if m is not None]
        if not col.not_null:
            pool.append(None)
        if col.name in self.fk_of:
            pool.append(PARENT)
        else:
            pool += self.maker.values(self.info, col)
        return [p for p in dict.fromkeys(pool) if p is not None or not col.not_null]

    def run(self) -> dict:
        last = None
        for _ in range(MAX_ATTEMPTS):
            row = self._row()
            try:
                with self.maker.conn.transaction():  # a savepoint inside the caller's transaction
                    made = self._insert(row)
                    if made is None:
                        raise _NoRow()
                    self.maker.check_deferred()
                return made
            except _NoRow:
                last = ("no row", None, [])
                self._advance([])
            except psycopg.Error as err:
                if not is_rejection(err):
                    raise
                cols = self._implicated(err, row)
                last = ("error", err, cols)
                if not self.pools:  # every column is fixed by the caller: nothing else to try
                    break
                if isinstance(err, errors.ForeignKeyViolation) and err.diag.constraint_name in self.info.foreign_keys:
                    self.new_parent.add(err.diag.constraint_name)
                    self.parents.pop(err.diag.constraint_name, None)
                    cols = [c for c in cols if PARENT in self.pools.get(c, [])] or cols
                    for c in cols:
                        if c in self.pools:
                            self.choice[c] = self.pools[c].index(PARENT)
                    continue
                if isinstance(err, errors.UniqueViolation):
                    claimed = self._claim(err, row)
                    if claimed is not None:
                        return claimed
                if isinstance(err, (errors.UniqueViolation, errors.ExclusionViolation)):
                    for c in cols:
                        if c in self.pools and c not in self.fk_of:
                            self.pools[c] = self._pool(self.info.columns[c])  # fresh uuids and random parts
                    self._refresh_parents(cols)
                self._advance(cols)
        user = self.maker.conn.execute("SELECT current_user::text").fetchone()[0]
        raise _refusal(self.info, last, user)

    # -- one attempt -------------------------------------------------------------------------------
    def _row(self) -> dict:
        row = dict(self.fixed)
        for col in self.columns:
            row[col.name] = self._current(col)
        for col in self.columns:
            if row[col.name] is PARENT:
                row.update(self._parent(self.fk_of[col.name]))
        return row

    def _current(self, col: ColumnInfo):
        """The column's chosen candidate, after dropping those its type refuses."""
        pool = self.pools[col.name]
        while True:
            value = pool[self.choice[col.name] % len(pool)]
            if not isinstance(value, str) or (col.name, value) in self.checked or value == (self.template or {}).get(
                    col.name):
                return value
            err = self.maker.accepts(col, value)
            if err is None:
                self.checked.add((col.name, value))
                return value
            pool.remove(value)
            if not pool:
                raise RowMakerError(
                    f"cannot make a test row for {self.info.label}: column {col.name} ({col.type_sql}) accepts none "
                    f"of its candidate values, the last refused with: {_first_line(err)}; add one row to "
                    f"{self.info.label} in this environment (the row maker copies an existing row first)",
                    table=self.info.label, column=col.name, constraint=err.diag.constraint_name)

    def _parent(self, fk: str) -> dict:
        """Values for a foreign key's columns: an existing referenced row (agreeing with the fixed
        columns), or a new one made for it."""
        if fk in self.parents:
            return self.parents[fk]
        cols, ref_schema, ref_table, ref_cols = self.info.foreign_keys[fk]
        pinned = {r: self.fixed[c] for c, r in zip(cols, ref_cols) if c in self.fixed}
        found = None
        if fk not in self.new_parent:
            ref = self.maker.table(ref_schema, ref_table)
            where = sql.SQL(" AND ").join(sql.SQL("{} = CAST(%s AS {})").format(
                sql.Identifier(r), sql.SQL(ref.columns[r].type_sql)) for r in pinned)
            found = self.maker.conn.execute(sql.SQL("SELECT {} FROM {} {} LIMIT 1").format(
                sql.SQL(", ").join(sql.SQL("CAST({} AS text)").format(sql.Identifier(r)) for r in ref_cols),
                sql.Identifier(ref_schema, ref_table), sql.SQL("WHERE ") + where if pinned else sql.SQL("")),
                list(pinned.values())).fetchone()
        if found is None:
            if (ref_schema, ref_table) == (self.info.schema, self.info.name):
                raise RowMakerError(
                    f"cannot make a test row for {self.info.label}: column {', '.join(cols)} must reference another "
                    f"row of the same table (foreign key {fk}) and there is none; add one row to {self.info.label} "
                    "in this environment", table=self.info.label, column=cols[0], constraint=fk)
            made = self.maker.insert(ref_schema, ref_table, pinned, self.depth + 1)
            found = [None if made[r] is None else str(made[r]) for r in ref_cols]
        self.parents[fk] = {c: v for c, v in zip(cols, found) if c not in self.fixed}
        self.new_parent.discard(fk)
        return self.parents[fk]

    def _refresh_parents(self, cols: list[str]) -> None:
        """A unique group made only of foreign-key columns: a new referenced row makes it new."""
        fks = {self.fk_of[c] for c in cols if c in self.fk_of}
        if fks and all(c in self.fk_of for c in cols if c in self.pools):
            fk = sorted(fks)[0]
            self.new_parent.add(fk)
            self.parents.pop(fk, None)
            for c in self.info.foreign_keys[fk][0]:
                if c in self.pools:
                    self.choice[c] = self.pools[c].index(PARENT)

    def _insert(self, row: dict) -> dict | None:
        target = sql.Identifier(self.info.schema, self.info.name)
        cols = [c for c, v in row.items() if v is not DEFAULT]
        if cols:
            query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
                target, sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(sql.SQL("CAST({} AS {})").format(
                    sql.Placeholder(), sql.SQL(self.info.columns[c].type_sql)) for c in cols))
            cur = self.maker.conn.execute(query, [row[c] for c in cols])
        else:
            cur = self.maker.conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING *").format(target))
        values = cur.fetchone()  # None: a BEFORE trigger returned NULL, or a rule did something else
        return None if values is None else {d.name: v for d, v in zip(cur.description, values)}

    # -- after a rejection ---------------------------------------------------------------------------
    def _claim(self, err: errors.UniqueViolation, row: dict) -> dict | None:
        """The row that is in the way, when this transaction made it: a unique key made only of
        foreign-key columns that reference rows this maker made (a sign-up trigger on ``auth.users``
        that inserts the user's profile, an organization trigger that inserts its settings row) can
        only be taken by a row written since, as their side effect. That row is the row wanted: it
        gets the caller's fixed values and is returned. None when it is not such a row, is one
        already handed to the caller, or refuses the fixed values."""
        kind, cols = self.info.constraints.get(err.diag.constraint_name, (None, []))
        if kind != "unique" or not cols or err.diag.table_name not in (None, self.info.name):
            return None
        if not all(self._refers_to_made(c, row) for c in cols):
            return None
        target = sql.Identifier(self.info.schema, self.info.name)
        where = sql.SQL(" AND ").join(sql.SQL("{} = CAST(%s AS {})").format(
            sql.Identifier(c), sql.SQL(self.info.columns[c].type_sql)) for c in cols)
        keys = [row[c] for c in cols]
        updates = {c: v for c, v in self.fixed.items() if c not in cols}
        try:
            with self.maker.conn.transaction():
                cur = self.maker.conn.execute(sql.SQL("SELECT * FROM {} WHERE {} FOR UPDATE").format(target, where), keys)
                found = cur.fetchone()
                if found is None or self.maker.given(self.info, dict(zip([d.name for d in cur.description], found))):
                    return None
                if updates:
                    cur = self.maker.conn.execute(sql.SQL("UPDATE {} SET {} WHERE {} RETURNING *").format(
                        target, sql.SQL(", ").join(sql.SQL("{} = CAST(%s AS {})").format(
                            sql.Identifier(c), sql.SQL(self.info.columns[c].type_sql)) for c in updates), where),
                        list(updates.values()) + keys)
                    found = cur.fetchone()
                    self.maker.check_deferred()
        except psycopg.Error as claim_err:
            if not is_rejection(claim_err):
                raise
            return None
        return None if found is None else {d.name: v for d, v in zip(cur.description, found)}

    def _refers_to_made(self, column: str, row: dict) -> bool:
        """Whether ``column`` is part of a foreign key whose referenced row this maker made."""
        for cols, ref_schema, ref_table, ref_cols in self.info.foreign_keys.values():
            if column in cols and all(row.get(c) not in (None, DEFAULT, PARENT) for c in cols):
                if self.maker.made(ref_schema, ref_table, {r: row[c] for c, r in zip(cols, ref_cols)}):
                    return True
        return False

    def _implicated(self, err: psycopg.Error, row: dict) -> list[str]:
        """The columns a rejection points at: the violated constraint's, the one named, the partition
        key when no partition takes the row, else those the message names (or whose value it quotes)."""
        diag = err.diag
        if isinstance(err, errors.NotNullViolation) and diag.column_name in self.info.columns:
            return [diag.column_name]
        ours = diag.table_name in (None, self.info.name) or diag.table_name in self.info.partitions
        if ours and diag.constraint_name in self.info.constraints:
            return list(self.info.constraints[diag.constraint_name][1])
        if ours and diag.constraint_name and diag.table_name in self.info.partitions:  # a partition's own CHECK
            return [c for (c,) in self.maker.conn.execute(
                "SELECT a.attname::text FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = con.conrelid "
                "AND a.attnum = ANY(con.conkey) WHERE con.conname = %s AND c.relname = %s AND n.nspname = %s",
                (diag.constraint_name, diag.table_name, diag.schema_name)) if c in self.pools]
        message = f"{diag.message_primary or ''} {diag.message_detail or ''}"
        if "no partition of relation" in message:
            return list(self.info.partition_key)
        if diag.datatype_name:
            named = [c.name for c in self.columns if diag.datatype_name in c.type_sql]
            if named:
                return named
        return [c for c, v in row.items() if c in self.pools and (
            re.search(rf'\b{re.escape(c)}\b', message) or (isinstance(v, str) and len(v) >= 3 and v in message))]

    def _advance(self, cols: list[str]) -> None:
        """Next candidates: an odometer over the columns concerned, the first one turning fastest."""
        movable = [c for c in cols if c in self.pools]
        if not movable:  # the rejection names nothing we choose: try the next value of every column
            for c in self.pools:
                self.choice[c] += 1
            return
        for c in movable:
            self.choice[c] += 1
            if self.choice[c] % len(self.pools[c]):
                break


class _NoRow(Exception):
    """The insert ran without error and wrote no row."""


def _as_text(row: dict) -> dict[str, str | None]:
    return {k: None if v is None else str(v) for k, v in row.items()}


def is_rejection(err: psycopg.Error) -> bool:
    """Whether the database refused this value or row (try another), as opposed to an environment
    that is broken (a lost connection, a missing privilege, a timeout: raise it)."""
    state = getattr(err, "sqlstate", None) or ""
    if not state or state.startswith(BROKEN_CLASSES):
        return False
    if state == "42501":  # permission denied is broken; a row-level security check refused this row
        return "row-level security" in (err.diag.message_primary or "")
    if state.startswith(REJECTION_CLASSES) or state in REJECTION_STATES:
        return True
    return "PL/pgSQL function" in (err.diag.context or "")  # a trigger's own error, whatever its code


def _first_line(err: BaseException) -> str:
    diag = getattr(err, "diag", None)
    text = (diag.message_primary if diag is not None else None) or str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _refusal(info: TableInfo, last, user: str) -> RowMakerError:
    """One line: the table, the column(s) and the constraint (or error) that refused the last candidate."""
    fix = f"add one row to {info.label} that this database accepts (the row maker copies an existing row first)"
    if last is None:
        return RowMakerError(f"cannot make a test row for {info.label}: no attempt was made", table=info.label)
    kind, err, cols = last
    if kind == "no row":
        return RowMakerError(
            f"cannot make a test row for {info.label}: the insert ran but wrote no row (a BEFORE INSERT trigger "
            "returned NULL, or a rule replaced it); check the table's triggers and rules, or run the test where "
            "they let rows in", table=info.label)
    diag = err.diag
    constraint = diag.constraint_name
    if err.sqlstate == "42501":
        policies = ", ".join(info.policies) or "none"
        return RowMakerError(
            f"cannot make a test row for {info.label}: row-level security refused it for role {user} "
            f"(policies: {policies}): {_first_line(err)}; run this phase as a role that bypasses row-level "
            "security (BYPASSRLS, like Supabase's postgres)", table=info.label, constraint=policies)
    kinds = {"23502": "not-null constraint", "23505": "unique constraint", "23514": "check constraint",
             "23503": "foreign key", "23P01": "exclusion constraint"}
    if err.sqlstate in kinds:
        refused = " ".join(filter(None, [kinds[err.sqlstate], constraint]))
    elif "PL/pgSQL function" in (diag.context or ""):
        refused = "trigger function " + re.search(r"PL/pgSQL function ([^\s(]+)", diag.context).group(1)
    else:
        refused = f"error {err.sqlstate}"
    where = f"column {', '.join(cols)}: " if cols else ""
    return RowMakerError(f"cannot make a test row for {info.label}: {where}{refused} refused the last "
                         f"candidate ({_first_line(err)}); {fix}",
                         table=info.label, column=cols[0] if cols else None, constraint=constraint or refused)
