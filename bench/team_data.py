"""Benchmark: how fast sample data is written into a team's own schema (fkrunbook.teamdata), on the
event-store shape (tests/team_schemas/event_store: every event through its BEFORE INSERT router,
every role's user through auth.users and its sign-up trigger), against the row maker making every
row on its own (each attempt under a savepoint), which is how the first row of each table is made.
Prints its figures and checks that the orphan check finds what was planted; asserts nothing about time.

    .venv/bin/python bench/team_data.py --rows 200 2000 20000
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import psycopg

from fkrunbook.compat import apply_compat
from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.orphans import find_orphans
from fkrunbook.rehearsal import load_migrations
from fkrunbook.rowmaker import RowMaker
from fkrunbook.server import temporary_server
from fkrunbook.spec import load_spec
from fkrunbook.teamdata import USER_TABLES, seed_team_data

SHAPE = Path(__file__).resolve().parents[1] / "tests" / "team_schemas" / "event_store"
SPEC = load_spec(SHAPE / "spec.yaml")


def fresh(server, name: str) -> str:
    """A database holding the shape, loaded as `local reset --from-migrations` loads it."""
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(server.url(name), autocommit=True) as conn:
        load_migrations(conn, SHAPE / "supabase" / "migrations", apply_compat(conn))
    return server.url(name)


def row_maker_alone(url: str, rows: int) -> tuple[int, float]:
    """``rows`` child rows, each made by the row maker (one organization per 20, as the seed does);
    the rows written, the triggers' included, and the time it took."""
    with psycopg.connect(url, autocommit=True) as conn:
        maker = RowMaker(conn, commit=True)
        started = time.perf_counter()
        with conn.transaction():
            orgs = [maker.insert("public", SPEC.parent.table)["id"] for _ in range(max(3, rows // 20))]
            tables = [(fk.table, fk.column) for fk in SPEC.foreign_keys]
            for i in range(rows):
                table, column = tables[i % len(tables)]
                maker.insert("public", table, {column: orgs[i % len(orgs)]})
        seconds = time.perf_counter() - started
        written = sum(conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
                      for schema, table in conn.execute(USER_TABLES).fetchall())
        return written, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[200, 2000, 20000])
    parser.add_argument("--baseline", type=int, default=200, help="rows made by the row maker alone (0: skip)")
    args = parser.parse_args()
    with temporary_server() as server:
        print(f"PostgreSQL {server.version}, shape {SHAPE.name}, spec {SPEC.name}")
        if args.baseline:
            written, seconds = row_maker_alone(fresh(server, "baseline"), args.baseline)
            print(f"row maker alone: --rows {args.baseline}: {written} rows in {seconds:.2f} s "
                  f"({written / seconds:,.0f} rows/s)")
        for rows in args.rows:
            url = fresh(server, f"seed_{rows}")
            with psycopg.connect(url, autocommit=True) as conn:
                started = time.perf_counter()
                sample = seed_team_data(conn, SPEC, rows=rows)
                seconds = time.perf_counter() - started
            report = find_orphans(Database(Environment("bench", "url", url_env="UNUSED"), url), SPEC).results()
            counted = {kind: report[kind] for kind in ("orphans", "orphan_streams")}
            assert counted == sample.expected(), "orphan check disagrees with what was planted"
            per_table = ", ".join(f"{t} {n}" for t, n in sample.rows.items())
            print(f"seed_team_data: --rows {rows}: {sample.total} rows in {seconds:.2f} s "
                  f"({sample.total / seconds:,.0f} rows/s; {sample.made_by_row_maker} made by the row maker, "
                  f"the rest copied in batches): {per_table}")


if __name__ == "__main__":
    main()
