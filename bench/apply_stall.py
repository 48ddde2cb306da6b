"""Benchmark: how long writers stall while the foreign keys are added, the seed plan's way and the runbook's.

Builds N child rows in each child table on a fresh embedded server, then, on two fresh copies of
that database, runs writers on the child and parent tables (small autocommit transactions, each
latency recorded) while applying (a) the seed plan's naive ALTER TABLE ... ADD FOREIGN KEY per
column and (b) the runbook's apply.

With ``--lock-holder SECONDS`` another session updates one organization (a row no writer touches)
and keeps its transaction open that long: it holds ROW EXCLUSIVE on the parent, which every
ADD FOREIGN KEY must wait for. It starts when the naive ALTER starts, and just before the
runbook's first ADD ... NOT VALID (once its index builds are done), so both meet it.

Also measured, on the runbook's copy before it runs: the noise floor (the same writers, nothing
else running) and the lock-holder stall (a writer that updates the held row, with no runbook:
what the holder alone costs; no runbook can shorten it).

Prints a table per size and one JSON object per size; with several sizes, a last JSON line
``{"lock_holder_s": ..., "runs": [...]}``. Asserts nothing about time: the figures are for reading.

    .venv/bin/python bench/apply_stall.py --rows 1000000 5000000 --lock-holder 6
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from pathlib import Path

import psycopg

from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import find_orphans, orphan_query
from fkrunbook.plan import plan_migration
from fkrunbook.sample import load_baseline
from fkrunbook.server import temporary_server
from fkrunbook.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = load_spec(ROOT / "runbooks" / "add_missing_org_fk_constraints.yaml")
MIGRATIONS = ROOT / "supabase" / "migrations"
ORGS = 10_000
HELD = "md5('held-by-another-session')::uuid"  # the organization the lock holder updates; no writer picks it
NOISE_SECONDS = 5.0


CHILDREN = ("impersonation_sessions_projection", "cross_tenant_access_grants_projection")


def build(url: str, rows: int) -> None:
    """ORGS organizations (and the held one), `rows` impersonation sessions and `rows` grants, no
    orphan. The children's keys and indexes are dropped for the load and rebuilt after it (sorted
    builds instead of row-by-row inserts into random uuid indexes: minutes saved at 20M rows)."""
    with psycopg.connect(url, autocommit=True) as conn:
        load_baseline(conn)
        conn.execute("INSERT INTO organizations_projection (id, name, slug, type) "
                     "SELECT md5('org-' || i)::uuid, 'Org ' || i, 'org-' || i, 'provider' "
                     "FROM generate_series(0, %s - 1) i", (ORGS,))
        conn.execute(f"INSERT INTO organizations_projection (id, name, slug, type) VALUES ({HELD}, 'Held', 'held', "
                     "'provider')")
        rebuild = _drop_keys_and_indexes(conn)
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
        conn.execute("SET maintenance_work_mem = '256MB'")
        for statement in rebuild:
            conn.execute(statement)
        conn.execute("VACUUM ANALYZE")


def _drop_keys_and_indexes(conn: psycopg.Connection) -> list[str]:
    """Drop the children's constraints and indexes; return the statements that put them back."""
    back = []
    for table in CHILDREN:
        for name, definition in conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
                "AND contype IN ('p', 'u')", (table,)).fetchall():
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
            back.append(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
        for name, definition in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)).fetchall():
            conn.execute(f"DROP INDEX {name}")
            back.append(definition)
    return back


class Writers:
    """Threads writing to both child tables and the parent, one small autocommit transaction at a time."""

    def __init__(self, url: str, held_row: bool = False):
        self.url, self.samples, self.held, self.stop = url, [], [], threading.Event()
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
        self.threads = [threading.Thread(target=self._loop, args=(s, self.samples), daemon=True) for s in statements]
        if held_row:  # the writer that needs the very row the lock holder keeps
            self.threads.append(threading.Thread(target=self._loop, daemon=True, args=(
                f"UPDATE organizations_projection SET updated_at = now() WHERE id = {HELD}", self.held)))

    def _loop(self, statement: str, samples: list) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.is_set():
                started = time.time()
                conn.execute(statement)
                samples.append((started, time.time() - started))
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


class LockHolder:
    """Another session that updates the held organization and keeps its transaction open for
    ``seconds`` (a request being handled, a forgotten psql session): ROW EXCLUSIVE on the parent."""

    def __init__(self, url: str, seconds: float):
        self.url, self.seconds, self.conn, self.timer = url, seconds, None, None

    def start(self) -> None:
        if self.seconds <= 0 or self.conn is not None:
            return
        self.conn = psycopg.connect(self.url, application_name="bench-lock-holder")
        self.conn.execute(f"UPDATE organizations_projection SET updated_at = now() WHERE id = {HELD}")
        self.timer = threading.Timer(self.seconds, self.conn.rollback)
        self.timer.start()

    def close(self) -> None:
        if self.timer is not None:
            self.timer.join()
            self.conn.close()


def naive(url: str, holder: LockHolder) -> None:
    """The seed plan: one plain ADD CONSTRAINT ... FOREIGN KEY per column (validating, no lock_timeout)."""
    holder.start()
    with psycopg.connect(url, autocommit=True) as conn:
        for fk in SPEC.foreign_keys:
            conn.execute(f"ALTER TABLE {fk.table} ADD CONSTRAINT {fk.constraint} FOREIGN KEY ({fk.column}) "
                         f"REFERENCES organizations_projection (id) ON DELETE CASCADE")


STEP_ENDS: list[tuple[float, str]] = []


class _StepEnds(logging.Handler):
    """Each statement's end, from the executor's log: to attribute write latencies to steps, and to
    start the lock holder once the index builds are done (in the apply's own thread, so the holder
    has its lock before the first ADD asks for one)."""

    def __init__(self, indexes: int, holder: LockHolder):
        super().__init__()
        self.indexes, self.holder = indexes, holder

    def emit(self, record):
        if record.msg.startswith("attempt %d of %s: done"):
            STEP_ENDS.append((record.created, record.args[1]))
            if sum(1 for _, s in STEP_ENDS if s.startswith(("CREATE INDEX", "DROP INDEX"))) >= self.indexes:
                self.holder.start()


def runbook(url: str, holder: LockHolder):
    db = Database(Environment("bench", "url", url_env="UNUSED"), url)
    indexes = sum(1 for s in plan_migration(db, SPEC, MIGRATIONS).to_run if s.kind in ("index", "drop_index"))
    if not indexes:
        holder.start()
    logger = logging.getLogger("fkrunbook.executor")
    logger.setLevel(logging.INFO)
    handler = _StepEnds(indexes, holder)
    logger.addHandler(handler)
    try:
        return apply_plan(db, SPEC, MIGRATIONS, {})
    finally:
        logger.removeHandler(handler)


def percentile(values: list[float], share: float) -> float:
    values = sorted(values)
    return values[int(share * (len(values) - 1))] if values else 0.0


def quiet(url: str, holder_seconds: float) -> dict:
    """The writers with nothing running (the noise floor), then with only the lock holder: the held
    row's writer waits for the holder (the lock-holder stall), the others should not notice."""
    with Writers(url, held_row=True) as writers:
        start = time.time()
        time.sleep(NOISE_SECONDS)
        floor = writers.during(start, time.time())
        holder = LockHolder(url, holder_seconds)
        begun = time.time()
        holder.start()
        holder.close()
        time.sleep(0.3)
        ended = time.time()
    others = writers.during(begun, ended)
    held = [lat for started, lat in writers.held if begun <= started + lat and started <= ended]
    return {"noise_floor_max_ms": max(floor) * 1000, "noise_floor_p99_ms": percentile(floor, 0.99) * 1000,
            "lock_holder_stall_ms": max(held) * 1000 if holder_seconds > 0 and held else 0.0,
            "others_with_holder_max_ms": max(others) * 1000 if holder_seconds > 0 and others else 0.0}


def measure(url: str, apply, holder_seconds: float) -> dict:
    holder = LockHolder(url, holder_seconds)
    with Writers(url) as writers:
        baseline_end = time.time()
        baseline = writers.during(baseline_end - 1.0, baseline_end)
        start = time.time()
        try:
            outcome = apply(url, holder)
        finally:
            holder.close()
        end = time.time()
        time.sleep(0.2)
    during = sorted(writers.during(start, end))
    per_step, previous = [], start
    for ended, statement in STEP_ENDS:
        window = writers.during(previous, ended)
        per_step.append((statement, ended - previous, max(window) * 1000 if window else 0.0))
        previous = ended
    STEP_ENDS.clear()
    attempts = outcome.attempts if outcome is not None else None
    return {"seconds": end - start, "writes": len(during), "max_ms": max(during) * 1000 if during else 0.0,
            "p99_ms": percentile(during, 0.99) * 1000, "baseline_p99_ms": percentile(baseline, 0.99) * 1000,
            "baseline_max_ms": max(baseline) * 1000, "per_step": per_step,
            "lock_timeouts": int((attempts["outcome"] == "lock timeout").sum()) if attempts is not None else 0,
            "lock_timeouts_ms": sorted({int(t) for t in attempts["lock_timeout_ms"][attempts["outcome"] == "lock timeout"]})
            if attempts is not None else [],
            # behind the statements that take a lock writers wait for (the ADDs, retries included); the
            # rest of the max is CPU contention during the index builds and VALIDATE scans
            "behind_locks_ms": max([worst for statement, _, worst in per_step if "ADD CONSTRAINT" in statement],
                                   default=0.0)}


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


def bench_size(rows: int, holder_seconds: float) -> dict:
    load = os.getloadavg()[0]
    with temporary_server() as server:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
            admin.execute("SELECT pg_reload_conf()")
            admin.execute("CREATE DATABASE bench_template")
        started = time.time()
        build(server.url("bench_template"), rows)
        built = time.time() - started
        print(f"built {rows:,} rows in each child table and {ORGS:,} organizations in {built:.1f} s")
        results = {}
        for name, apply in (("naive", naive), ("runbook", runbook)):
            with psycopg.connect(server.url(), autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE bench_{name} TEMPLATE bench_template STRATEGY FILE_COPY")
                if name == "runbook":  # one copy at a time: 20M rows take gigabytes
                    admin.execute("DROP DATABASE bench_template")
            if name == "runbook":
                floor = quiet(server.url("bench_runbook"), holder_seconds)
            results[name] = measure(server.url(f"bench_{name}"), apply, holder_seconds)
            results[name]["delete_org_ms"] = delete_one_org(server.url(f"bench_{name}"))
            if name == "naive":
                with psycopg.connect(server.url(), autocommit=True) as admin:
                    admin.execute("DROP DATABASE bench_naive")
        library, bare = orphan_check_times(server.url("bench_runbook"))
    print(f"\n{'apply':<10}{'total s':>9}{'writes':>8}{'max ms':>9}{'p99 ms':>9}{'max before':>12}{'p99 before':>12}"
          f"{'delete 1 org ms':>17}")
    for name, r in results.items():
        print(f"{name:<10}{r['seconds']:>9.2f}{r['writes']:>8}{r['max_ms']:>9.1f}{r['p99_ms']:>9.1f}"
              f"{r['baseline_max_ms']:>12.1f}{r['baseline_p99_ms']:>12.1f}{r['delete_org_ms']:>17.2f}")
    print("(max/p99 before: the same writers in the second before the apply)")
    print(f"noise floor ({NOISE_SECONDS:g} s of writers, nothing else running): max {floor['noise_floor_max_ms']:.1f} ms, "
          f"p99 {floor['noise_floor_p99_ms']:.1f} ms")
    if holder_seconds:
        print(f"lock holder {holder_seconds:g} s, no runbook: the held row's writer waited "
              f"{floor['lock_holder_stall_ms']:.0f} ms (the lock-holder stall); the other writers at most "
              f"{floor['others_with_holder_max_ms']:.1f} ms")
        print(f"runbook with the holder: {results['runbook']['lock_timeouts']} attempt(s) hit lock_timeout "
              f"(their lock_timeouts: {results['runbook']['lock_timeouts_ms']} ms); writers' max while the ADDs "
              f"ran (retries included): {results['runbook']['behind_locks_ms']:.1f} ms")
    print("\nrunbook, per statement: seconds, max write latency while it ran")
    for statement, seconds, worst in results["runbook"]["per_step"]:
        print(f"  {seconds:7.2f} s {worst:7.1f} ms  {statement}")
    print(f"\norphan check: fkrunbook.find_orphans {library * 1000:.0f} ms; the same NOT EXISTS counts bare through "
          f"psycopg {bare * 1000:.0f} ms")
    ratio = results["naive"]["max_ms"] / max(results["runbook"]["max_ms"], 0.001)
    figures = {"rows": rows, "lock_holder_s": holder_seconds,
               "naive_max_stall_ms": round(results["naive"]["max_ms"], 1),
               "runbook_max_stall_ms": round(results["runbook"]["max_ms"], 1), "ratio": round(ratio, 1),
               "naive_p99_ms": round(results["naive"]["p99_ms"], 1),
               "runbook_p99_ms": round(results["runbook"]["p99_ms"], 1),
               "runbook_lock_timeouts": results["runbook"]["lock_timeouts"],
               "runbook_max_stall_behind_locks_ms": round(results["runbook"]["behind_locks_ms"], 1),
               "noise_floor_max_ms": round(floor["noise_floor_max_ms"], 1),
               "noise_floor_p99_ms": round(floor["noise_floor_p99_ms"], 1),
               "lock_holder_stall_ms": round(floor["lock_holder_stall_ms"], 1),
               "naive_seconds": round(results["naive"]["seconds"], 2),
               "runbook_seconds": round(results["runbook"]["seconds"], 2),
               "delete_org_ms_naive": round(results["naive"]["delete_org_ms"], 2),
               "delete_org_ms_runbook": round(results["runbook"]["delete_org_ms"], 2),
               "orphan_check_ms": round(library * 1000), "orphan_check_bare_ms": round(bare * 1000),
               "build_s": round(built, 1), "load_1min_before": round(load, 2),
               "load_1min_after": round(os.getloadavg()[0], 2)}
    print(json.dumps(figures))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000],
                        help="child rows per child table; several sizes run one after the other")
    parser.add_argument("--lock-holder", type=float, default=0.0, metavar="SECONDS",
                        help="another session holds a row of the parent table that long while each apply runs")
    args = parser.parse_args()
    if args.lock_holder < 0 or any(r < 1 for r in args.rows):
        parser.error("--rows must be at least 1 and --lock-holder at least 0")
    runs = [bench_size(rows, args.lock_holder) for rows in args.rows]
    if len(runs) > 1:
        print(json.dumps({"lock_holder_s": args.lock_holder, "runs": runs}))


if __name__ == "__main__":
    main()
