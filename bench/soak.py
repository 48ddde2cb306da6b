"""Soak: the whole runbook run again and again against the same local database, looking for leaks.

Between runs a test-only helper rolls the change back (drops the three keys, the indexes the
runbook built and their history rows) and restores the clean-up's quarantine, so every run does
the whole job again: finds the orphans, deletes them, builds, adds and validates, proves the
cascade, writes the docs. After each run it counts what could leak: fkrunbook's connections to
the server, PostgreSQL server processes, kernels and other child processes, files in Jupyter's
runtime folder (connection files, IPC sockets) and in the temp folder, and this process's memory.

    .venv/bin/python bench/soak.py --runs 20
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]


def rollback_change(url: str, spec, indexes_before: set[str]) -> None:
    """Test-only: undo what apply did, so the next run has the whole job to do again."""
    from fkrunbook.migration import file_names

    with psycopg.connect(url, autocommit=True) as conn:
        for fk in spec.foreign_keys:
            conn.execute(f'ALTER TABLE "{fk.table}" DROP CONSTRAINT IF EXISTS "{fk.constraint}"')
        for (name,) in conn.execute("SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON "
                                    "c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                                    "WHERE n.nspname = 'public'").fetchall():
            if name not in indexes_before:
                conn.execute(f'DROP INDEX IF EXISTS "{name}"')
        conn.execute("DELETE FROM supabase_migrations.schema_migrations WHERE version = ANY(%s)",
                     ([v for v, _ in file_names(spec).values()],))


def _indexes(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON "
                                           "c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                                           "WHERE n.nspname = 'public'")}


def _count_files(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*")) if folder.exists() else 0


def soak(runs: int, project: Path, rows: int = 2000) -> list[dict]:
    from jupyter_core.paths import jupyter_runtime_dir

    from fkrunbook.database import connect
    from fkrunbook.environment import get_environment
    from fkrunbook.quarantine import restore_quarantine
    from fkrunbook.runbook import Project, run_phases
    from fkrunbook.sample import ensure_local_database
    from fkrunbook.server import ensure_server
    from fkrunbook.spec import load_spec

    proj = Project(project)
    env = get_environment("local", proj.environments)
    server = ensure_server(env.data_dir)
    ensure_local_database(server, env.database, rows=rows, reset=True)
    url = server.url(env.database)
    spec = load_spec(proj.spec)
    indexes_before = _indexes(url)
    docs = project / "docs"
    docs.mkdir(exist_ok=True)
    runtime = Path(jupyter_runtime_dir())
    me = psutil.Process()
    figures = []
    for number in range(1, runs + 1):
        started = time.monotonic()
        result = run_phases(proj, "local", None, parameters={"confirm": True, "write": True, "docs_dir": docs})
        seconds = time.monotonic() - started
        restored = 0
        db = connect(env)
        rollback_change(url, spec, indexes_before)
        restored = int(restore_quarantine(db, result.run_id)["rows_restored"].sum())
        with psycopg.connect(url, autocommit=True) as conn:
            ours = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkrunbook'"
                                ).fetchone()[0]
        figures.append({
            "run": number, "seconds": round(seconds, 1), "status": result.manifest["status"],
            "orphans_restored": restored, "fkrunbook_connections": ours,
            "postgres_processes": sum(1 for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"),
            "child_processes": len(me.children(recursive=True)), "runtime_files": _count_files(runtime),
            "temp_files": _count_files(Path(tempfile.gettempdir())) - _count_files(project),  # evidence is kept
            "rss_mb": round(me.memory_info().rss / 2**20, 1),
        })
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    from fkrunbook.environment import get_environment
    from fkrunbook.server import stop_server

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        for part in ("notebooks", "runbooks", "supabase"):
            shutil.copytree(ROOT / part, project / part)
        try:
            figures = soak(args.runs, project)
        finally:
            stop_server(get_environment("local", project / "runbooks" / "environments.yaml").data_dir)
    keys = list(figures[0])
    print("  ".join(f"{k:>10}" for k in keys))
    for row in figures:
        print("  ".join(f"{str(row[k]):>10}" for k in keys))
    first, last = figures[0], figures[-1]
    print(json.dumps({"runs": len(figures), "all_succeeded": all(f["status"] == "succeeded" for f in figures),
                      "rss_mb_first": first["rss_mb"], "rss_mb_last": last["rss_mb"],
                      "max_fkrunbook_connections_after_a_run": max(f["fkrunbook_connections"] for f in figures),
                      "postgres_processes": sorted({f["postgres_processes"] for f in figures}),
                      "child_processes": sorted({f["child_processes"] for f in figures}),
                      "runtime_files": sorted({f["runtime_files"] for f in figures}),
                      "temp_files_first_last": [first["temp_files"], last["temp_files"]],
                      "seconds_per_run_mean": round(sum(f["seconds"] for f in figures) / len(figures), 1)}))


if __name__ == "__main__":
    main()
