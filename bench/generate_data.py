"""Benchmark: how fast the local data generator writes staging-like rows, and how fast the orphan
check counts them. Prints its figures; asserts nothing about time.

    .venv/bin/python bench/generate_data.py --rows 1000000
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import psycopg

from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.orphans import find_orphans
from fkrunbook.sample import generate_data, load_baseline
from fkrunbook.server import temporary_server
from fkrunbook.spec import load_spec

SPEC = Path(__file__).resolve().parents[1] / "runbooks" / "add_missing_org_fk_constraints.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with temporary_server() as server:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        with psycopg.connect(server.url("bench")) as conn:
            load_baseline(conn)
            started = time.perf_counter()
            sample = generate_data(conn, rows=args.rows)
            generated = time.perf_counter() - started
            total = sample.sessions + sample.grants + sample.events + sample.queue + sample.organizations
            size = conn.execute("SELECT pg_size_pretty(pg_database_size('bench'))").fetchone()[0]
        db = Database(Environment("bench", "url", url_env="UNUSED"), server.url("bench"))
        started = time.perf_counter()
        report = find_orphans(db, load_spec(SPEC))
        checked = time.perf_counter() - started
        assert report.fk_orphans == sample.orphans, "orphan check disagrees with the generator"
        print(f"rows={args.rows} total_rows_written={total} database_size={size}")
        print(f"generate_data: {generated:.2f} s ({total / generated:,.0f} rows/s)")
        print(f"find_orphans: {checked:.2f} s for {sum(report.fk_orphans.values())} orphans in 3 columns")


if __name__ == "__main__":
    main()
