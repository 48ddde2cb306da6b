"""Sample data for a team's own schema, driven by the spec: organizations in the parent table,
rows in every spec table (and in whatever their other keys require), and orphans planted where the
runbook looks for them.

Every row goes in through a normal INSERT, so the team's own triggers fire and every constraint is
checked (triggers are never disabled, ``session_replication_role`` is never touched). The first row
of each table is made by :class:`fkrunbook.rowmaker.RowMaker`, which finds values the table
accepts; the rest are written in batches copied from that row (fresh values where a unique or
exclusion constraint needs them, a new referenced row where a unique key includes a foreign key),
one ``INSERT ... SELECT FROM unnest(...)`` per batch. A batch the database refuses is written again
one row at a time, and a row it still refuses is made by the row maker: the copy is a shortcut,
never a way around a constraint.

What is planted, per spec column: rows whose organization id names no organization (each foreign
key column); per intentional exception with a discriminator, rows of the organization stream type
whose stream id names no organization, and rows of another stream type (not orphans); per payload,
references (``payload.column ->> key``, under each of the payload's keys) to an organization that does not exist. The counts
come from the rows as the database returned them (after the BEFORE triggers), checked against the
parent table at the end, and have the shape :func:`fkrunbook.orphans.find_orphans` reports.
Rows already there (a dump may carry some) are left alone, and their orphans counted first.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field

import psycopg
from psycopg import errors, sql

from .candidate import fresh_like
from .errors import RowMakerError, SampleDataError
from .rowmaker import DEFAULT, RowMaker, TableInfo, is_rejection
from .spec import IntentionalException, Spec
from .sqltext import literal

BATCH = 500
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")  # as the check's
TEAM_ROWS = 200  # the default: enough for a rehearsal to look at, written in about a second
MIN_ORGANIZATIONS = 3
ROWS_PER_ORGANIZATION = 20
USER_TABLES = """
SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'supabase_migrations')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class TeamSample:
    """What :func:`seed_team_data` wrote and planted. ``orphans`` and ``orphan_streams`` have the keys
    of :meth:`fkrunbook.orphans.OrphanReport.results`; ``before`` holds the same counts for the
    rows that were already there; ``read_back`` the labels counted after seeding instead of from
    the rows written (views, which show rows of their tables, and tables absent here)."""
    organizations: int = 0                                  # organizations made
    rows: dict[str, int] = field(default_factory=dict)      # "schema.table" -> rows added (triggers' included)
    orphans: dict[str, int] = field(default_factory=dict)   # "table.column" -> orphan rows planted
    orphan_streams: dict[str, int] = field(default_factory=dict)  # stream / payload label -> planted
    before: dict = field(default_factory=dict)              # {"orphans": ..., "orphan_streams": ...} found first
    read_back: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()                             # one line each: views and columns skipped
    seconds: float = 0.0
    made_by_row_maker: int = 0                              # rows not copied: each table's first, and refused copies
    by_triggers: dict[str, int] = field(default_factory=dict)  # label -> orphans in rows the team's triggers wrote

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def expected(self) -> dict:
        """What the orphan check reports after seeding: the rows there before, those planted and
        those the schema's triggers wrote (``OrphanReport.results()`` without ``clean``)."""
        def total(kind: str, label: str, planted: int) -> int:
            if label in self.read_back:
                return planted
            return planted + (self.before or {}).get(kind, {}).get(label, 0) + self.by_triggers.get(label, 0)

        return {kind: {k: total(kind, k, v) for k, v in getattr(self, kind).items()}
                for kind in ("orphans", "orphan_streams")}

    @property
    def lines(self) -> list[str]:
        """One line for what was made and planted, then one per note."""
        if not self.rows:
            return ["no sample data (--rows 0): the schema only, as a new environment is", *self.notes]
        tables = len(self.rows)
        planted = ", ".join(f"{v} in {k}" for k, v in {**self.orphans, **self.orphan_streams}.items()
                            if v and k not in self.read_back)
        by_triggers = ", ".join(f"{v} in {k}" for k, v in self.by_triggers.items())
        return [f"sample data: {self.total} rows in {tables} table{'' if tables == 1 else 's'} "
                f"({self.organizations} organizations), written through the schema's own triggers in "
                f"{self.seconds:.1f} s; orphans planted: {planted or 'none'}"
                + (f"; more written by the schema's triggers: {by_triggers}" if by_triggers else ""), *self.notes]


def check_team_rows(rows: int, planted: int = 3) -> None:
    """Refuse a negative size before anything starts."""
    if rows < 0:
        raise SampleDataError(f"--rows {rows} is negative; give 0 for the schema only (as a new environment is) "
                              "or the number of sample rows to write")
    if planted < 0:
        raise SampleDataError(f"planted {planted} is negative; give 0 or more orphans per column")


def seed_team_data(conn: psycopg.Connection, spec: Spec, rows: int = 200, planted: int = 3) -> TeamSample:
    """Fill the spec's tables of the connected database: about ``rows`` child rows over the spec's
    child and exception tables, one organization per 20 of them (at least 3), and ``planted``
    orphans per spec column (see the module's text). All in one transaction (a savepoint when
    the caller has one open): committed when every table was filled, else nothing is kept.
    Raise :class:`RowMakerError` naming the table, column and constraint when a table cannot be filled."""
    check_team_rows(rows, planted)
    if rows == 0:
        return TeamSample()
    started = time.monotonic()
    with conn.transaction():
        seeder = _Seeder(conn, spec)
        sample = seeder.seed(rows, planted)
    return TeamSample(**{**sample.__dict__, "seconds": time.monotonic() - started})


@dataclass
class _Merge:
    """A jsonb column's value: the copied row's object with each key path (the spec's payload keys,
    ``("tenant", "id")`` for ``tenant.id``) set to ``value``."""
    paths: tuple[tuple[str, ...], ...]
    value: str

    def over(self, base: str | None) -> str:
        try:
            found = json.loads(base) if isinstance(base, str) else None
        except ValueError:
            found = None
        merged = found if isinstance(found, dict) else {}
        for path in self.paths:
            level = merged
            for part in path[:-1]:
                if not isinstance(level.get(part), dict):
                    level[part] = {}
                level = level[part]
            level[path[-1]] = self.value
        return json.dumps(merged)


class _Writer:
    """Rows of one table: the first made by the row maker, the rest copied from it in batches."""

    def __init__(self, seeder: "_Seeder", info: TableInfo, depth: int = 0):
        self.seeder, self.info, self.depth = seeder, info, depth
        self.recipe: dict | None = None   # column -> text, None or DEFAULT: what the first row was written with
        self.fresh: list[str] = []        # columns given a fresh value in every copy
        self.start: dict[str, str] = {}   # a number column's value the copies count on from
        self.own_parents: list[str] = []  # foreign keys given a new referenced row in every copy
        self.pinned: list[str] = []       # foreign keys partly fixed: a referenced row of the fixed values
        self.pinned_rows: dict[tuple, dict] = {}
        self.copies = 0
        self.made = 0                     # rows made by the row maker: the first, and any the copy could not write

    @property
    def conn(self) -> psycopg.Connection:
        return self.seeder.conn

    def write(self, rows: list[dict]) -> list[dict]:
        """One row per dict of fixed values (a :class:`_Merge` for a jsonb payload); the rows inserted,
        each as column -> text."""
        written = []
        if rows and self.recipe is None:
            written.append(self._make(rows[0]))
            self._learn(rows[0])
            rows = rows[1:]
        for start in range(0, len(rows), BATCH):
            written += self._batch(rows[start:start + BATCH])
        return written

    # -- the first row, and any the copy cannot write -----------------------------------------------
    def _make(self, fixed: dict, avoid: dict | None = None) -> dict:
        maker = self.seeder.maker
        self.made += 1
        plain = {k: v for k, v in fixed.items() if not isinstance(v, _Merge)}
        merged = {k: v.over((self.recipe or {}).get(k)) for k, v in fixed.items() if isinstance(v, _Merge)}
        try:
            made = maker.insert(self.info.schema, self.info.name, {**plain, **merged}, self.depth, avoid)
        except RowMakerError:
            if not merged:
                raise
            made = maker.insert(self.info.schema, self.info.name, plain, self.depth, avoid)  # the payload left free
        return {k: _text(v) for k, v in made.items()}

    def _learn(self, fixed: dict) -> None:
        """From the first row: which columns need a fresh value, which foreign keys a new referenced
        row, and which a referenced row of the row's own fixed values (a tenant-scoped key), in a copy."""
        self.recipe = dict(self.seeder.maker.last_sent)
        fk_of = {c: name for name, (cols, *_r) in self.info.foreign_keys.items()
                 if not all(c in fixed for c in cols) for c in cols}
        self.pinned = [name for name, (cols, *_r) in self.info.foreign_keys.items()
                       if any(c in fixed for c in cols) and not all(c in fixed for c in cols)]
        for cols in self.info.groups(("unique", "exclusion")):
            if any(self.recipe.get(c, DEFAULT) in (DEFAULT, None) for c in cols if c not in fixed):
                continue  # a default (a sequence, a new uuid, an identity) or a NULL: not repeated
            if any(c in self.fresh for c in cols):
                continue
            free = [c for c in cols if c not in fixed and c not in fk_of
                    and fresh_like(self.recipe[c], self.info.columns[c].type, 1) is not None]
            if free:  # one fresh column makes the group new: the one least likely to meet a CHECK
                column = min(free, key=lambda c: _fresh_rank(self.info.columns[c]))
                self.fresh.append(column)
                if self.info.columns[column].type.root().category == "N":  # counted on from the largest there
                    self.start[column] = self.conn.execute(sql.SQL("SELECT CAST(greatest(max({}), %s) AS text) FROM {}")
                                                           .format(sql.Identifier(column), sql.Identifier(
                                                               self.info.schema, self.info.name)),
                                                           (self.recipe[column],)).fetchone()[0]
            else:
                self.own_parents += [fk_of[c] for c in cols if c in fk_of and fk_of[c] not in self.own_parents
                                     and fk_of[c] not in self.pinned]

    # -- copies ------------------------------------------------------------------------------------------
    def _copy(self, fixed: dict, parents: dict) -> dict | None:
        """The values of one copy (column -> text or None), or None when a fresh value cannot be made."""
        self.copies += 1
        row = {c: v for c, v in self.recipe.items() if v is not DEFAULT}
        for c in self.fresh:
            if c in fixed:
                continue
            value = fresh_like(self.start.get(c, row[c]), self.info.columns[c].type, self.copies)
            if value is None:
                return None
            row[c] = value
        row.update(parents)
        for k, v in fixed.items():
            row[k] = v.over(row.get(k)) if isinstance(v, _Merge) else v
        return row

    def _batch(self, rows: list[dict]) -> list[dict]:
        parents = self._parents(rows)
        copies = [self._copy(fixed, p) for fixed, p in zip(rows, parents)]
        ready = [c for c in copies if c is not None]
        written = []
        if len(ready) == len(copies):
            try:
                with self.conn.transaction():
                    return self._insert(ready)
            except psycopg.Error as err:
                if not is_rejection(err):
                    raise
        for fixed, p, copy in zip(rows, parents, copies):  # one at a time: only the refused rows are made afresh
            for _ in range(2):  # a value taken since (a sequence caught up): once more with fresh ones
                if copy is None:
                    break
                try:
                    with self.conn.transaction():
                        written += self._insert([copy])
                    break
                except (errors.UniqueViolation, errors.ExclusionViolation):
                    copy = self._copy(fixed, p)
                except psycopg.Error as err:
                    if not is_rejection(err):
                        raise
                    copy = None
            else:
                copy = None
            if copy is None:
                written.append(self._make({**fixed, **p}))
        return written

    def _parents(self, rows: list[dict]) -> list[dict]:
        """Per row, the columns of each foreign key that needs a new referenced row (made here), or
        a referenced row agreeing with the row's fixed values (found, else made, once per value)."""
        found = [{} for _ in rows]
        for name in self.pinned:
            for i, fixed in enumerate(rows):
                found[i].update(self._pinned_parent(name, fixed))
        for name in self.own_parents:
            cols, ref_schema, ref_table, ref_cols = self.info.foreign_keys[name]
            pinned = [{r: fixed[c] for c, r in zip(cols, ref_cols) if c in fixed} for fixed in rows]
            made = self.seeder.writer(ref_schema, ref_table, self.depth + 1).write(pinned)
            for i, parent in enumerate(made[:len(rows)]):
                found[i].update({c: parent[r] for c, r in zip(cols, ref_cols) if c not in rows[i]})
        return found

    def _pinned_parent(self, name: str, fixed: dict) -> dict:
        cols, ref_schema, ref_table, ref_cols = self.info.foreign_keys[name]
        pinned = {r: fixed[c] for c, r in zip(cols, ref_cols) if c in fixed}
        key = (name, *sorted(pinned.items()))
        if key not in self.pinned_rows:
            ref = self.seeder.maker.table(ref_schema, ref_table)
            where = sql.SQL(" AND ").join(sql.SQL("{} = CAST(%s AS {})").format(
                sql.Identifier(r), sql.SQL(ref.columns[r].type_sql)) for r in pinned)
            row = self.conn.execute(sql.SQL("SELECT {} FROM {} WHERE {} LIMIT 1").format(
                sql.SQL(", ").join(sql.SQL("CAST({} AS text)").format(sql.Identifier(r)) for r in ref_cols),
                sql.Identifier(ref_schema, ref_table), where), list(pinned.values())).fetchone()
            if row is None:
                made = self.seeder.writer(ref_schema, ref_table, self.depth + 1).write([pinned])[0]
                row = [made[r] for r in ref_cols]
            self.pinned_rows[key] = {c: v for c, v, r in zip(cols, row, ref_cols) if c not in fixed}
        return self.pinned_rows[key]

    def _insert(self, rows: list[dict]) -> list[dict]:
        """One INSERT ... SELECT FROM unnest(...) of rows that name the same columns; the rows as text."""
        info = self.info
        shapes: dict[tuple, list[dict]] = {}
        for r in rows:
            shapes.setdefault(tuple(c for c in info.columns if c in r), []).append(r)
        if len(shapes) > 1:
            return [made for same in shapes.values() for made in self._insert(same)]
        cols = list(next(iter(shapes), ()))
        target = sql.Identifier(info.schema, info.name)
        returning = sql.SQL(", ").join(sql.SQL("CAST({} AS text)").format(sql.Identifier(c)) for c in info.columns)
        if cols:
            query = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM unnest({}) AS v({}) RETURNING {}").format(
                target, sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(", ").join(sql.SQL("CAST(v.{} AS {})").format(sql.Identifier(f"c{i}"),
                                                                      sql.SQL(info.columns[c].type_sql))
                                   for i, c in enumerate(cols)),
                sql.SQL(", ").join(sql.SQL("CAST({} AS text[])").format(sql.Placeholder()) for _ in cols),
                sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(len(cols))), returning)
            params = [[r[c] for r in rows] for c in cols]
        else:
            query = sql.SQL("INSERT INTO {} SELECT FROM generate_series(1, %s) RETURNING {}").format(target, returning)
            params = [len(rows)]
        inserted = [dict(zip(info.columns, values)) for values in self.conn.execute(query, params).fetchall()]
        self.seeder.maker.remember(info.schema, info.name, inserted)  # so a row its triggers wrote can be taken
        return inserted


class _Seeder:
    def __init__(self, conn: psycopg.Connection, spec: Spec):
        self.conn, self.spec = conn, spec
        self.maker = RowMaker(conn, commit=True)
        self.writers: dict[tuple[str, str], _Writer] = {}
        self.notes: list[str] = []

    def writer(self, schema: str, table: str, depth: int = 0) -> _Writer:
        key = (schema, table)
        if key not in self.writers:
            self.writers[key] = _Writer(self, self.maker.table(schema, table), depth)
        return self.writers[key]

    # -- the plan -----------------------------------------------------------------------------------------
    def tables(self) -> dict[str, tuple[list[str], list[IntentionalException]]]:
        """The tables to fill: each with its spec foreign-key columns and its intentional exceptions.
        Views and absent tables among the exceptions are skipped, each with a note."""
        spec, found = self.spec, {}
        parent = self.maker.table(spec.parent.schema, spec.parent.table)
        if spec.parent.column not in parent.columns:
            raise RowMakerError(f"{parent.label} has no column {spec.parent.column}; check the spec's parent column",
                                table=parent.label, column=spec.parent.column)
        for fk in spec.foreign_keys:
            self._check_column(fk.table, fk.column)
            found.setdefault(fk.table, ([], []))[0].append(fk.column)
        for exc in spec.exceptions:
            kind = self._relkind(exc.table)
            if kind in ("v", "m"):
                self.notes.append(f"skipped {spec.schema}.{exc.table}: a view, it shows the rows of its tables "
                                  "(nothing written to it)")
                continue
            if kind is None:
                self.notes.append(f"skipped {spec.schema}.{exc.table}: not in this schema (intentional exception)")
                continue
            for column in [exc.column] + [c.column for c in (exc.discriminator, exc.payload) if c is not None]:
                self._check_column(exc.table, column)
            found.setdefault(exc.table, ([], []))[1].append(exc)
        return found

    def _check_column(self, table: str, column: str) -> None:
        info = self.maker.table(self.spec.schema, table)
        if column not in info.columns:
            raise RowMakerError(f"{info.label} has no column {column}; check the spec's column names",
                                table=info.label, column=column)

    def _relkind(self, table: str) -> str | None:
        found = self.conn.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                  "WHERE n.nspname = %s AND c.relname = %s", (self.spec.schema, table)).fetchone()
        return found[0] if found else None

    def _keyed(self, table: str, column: str) -> bool:
        """Whether the column already has a foreign key to the parent (no orphan can be planted there)."""
        parent = self.spec.parent
        return any(cols == [column] and (ref_schema, ref_table, ref_cols) == (parent.schema, parent.table,
                                                                               [parent.column])
                   for cols, ref_schema, ref_table, ref_cols in self.maker.table(self.spec.schema,
                                                                                 table).foreign_keys.values())

    # -- seeding --------------------------------------------------------------------------------------------
    def seed(self, rows: int, planted: int) -> TeamSample:
        spec = self.spec
        tables = self.tables()
        counted = self._table_counts()
        before = self._orphan_counts()
        organizations = max(MIN_ORGANIZATIONS, rows // ROWS_PER_ORGANIZATION)
        existing = self._existing_ids(100)
        made = self.writer(spec.parent.schema, spec.parent.table).write([{} for _ in range(organizations)])
        pool = [r[spec.parent.column] for r in made] + existing
        per_table = max(1, rows // max(1, len(tables)))
        written: dict[str, list[dict]] = {}
        for table, (fk_columns, exceptions) in tables.items():
            written[table] = self._fill(table, fk_columns, exceptions, pool, per_table, planted)
        ids = self._existing_ids(None)
        known = ids | {None}  # an organization, or no reference at all: not an orphan
        orphans, streams, read_back = {}, {}, []
        for fk in spec.foreign_keys:
            orphans[fk.label] = sum(1 for r in written[fk.table] if r[fk.column] not in known)
        counts = self._orphan_counts()
        after = counts["orphan_streams"]
        for exc in spec.exceptions:
            if exc.discriminator is None:
                continue
            if exc.table not in written:  # a view (or absent): what shows through it, read back
                streams[exc.label] = after[exc.label]
                read_back.append(exc.label)
                continue
            d = exc.discriminator
            streams[exc.label] = sum(1 for r in written[exc.table]
                                     if r[d.column] == d.value and r[exc.column] not in known)
        for exc in spec.exceptions:
            for key in (exc.payload.keys if exc.payload is not None else ()):
                label = exc.payload.label(exc.table, key)
                if exc.table not in written:
                    if label in after:
                        streams[label] = after[label]
                        read_back.append(label)
                    continue
                streams[label] = sum(1 for r in written[exc.table]
                                     if _payload_orphan(r.get(exc.payload.column), exc.payload.path(key), ids))
        # orphans in rows nobody here wrote: the team's triggers copied a planted organization id on
        by_triggers = {k: n for kind, planted in (("orphans", orphans), ("orphan_streams", streams))
                       for k, v in planted.items() if k not in read_back
                       and (n := counts[kind][k] - before[kind].get(k, 0) - v)}
        return TeamSample(organizations=len(made), rows=self._added(counted), orphans=orphans, orphan_streams=streams,
                          before=before, read_back=tuple(read_back), notes=tuple(self.notes),
                          made_by_row_maker=sum(w.made for w in self.writers.values()), by_triggers=by_triggers)

    def _fill(self, table: str, fk_columns: list[str], exceptions: list[IntentionalException], pool: list[str],
              per_table: int, planted: int) -> list[dict]:
        """The rows of one table: ``per_table`` naming organizations of the pool (half of each
        exception's streams of another type), then the planted orphans."""
        schema = self.spec.schema
        writer = self.writer(schema, table)
        info = writer.info
        spec_columns = set(fk_columns) | {e.column for e in exceptions}
        if any(set(cols) <= spec_columns for cols in info.groups(("unique",))):
            per_table = min(per_table, len(pool))  # one row per organization at most
        plantable = [c for c in fk_columns if not self._keyed(table, c)]
        for c in sorted(set(fk_columns) - set(plantable)):
            self.notes.append(f"no orphans planted in {table}.{c}: it already has a foreign key to "
                              f"{self.spec.parent_name}")
        other: dict[str, str] = {}

        def row(org: str, kind: str = "organization", stream: str | None = None, payload: str | None = None) -> dict:
            fixed = {c: org for c in fk_columns}
            for exc in exceptions:
                d = exc.discriminator
                fixed[exc.column] = stream or (org if kind == "organization" or d is None else self._missing_id())
                if d is not None:
                    fixed[d.column] = d.value if kind == "organization" else other[exc.label]
                if exc.payload is not None:
                    fixed[exc.payload.column] = _Merge(tuple(exc.payload.path(k) for k in exc.payload.keys),
                                                       payload or org)
            return fixed

        first = [row(pool[0])]
        written = writer.write(first)
        for exc in exceptions:  # another stream type: the value the table takes that is not the organization's
            d = exc.discriminator
            if d is not None:
                fixed = {k: v for k, v in row(pool[0]).items() if k != d.column}
                fixed[exc.column] = self._missing_id()
                found = writer._make(fixed, avoid={d.column: {d.value}})
                other[exc.label] = found[d.column]
                written.append(found)
        rows = [row(pool[i % len(pool)], "organization" if i % 2 == 0 or not exceptions else "other")
                for i in range(1, per_table)]
        for c in plantable:
            for _ in range(planted):
                rows.append({**row(pool[0]), c: self._missing_id()})
        for exc in exceptions:
            if exc.discriminator is not None:
                for _ in range(planted):
                    missing = self._missing_id()
                    rows.append(row(pool[0], "organization", stream=missing, payload=missing))
            if exc.payload is not None:
                for _ in range(planted):
                    rows.append(row(pool[0], "other" if exc.discriminator else "organization",
                                    payload=self._missing_id()))
        return written + writer.write(rows)

    # -- ids and counts -------------------------------------------------------------------------------------
    def _existing_ids(self, limit: int | None) -> set | list:
        parent = self.spec.parent
        query = sql.SQL("SELECT CAST({} AS text) FROM {}{}").format(
            sql.Identifier(parent.column), sql.Identifier(parent.schema, parent.table),
            sql.SQL(f" LIMIT {int(limit)}") if limit else sql.SQL(""))
        ids = [r[0] for r in self.conn.execute(query)]
        return ids if limit else set(ids)

    def _missing_id(self) -> str:
        """An organization id of the parent column's type that names no organization."""
        info = self.maker.table(self.spec.parent.schema, self.spec.parent.table)
        t = info.columns[self.spec.parent.column].type.root()
        if t.name == "uuid":
            return str(uuid.uuid4())
        if t.category == "N":
            return str(2**31 - 1 - uuid.uuid4().int % 10**6)
        return f"fkrunbook_missing_{uuid.uuid4().hex[:12]}"

    def _orphan_counts(self) -> dict:
        """The orphan check's counts (``OrphanReport.results()`` without ``clean``), on this connection."""
        from .orphans import orphan_query, payload_orphan_query, stream_orphan_query  # pandas: only when seeding

        spec = self.spec
        counts = {"orphans": {}, "orphan_streams": {}}
        for fk in spec.foreign_keys:
            counts["orphans"][fk.label] = self.conn.execute(orphan_query(spec, fk, "count(*)")).fetchone()[0]
        for exc in spec.exceptions:  # an absent table's streams are 0, as the check reports them
            if exc.discriminator is not None:
                query = stream_orphan_query(spec, exc, "count(*)").replace(":stream_type",
                                                                           literal(exc.discriminator.value))
                counts["orphan_streams"][exc.label] = self.conn.execute(query).fetchone()[0] \
                    if self._relkind(exc.table) else 0
        for exc in spec.exceptions:
            if exc.payload is not None and self._relkind(exc.table):
                for key in exc.payload.keys:
                    counts["orphan_streams"][exc.payload.label(exc.table, key)] = self.conn.execute(
                        payload_orphan_query(spec, exc, "count(*)", key)).fetchone()[0]
        return counts

    def _table_counts(self) -> dict[str, int]:
        return {f"{s}.{t}": self._count(s, t) for s, t in self.conn.execute(USER_TABLES).fetchall()}

    def _count(self, schema: str, table: str) -> int:
        return self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))).fetchone()[0]

    def _added(self, before: dict[str, int]) -> dict[str, int]:
        after = self._table_counts()
        return {t: n - before.get(t, 0) for t, n in after.items() if n != before.get(t, 0)}


def _fresh_rank(col) -> tuple:
    """Which column of a unique or exclusion group to make fresh in a copy: one without a CHECK
    first, then a uuid, a range (moved along), a text, and a number last (often bounded)."""
    t = col.type.root()
    kind = 0 if t.name == "uuid" else 1 if t.subtype is not None else 3 if t.category == "N" else 2
    return bool(col.check_defs), kind


def _payload_orphan(payload: str | None, path: tuple[str, ...], ids: set) -> bool:
    """As the orphan check sees it: the key's value is a well-formed uuid naming no organization."""
    try:
        value = json.loads(payload) if payload else None
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
    except ValueError:
        return False
    if not isinstance(value, str) or not UUID.fullmatch(value):
        return False
    return str(uuid.UUID(value)) not in ids


def _text(value) -> str | None:
    """A value the driver returned, as PostgreSQL's text of it for the columns compared here."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
