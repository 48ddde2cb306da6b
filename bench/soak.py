"""Soak: the whole runbook run again and again against the same local database, looking for leaks.

Between runs a test-only helper rolls the change back (drops the three keys, the indexes the
runbook built and their history rows) and restores the clean-up's quarantine, so every run does
the whole job again: finds the orphans, deletes them, builds, adds and validates, proves the
cascade, writes the docs. After each run it counts what could leak, and only what the runbook
owns, so other programs on the machine cannot move the figures: fkrunbook's connections to the
server, this soak's own server's processes, kernels and other child processes of this process,
files in a runtime folder and a temp folder of the soak's own (JUPYTER_RUNTIME_DIR and TMPDIR
point there during the runs, so kernel connection files and IPC sockets land there), the files of
each run's evidence folder, and this process's memory.

    .venv/bin/python bench/soak.py --runs 20
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
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


def _count_entries(folder: Path) -> int:
    """Files and folders under ``folder``; an entry removed while the walk runs is simply not counted."""
    return sum(len(dirs) + len(files) for _, dirs, files in os.walk(folder, onerror=lambda err: None))


def _server_processes(data_dir: Path) -> int:
    """The soak's own PostgreSQL: its postmaster (from postmaster.pid) and the postmaster's children."""
    try:
        postmaster = psutil.Process(int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0]))
        return 1 + len(postmaster.children())
    except (OSError, ValueError, IndexError, psutil.Error):
        return 0


@contextlib.contextmanager
def private_folders():
    """A Jupyter runtime folder and a temp folder that only this soak uses (kernels inherit both
    through the environment; ``tempfile.tempdir`` covers this process). Short paths on purpose: a
    kernel's IPC sockets live next to its connection file, and a socket path has at most 107 bytes."""
    work = Path(tempfile.mkdtemp(prefix="fkrunbook-soak-"))
    runtime, temp = work / "runtime", work / "tmp"
    runtime.mkdir()
    temp.mkdir()
    saved_env = {name: os.environ.get(name) for name in ("JUPYTER_RUNTIME_DIR", "TMPDIR")}
    saved_tempdir = tempfile.tempdir
    os.environ.update(JUPYTER_RUNTIME_DIR=str(runtime), TMPDIR=str(temp))
    tempfile.tempdir = str(temp)
    try:
        yield runtime, temp
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(work, ignore_errors=True)


def soak(runs: int, project: Path, rows: int = 2000) -> list[dict]:
    from fkrunbook.database import connect
    from fkrunbook.environment import get_environment
    from fkrunbook.quarantine import restore_quarantine
    from fkrunbook.config import find_config
    from fkrunbook.runbook import run_phases
    from fkrunbook.sample import ensure_local_database
    from fkrunbook.server import ensure_server
    from fkrunbook.spec import load_spec

    config = find_config(project)
    env = get_environment("local", config.environments)
    server = ensure_server(env.data_dir)
    ensure_local_database(server, env.database, rows=rows, reset=True)
    url = server.url(env.database)
    spec = load_spec(config.spec)
    indexes_before = _indexes(url)
    me = psutil.Process()
    figures = []
    with private_folders() as (runtime, temp):
        for number in range(1, runs + 1):
            started = time.monotonic()
            result = run_phases(config, "local", None, parameters={"confirm": True, "write": True})
            seconds = time.monotonic() - started
            rollback_change(url, spec, indexes_before)
            restored = int(restore_quarantine(connect(env), result.run_id)["rows_restored"].sum())
            with psycopg.connect(url, autocommit=True) as conn:
                ours = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkrunbook'"
                                    ).fetchone()[0]
            figures.append({
                "run": number, "seconds": round(seconds, 1), "status": result.manifest["status"],
                "orphans_restored": restored, "fkrunbook_connections": ours,
                "server_processes": _server_processes(env.data_dir),
                "child_processes": len(me.children(recursive=True)), "runtime_files": _count_entries(runtime),
                "temp_files": _count_entries(temp), "run_files": _count_entries(result.run_dir),
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
        for part in ("runbooks", "supabase"):
            shutil.copytree(ROOT / part, project / part)
        shutil.copy(ROOT / "fkrunbook.toml", project / "fkrunbook.toml")
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
                      "server_processes": sorted({f["server_processes"] for f in figures}),
                      "child_processes": sorted({f["child_processes"] for f in figures}),
                      "runtime_files": sorted({f["runtime_files"] for f in figures}),
                      "temp_files": sorted({f["temp_files"] for f in figures}),
                      "run_files": sorted({f["run_files"] for f in figures}),
                      "seconds_per_run_mean": round(sum(f["seconds"] for f in figures) / len(figures), 1)}))


if __name__ == "__main__":
    main()
