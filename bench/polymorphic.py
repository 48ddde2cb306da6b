"""Benchmark: what reading the polymorphic references' data costs (fkrunbook.polymorphic): the
payload-key sample (bounded) against a scan of every row, the discriminator's GROUP BY, the
per-key payload orphan query, the whole orphan check and the audit. Events are the sample's,
plus an ``org_id`` key on a quarter of them. Prints its figures; asserts nothing about time.

    .venv/bin/python bench/polymorphic.py --events 100000
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import psycopg

from fkrunbook.audit import audit_schema
from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.orphans import find_orphans, payload_orphan_query
from fkrunbook.polymorphic import SAMPLE_ROWS, discriminator_values, scan_payload
from fkrunbook.sample import generate_data, load_baseline
from fkrunbook.server import temporary_server
from fkrunbook.spec import Payload, load_spec
from sqlalchemy import text

SPEC = Path(__file__).resolve().parents[1] / "runbooks" / "add_missing_org_fk_constraints.yaml"


def timed(call, repeat: int = 3):
    """The best of ``repeat`` runs (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    spec = load_spec(SPEC)
    events = spec.exceptions[0]
    both = replace(spec, exceptions=(replace(events, payload=Payload("event_data", ("organization_id", "org_id"))),)
                   + spec.exceptions[1:])
    with temporary_server() as server:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        with psycopg.connect(server.url("bench")) as conn:
            load_baseline(conn)
            generate_data(conn, rows=args.events)
            conn.execute("UPDATE domain_events SET event_data = event_data || jsonb_build_object('org_id', "
                          "event_data->'organization_id') WHERE sequence_number % 4 = 0")
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
            rows, size = conn.execute("SELECT count(*), pg_size_pretty(pg_total_relation_size('domain_events')) "
                                      "FROM domain_events").fetchone()
        db = Database(Environment("bench", "url", url_env="UNUSED"), server.url("bench"))
        figures = {"events": rows, "domain_events_size": size}
        with db.read_only() as conn:
            figures["payload_sample_s"], sample = timed(lambda: scan_payload(
                conn, spec, "public", "domain_events", "event_data", ("organization_id",)))
            figures["payload_every_row_s"], every = timed(lambda: scan_payload(
                conn, spec, "public", "domain_events", "event_data", ("organization_id",), sample_rows=rows + 1))
            figures["discriminator_group_by_s"], _ = timed(lambda: discriminator_values(
                conn, "public", "domain_events", "stream_type", "organization"))
            figures["payload_orphans_one_key_s"], _ = timed(lambda: conn.execute(text(payload_orphan_query(
                spec, events, "count(*)"))).scalar())
        figures["sample_rows"], figures["sample_method"] = sample.sampled, sample.method
        figures["sample_found"] = {k.key: round(k.share, 3) for k in sample.keys}
        figures["every_row_found"] = {k.key: round(k.share, 3) for k in every.keys}
        figures["find_orphans_one_key_s"], _ = timed(lambda: find_orphans(db, spec), 1)
        figures["find_orphans_two_keys_s"], report = timed(lambda: find_orphans(db, both), 1)
        figures["audit_s"], _ = timed(lambda: audit_schema(db, spec), 1)
        figures["warnings"] = len(report.warnings)
        print(f"events={rows} ({size}), payload sample: {sample.sampled} of {SAMPLE_ROWS} rows by {sample.method}")
        for key, value in figures.items():
            print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
