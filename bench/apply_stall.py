"""Benchmark: how long writers stall while the foreign keys are added, the seed plan's way and the runbook's.

Builds N child rows in each child table on a fresh embedded server, then, on two fresh copies of
that database, runs writers on the child and parent tables (small autocommit transactions, each
latency recorded) while applying (a) the seed plan's naive ALTER TABLE ... ADD FOREIGN KEY per
column and (b) the runbook's apply. Prints a table and, as its last line, one JSON object.
Asserts nothing about time: the figures are for reading.

    .venv/bin/python bench/apply_stall.py --rows 1000000
"""
from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path

import psycopg

from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import find_orphans, orphan_query
from fkrunbook.sample import load_baseline
from fkrunbook.server import temporary_server
from fkrunbook.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "runbooks" / "add_missing_org_fk_constraints.yaml")
MIGRATIONS = ROOT / "supabase" / "migrations"
ORGS = 10_000


def build(url: str, rows: int) -> None:
    """ORGS organizations, `rows` impersonation sessions and `rows` grants, no orphan."""
    with psycopg.connect(url, autocommit=True) as conn:
        load_baseline(conn)
        conn.execute("INSERT INTO organizations_projection (id, name, slug, type) "
                     "SELECT md5('org-' || i)::uuid, 'Org ' || i, 'org-' || i, 'provider' "
                     "FROM generate_series(0, %s - 1) i", (ORGS,))
        for start in range(0, rows, 500_000):
            stop = min(rows, start + 500_000)
            conn.execute(
                "INSERT INTO impersonation_sessions_projection (session_id, super_admin_user_id, target_user_id, "
                "target_org_id, status, expires_at) SELECT 's-' || i, md5('a' || (i %% 7))::uuid, "
                "md5('u' || i)::uuid, md5('org-' || (i %% %s))::uuid, 'ended', now() "
                "FROM generate_series(%s, %s - 1) i", (ORGS, start, stop))
            conn.execute(
                "INSERT INTO cross_tenant_access_grants_projection (consultant_org_id, provider_org_id, scope, "
                "authorization_type) SELECT md5('org-' || (i %% %s))::uuid, md5('org-' || ((i * 7 + 3) %% %s))::uuid, "
                "'organization_unit', 'bench' FROM generate_series(%s, %s - 1) i", (ORGS, ORGS, start, stop))
        conn.execute("VACUUM ANALYZE")


class Writers:
    """Threads writing to both child tables and the parent, one small autocommit transaction at a time."""

    def __init__(self, url: str):
        self.url, self.samples, self.stop = url, [], threading.Event()
        statements = [
            "INSERT INTO impersonation_sessions_projection (session_id, super_admin_user_id, target_user_id, "
            "target_org_id, expires_at) VALUES (gen_random_uuid()::text, gen_random_uuid(), gen_random_uuid(), "
            "md5('org-' || floor(random() * 10000)::int)::uuid, now())",
            "INSERT INTO cross_tenant_access_grants_projection (consultant_org_id, provider_org_id, scope, "
            "authorization_type) VALUES (md5('org-' || floor(random() * 10000)::int)::uuid, "
            "md5('org-' || floor(random() * 10000)::int)::uuid, 'client_specific', 'bench')",
            "UPDATE organizations_projection SET updated_at = now() "
            "WHERE id = md5('org-' || floor(random() * 10000)::int)::uuid",
            "INSERT INTO organizations_projection (id, name, slug, type) VALUES "
            "(gen_random_uuid(), 'w', gen_random_uuid()::text, 'provider')",
        ]
        self.threads = [threading.Thread(target=self._loop, args=(s,), daemon=True) for s in statements]

    def _loop(self, statement: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.time()
                conn.execute(statement)
                self.samples.append((started, time.time() - started))
                time.sleep(0.005)

    def __enter__(self):
        for t in self.threads:
            t.start()
        time.sleep(1.0)  # warm up
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def during(self, start: float, end: float) -> list[float]:
        return [lat for begun, lat in self.samples if start <= begun + lat and begun <= end]


def naive(url: str) -> None:
    """The seed plan: one plain ADD CONSTRAINT ... FOREIGN KEY per column (validating, no lock_timeout)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for fk in SPEC.foreign_keys:
            conn.execute(f"ALTER TABLE {fk.table} ADD CONSTRAINT {fk.constraint} FOREIGN KEY ({fk.column}) "
                         f"REFERENCES organizations_projection (id) ON DELETE CASCADE")


STEP_ENDS: list[tuple[float, str]] = []


class _StepEnds(logging.Handler):
    """Each statement's end, from the executor's log: to attribute write latencies to steps."""

    def emit(self, record):
        if record.msg.startswith("attempt %d of %s: done"):
            STEP_ENDS.append((record.created, record.args[1]))


def runbook(url: str) -> None:
    db = Database(Environment("bench", "url", url_env="UNUSED"), url)
    logger = logging.getLogger("fkrunbook.executor")
    logger.setLevel(logging.INFO)
    logger.addHandler(_StepEnds())
    apply_plan(db, SPEC, MIGRATIONS, {})


def measure(url: str, apply) -> dict:
    with Writers(url) as writers:
        baseline_end = time.time()
        baseline = writers.during(baseline_end - 1.0, baseline_end)
        start = time.time()
        apply(url)
        end = time.time()
        time.sleep(0.2)
    during = sorted(writers.during(start, end))
    per_step, previous = [], start
    for ended, statement in STEP_ENDS:
        window = writers.during(previous, ended)
        per_step.append((statement, ended - previous, max(window) * 1000 if window else 0.0))
        previous = ended
    STEP_ENDS.clear()
    p99 = during[int(0.99 * (len(during) - 1))] if during else 0.0
    return {"seconds": end - start, "writes": len(during), "max_ms": max(during) * 1000 if during else 0.0,
            "p99_ms": p99 * 1000, "baseline_p99_ms": sorted(baseline)[int(0.99 * (len(baseline) - 1))] * 1000,
            "baseline_max_ms": max(baseline) * 1000, "per_step": per_step}


def delete_one_org(url: str) -> float:
    with psycopg.connect(url) as conn:
        org = conn.execute("SELECT md5('org-42')::uuid").fetchone()[0]
        started = time.time()
        conn.execute("DELETE FROM organizations_projection WHERE id = %s", (org,))
        elapsed = time.time() - started
        conn.rollback()
    return elapsed * 1000


def orphan_check_times(url: str) -> tuple[float, float]:
    db = Database(Environment("bench", "url", url_env="UNUSED"), url)
    started = time.time()
    find_orphans(db, SPEC, sample_size=5)
    library = time.time() - started
    with psycopg.connect(url) as conn:
        started = time.time()
        for fk in SPEC.foreign_keys:
            conn.execute(orphan_query(SPEC, fk, "count(*)")).fetchone()
        bare = time.time() - started
    return library, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="child rows per child table")
    args = parser.parse_args()
    with temporary_server() as server:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench_template")
        started = time.time()
        build(server.url("bench_template"), args.rows)
        print(f"built {args.rows:,} rows in each child table and {ORGS:,} organizations "
              f"in {time.time() - started:.1f} s")
        results = {}
        for name, apply in (("naive", naive), ("runbook", runbook)):
            with psycopg.connect(server.url(), autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE bench_{name} TEMPLATE bench_template")
            results[name] = measure(server.url(f"bench_{name}"), apply)
            results[name]["delete_org_ms"] = delete_one_org(server.url(f"bench_{name}"))
        library, bare = orphan_check_times(server.url("bench_runbook"))
    print(f"\n{'apply':<10}{'total s':>9}{'writes':>8}{'max ms':>9}{'p99 ms':>9}{'max before':>12}{'p99 before':>12}"
          f"{'delete 1 org ms':>17}")
    for name, r in results.items():
        print(f"{name:<10}{r['seconds']:>9.2f}{r['writes']:>8}{r['max_ms']:>9.1f}{r['p99_ms']:>9.1f}"
              f"{r['baseline_max_ms']:>12.1f}{r['baseline_p99_ms']:>12.1f}{r['delete_org_ms']:>17.2f}")
    print("(max/p99 before: the same writers in the second before the apply, the machine's noise floor)")
    print("\nrunbook, per statement: seconds, max write latency while it ran")
    for statement, seconds, worst in results["runbook"]["per_step"]:
        print(f"  {seconds:7.2f} s {worst:7.1f} ms  {statement}")
    print(f"\norphan check: fkrunbook.find_orphans {library * 1000:.0f} ms; the same NOT EXISTS counts bare through "
          f"psycopg {bare * 1000:.0f} ms")
    ratio = results["naive"]["max_ms"] / max(results["runbook"]["max_ms"], 0.001)
    print(json.dumps({"rows": args.rows, "naive_max_stall_ms": round(results["naive"]["max_ms"], 1),
                      "runbook_max_stall_ms": round(results["runbook"]["max_ms"], 1), "ratio": round(ratio, 1),
                      "naive_p99_ms": round(results["naive"]["p99_ms"], 1),
                      "runbook_p99_ms": round(results["runbook"]["p99_ms"], 1),
                      "naive_seconds": round(results["naive"]["seconds"], 2),
                      "runbook_seconds": round(results["runbook"]["seconds"], 2),
                      "delete_org_ms_naive": round(results["naive"]["delete_org_ms"], 2),
                      "delete_org_ms_runbook": round(results["runbook"]["delete_org_ms"], 2),
                      "orphan_check_ms": round(library * 1000), "orphan_check_bare_ms": round(bare * 1000)}))


if __name__ == "__main__":
    main()
