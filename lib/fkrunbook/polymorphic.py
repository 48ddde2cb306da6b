"""Polymorphic references seen through their data, not only through the spec.

A polymorphic reference (``stream_id`` beside ``stream_type``) is checked for orphans by the spec's
discriminator filter, and ids carried in a jsonb payload by the spec's keys. Both can be wrong
without anything failing: a team's triggers wrote every queue row with ``stream_type =
'workflow_queue'``, so a filter on ``'organization'`` found 0 of 10 orphaned rows; its events
carried the organization under ``org_id`` as well as ``organization_id``, and only the latter was
checked. So, read-only:

- :func:`discriminator_values`: the values the discriminator column really holds, with row counts
  (one ``GROUP BY`` over the table); a filter that matches no row of a table that has rows gets a
  warning naming the values found.
- :func:`scan_payload`: which keys of a jsonb column hold organization ids, top level and one level
  nested (``organization.id``): a bounded sample of rows (at most ``SAMPLE_ROWS``; on a table
  estimated at more than twice that, ``TABLESAMPLE SYSTEM`` picks whole pages at random for about
  twice that many rows, the same pages while the table is unchanged, and a repeatable shuffle
  keeps ``SAMPLE_ROWS`` of them from all over the table; elsewhere, the first rows read), each
  uuid-looking string value looked up in the organizations table. A key that names organizations but is not in the spec gets a warning, and so does a
  listed key under which no sampled row names one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import text

from .catalog import relation_kind
from .spec import Spec
from .sqltext import ident, qualified

VALUES_SHOWN = 10      # discriminator values listed; the rest are summed up
SAMPLE_ROWS = 5000     # payload rows read per jsonb column
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


@dataclass(frozen=True)
class DiscriminatorValues:
    """What one discriminator column holds: ``counts`` (value, rows), most rows first (the spec's
    filter value first when present), at most ``VALUES_SHOWN``; ``total`` rows in the table."""
    schema: str
    table: str
    column: str
    counts: tuple[tuple[str | None, int], ...]
    total: int
    filter: str | None = None   # the spec's value, when the reference is declared with one

    @property
    def matched(self) -> int:
        """Rows the spec's filter selects."""
        return next((n for value, n in self.counts if self.filter is not None and value == self.filter), 0)

    @property
    def others(self) -> int:
        """Rows whose values are not listed in ``counts``."""
        return self.total - sum(n for _, n in self.counts)

    def describe(self) -> str:
        """``workflow_queue 10, user 3`` (and how many more values), for one line of text."""
        shown = ", ".join(f"{'NULL' if v is None else v} {n}" for v, n in self.counts)
        return shown + (f" and {self.others} more row(s) in other values" if self.others else "")

    @property
    def warning(self) -> str | None:
        """Set when the spec's filter matches no row while the table has rows."""
        if self.filter is None or self.matched or not self.total:
            return None
        return (f"{self.column} = '{self.filter}' matches no row of {self.table} ({self.total} rows: "
                f"{self.describe()}); the spec's filter may be wrong")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([(self.table, self.column, v, n, self.filter is not None and v == self.filter)
                             for v, n in self.counts], columns=["table", "column", "value", "rows", "spec_filter"])

    def as_dict(self) -> dict:
        return {"column": self.column, "rows": self.total, "filter": self.filter, "matched": self.matched,
                "values": {("NULL" if v is None else v): n for v, n in self.counts}, "other_rows": self.others}


def discriminator_values(conn, schema: str, table: str, column: str, value: str | None = None) -> DiscriminatorValues:
    """Count the rows per value of ``schema.table.column`` (a full scan; the orphan check scans the
    table anyway). ``value``: the spec's filter, listed first when present."""
    rows = conn.execute(text(
        f"SELECT v, n, sum(n) OVER () AS total FROM (SELECT e.{ident(column)}::text AS v, count(*) AS n "
        f"FROM {qualified(schema, table)} e GROUP BY 1) g "
        "ORDER BY coalesce(v = CAST(:filter AS text), false) DESC, n DESC, v NULLS LAST LIMIT :shown"),
        {"filter": value, "shown": VALUES_SHOWN}).fetchall()
    return DiscriminatorValues(schema, table, column, tuple((v, int(n)) for v, n, _ in rows),
                               int(rows[0][2]) if rows else 0, value)


@dataclass(frozen=True)
class PayloadKey:
    """One key of a jsonb column, as the sample saw it."""
    key: str              # ``organization_id``, or ``organization.id`` one level down
    with_uuid: int        # sampled rows whose value under this key is a uuid
    organizations: int    # ... that names an organization that exists
    listed: bool          # the spec's payload lists it

    @property
    def share(self) -> float:
        return self.organizations / self.with_uuid if self.with_uuid else 0.0


@dataclass(frozen=True)
class PayloadScan:
    """The keys of one jsonb column that hold organization ids, from a bounded sample, and the
    keys the spec lists (found or not)."""
    schema: str
    table: str
    column: str
    sampled: int
    method: str                 # how the rows were picked, for the reader
    keys: tuple[PayloadKey, ...]

    def label(self, key: str) -> str:
        return f"{self.table}.{self.column}->" + "->".join(key.split("."))

    @property
    def found(self) -> list[str]:
        """Keys under which sampled rows name existing organizations."""
        return [k.key for k in self.keys if k.organizations]

    @property
    def warnings(self) -> list[str]:
        out = []
        for k in self.keys:
            if k.organizations and not k.listed:
                out.append(f"{self.label(k.key)} holds organization ids ({k.organizations} of {self.sampled} sampled "
                           f"rows name an existing organization) but the spec's payload does not list "
                           f"{k.key!r}: its orphans are not checked; add it to the payload's keys")
            elif k.listed and not k.organizations and self.sampled:
                out.append(f"{self.label(k.key)} is listed in the spec, but none of {self.sampled} sampled rows "
                           f"names an existing organization under {k.key!r}; check the key")
        return out

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([(self.table, self.column, k.key, self.sampled, k.with_uuid, k.organizations,
                              round(k.share, 3), k.listed) for k in self.keys],
                            columns=["table", "column", "key", "rows_sampled", "rows_with_uuid",
                                     "rows_naming_an_organization", "share", "in_spec"])

    def as_dict(self) -> dict:
        return {"column": self.column, "rows_sampled": self.sampled, "method": self.method,
                "keys": {k.key: {"rows_with_uuid": k.with_uuid, "rows_naming_an_organization": k.organizations,
                                 "in_spec": k.listed} for k in self.keys}}


def scan_payload(conn, spec: Spec, schema: str, table: str, column: str, listed: tuple[str, ...] = (),
                 sample_rows: int = SAMPLE_ROWS) -> PayloadScan:
    """Find the keys of ``schema.table.column`` (jsonb) whose values are uuids of existing
    organizations, in at most ``sample_rows`` rows; ``listed``: the spec's keys, always reported.
    Only for a uuid parent key (the only kind a payload check compares)."""
    parent = spec.parent
    parent_type = conn.execute(text(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = CAST(:t AS regclass) "
        "AND a.attname = :c"), {"t": qualified(parent.schema, parent.table), "c": parent.column}).scalar()
    if parent_type != "uuid":
        return PayloadScan(schema, table, column, 0, f"not sampled: {spec.parent_name}.{parent.column} is "
                           f"{parent_type}, and payload ids are compared as uuids", ())
    kind, estimate = conn.execute(text(
        "SELECT c.relkind, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relname = :table"), {"schema": schema, "table": table}).one()
    source = f"SELECT e.{ident(column)}::jsonb AS doc FROM {qualified(schema, table)} e"
    method = None
    if kind in ("r", "m") and estimate > 2 * sample_rows:
        # pages for about twice the rows wanted, then a pseudo-random (but repeatable) choice among
        # them: a plain LIMIT would keep the first pages and miss keys only newer rows carry
        percent = min(100.0, 100.0 * 2 * sample_rows / float(estimate))
        source += f" TABLESAMPLE SYSTEM ({percent:.6f}) REPEATABLE (0) ORDER BY md5(e.ctid::text)"
        method = (f"TABLESAMPLE SYSTEM: {percent:.3g}% of the pages of about {int(estimate)} rows, "
                  f"at most {sample_rows} rows")
    rows = conn.execute(text(
        f"WITH s AS MATERIALIZED ({source} LIMIT :n), "
        "top AS (SELECT k.key, k.value FROM s, jsonb_each(CASE WHEN jsonb_typeof(s.doc) = 'object' THEN s.doc END) k), "
        "kv AS (SELECT top.key AS path, top.value FROM top UNION ALL "
        "       SELECT top.key || '.' || n.key, n.value FROM top, "
        "       jsonb_each(CASE WHEN jsonb_typeof(top.value) = 'object' THEN top.value END) n), "
        "ids AS (SELECT path, CASE WHEN jsonb_typeof(value) = 'string' AND (value #>> '{}') ~ :pattern "
        "        THEN (value #>> '{}')::uuid END AS id FROM kv) "
        "SELECT NULL AS path, (SELECT count(*) FROM s) AS with_uuid, 0 AS organizations "
        "UNION ALL (SELECT ids.path, count(*), count(p.ref) FROM ids "
        f"  LEFT JOIN (SELECT {ident(parent.column)} AS ref FROM {qualified(parent.schema, parent.table)}) p "
        "  ON p.ref = ids.id WHERE ids.id IS NOT NULL GROUP BY ids.path)"),
        {"n": sample_rows, "pattern": UUID_PATTERN}).fetchall()
    sampled = int(rows[0][1])
    method = method or ("every row" if sampled < sample_rows else f"the first {sample_rows} rows read")
    seen = {path: (int(u), int(o)) for path, u, o in rows[1:]}
    keys = [PayloadKey(key, *seen.get(key, (0, 0)), listed=True) for key in listed]
    keys += [PayloadKey(path, u, o, listed=False) for path, (u, o) in sorted(seen.items(), key=lambda i: (-i[1][1], i[0]))
             if o and path not in listed]
    return PayloadScan(schema, table, column, sampled, method, tuple(keys))


@dataclass
class Profile:
    """What the data says about the spec's polymorphic references: per exception (by label) the
    discriminator's values and the payload's keys."""
    discriminators: dict[str, DiscriminatorValues] = field(default_factory=dict)
    payloads: dict[str, PayloadScan] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return [d.warning for d in self.discriminators.values() if d.warning] + \
            [w for scan in self.payloads.values() for w in scan.warnings]

    @property
    def values(self) -> pd.DataFrame:
        frames = [d.frame() for d in self.discriminators.values()]
        return pd.concat(frames, ignore_index=True) if frames else \
            pd.DataFrame(columns=["table", "column", "value", "rows", "spec_filter"])

    @property
    def keys(self) -> pd.DataFrame:
        frames = [s.frame() for s in self.payloads.values()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
            columns=["table", "column", "key", "rows_sampled", "rows_with_uuid", "rows_naming_an_organization",
                     "share", "in_spec"])

    def results(self) -> dict:
        return {"discriminator_values": {label: d.as_dict() for label, d in self.discriminators.items()},
                "payload_keys": {label: s.as_dict() for label, s in self.payloads.items()}}


def profile_exceptions(conn, spec: Spec, sample_rows: int = SAMPLE_ROWS) -> Profile:
    """The discriminator values and payload keys of every spec'd exception present in this database."""
    profile = Profile()
    for exc in spec.exceptions:
        if relation_kind(conn, spec.schema, exc.table) is None:
            continue
        if exc.discriminator:
            d = exc.discriminator
            profile.discriminators[exc.label] = discriminator_values(conn, spec.schema, exc.table, d.column, d.value)
        if exc.payload:
            profile.payloads[exc.label] = scan_payload(conn, spec, spec.schema, exc.table, exc.payload.column,
                                                       exc.payload.keys, sample_rows)
    return profile
