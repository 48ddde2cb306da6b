"""Benchmark: how close the preview's predicted step times (fkrunbook.estimate) come to the real
ones. Calibrates on a scratch table as `fkrunbook calibrate` does, then, per size, builds a child
table of another shape (a jsonb payload making its rows about twice as wide), predicts its
``CREATE INDEX CONCURRENTLY`` and ``VALIDATE CONSTRAINT`` from its catalog statistics, runs both
and prints predicted against measured. Prints its figures; asserts nothing about time.

    .venv/bin/python bench/long_steps.py --rows 1000000 --rows 3000000
"""
from __future__ import annotations

import argparse
import json
import time

import psycopg

from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.estimate import DEFAULT, calibrate
from fkrunbook.server import temporary_server


def build(conn, rows: int) -> tuple[float, int, int]:
    """A parent of 1,000 rows and a child of ``rows`` rows; (reltuples, heap bytes, total bytes)."""
    conn.execute("DROP SCHEMA IF EXISTS bench_steps CASCADE")
    conn.execute("CREATE SCHEMA bench_steps")
    conn.execute("CREATE TABLE bench_steps.org (id uuid PRIMARY KEY)")
    conn.execute("INSERT INTO bench_steps.org SELECT gen_random_uuid() FROM generate_series(1, 1000)")
    conn.execute("CREATE TABLE bench_steps.event (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, org_id uuid, "
                 "kind text NOT NULL, payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("INSERT INTO bench_steps.event (org_id, kind, payload) SELECT o.ids[1 + i %% 1000], "
                 "'organization.updated', jsonb_build_object('n', i, 'note', md5(i::text), 'by', md5((i + 1)::text)) "
                 "FROM generate_series(1, %s) i, (SELECT array_agg(id) AS ids FROM bench_steps.org) o", (rows,))
    conn.execute("VACUUM ANALYZE bench_steps.event")
    return conn.execute("SELECT reltuples, pg_relation_size(oid), pg_total_relation_size(oid) FROM pg_class "
                        "WHERE oid = 'bench_steps.event'::regclass").fetchone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, action="append", help="child rows (repeatable; default 1000000)")
    parser.add_argument("--calibrate-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    sizes = args.rows or [1_000_000]
    figures: dict = {"sizes": []}
    with temporary_server() as server:
        db = Database(Environment("bench", "url", url_env="UNUSED"), server.url("postgres"))
        started = time.perf_counter()
        measured = calibrate(db, args.calibrate_rows)
        figures["calibrate_s"] = round(time.perf_counter() - started, 2)
        figures["calibration"] = {k: getattr(measured, k) for k in (
            "index_s_per_mrow", "index_s_per_gb", "validate_s_per_mrow", "validate_s_per_gb", "rows")}
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute("SET max_parallel_maintenance_workers = 0")
            for rows in sizes:
                reltuples, heap, total = build(conn, rows)
                started = time.perf_counter()
                conn.execute("CREATE INDEX CONCURRENTLY event_org_id ON bench_steps.event (org_id)")
                index_s = time.perf_counter() - started
                conn.execute("ALTER TABLE bench_steps.event ADD CONSTRAINT event_org_fk FOREIGN KEY (org_id) "
                             "REFERENCES bench_steps.org (id) NOT VALID")
                started = time.perf_counter()
                conn.execute("ALTER TABLE bench_steps.event VALIDATE CONSTRAINT event_org_fk")
                validate_s = time.perf_counter() - started
                size = {"rows": rows, "heap_mb": round(heap / 2 ** 20, 1), "total_mb": round(total / 2 ** 20, 1),
                        "index_s": round(index_s, 2),
                        "index_predicted_s": round(measured.seconds("index", reltuples, heap), 2),
                        "index_default_s": round(DEFAULT.seconds("index", reltuples, heap), 2),
                        "validate_s": round(validate_s, 2),
                        "validate_predicted_s": round(measured.seconds("validate", reltuples, heap), 2),
                        "validate_default_s": round(DEFAULT.seconds("validate", reltuples, heap), 2)}
                figures["sizes"].append(size)
                print(f"{rows:>10,} rows ({size['heap_mb']} MB heap): index {size['index_s']} s, predicted "
                      f"{size['index_predicted_s']} s (built-in {size['index_default_s']} s); VALIDATE "
                      f"{size['validate_s']} s, predicted {size['validate_predicted_s']} s (built-in "
                      f"{size['validate_default_s']} s)")
            conn.execute("DROP SCHEMA bench_steps CASCADE")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
