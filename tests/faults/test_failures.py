"""Faults other than a kill: the server restarting, the kernel dying, a cell timing out, a
statement timeout, and evidence that cannot be written. Each leaves a known database state,
evidence of what happened, and a clear message."""
import subprocess
import threading
from dataclasses import replace

import pytest

from fkrunbook.errors import EvidenceUnwritableError, MigrationError
from fkrunbook.evidence import load_runs
from fkrunbook.executor import apply_plan
from fkrunbook.history import list_local
from fkrunbook.migration import write_migrations
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.runbook import run_phases
from fkrunbook.server import restart_server
from fkrunbook.spec import LockRetries
from fkrunbook.verify import verify_constraints

from ..conftest import project_config, schema_state
from ..test_cli import cli
from ..test_migration import MIGRATIONS, psql
from .conftest import hold_lock, kernels_of, start_cli, wait_for_statement, wait_until_gone


def _versions(database):
    return [v for (v,) in database.sql("SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1")]


def test_server_restart_in_the_middle_of_apply(database, spec, tmp_path, server):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    blocker = hold_lock(database.url, "organizations_projection", "ROW EXCLUSIVE")
    outcome = {}

    def apply():
        try:
            apply_plan(db, spec, MIGRATIONS, {}, retries=LockRetries.rising(60, "1s", "1s", backoff="100ms", backoff_max="200ms"))
            outcome["result"] = "applied"
        except MigrationError as err:
            outcome["result"] = str(err)

    thread = threading.Thread(target=apply)
    thread.start()
    wait_for_statement(database.url, 'ALTER TABLE "public"."impersonation_sessions_projection" ADD CONSTRAINT')
    restart_server(server.data_dir)
    thread.join(timeout=60)
    blocker.close()
    assert "failed:" in outcome["result"] and "nothing of this step was kept" in outcome["result"]
    assert database.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    assert _versions(database) == ["20261126120000"]  # the index file was complete before the restart
    apply_plan(database.connect(), spec, MIGRATIONS, {})
    assert verify_constraints(database.connect(), spec)["ok"].all()


def test_the_kernel_dying_fails_the_phase_and_seals_the_evidence(project_copy, database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    blocker = hold_lock(database.url, "organizations_projection", "ROW EXCLUSIVE")
    try:
        proc = start_cli(project_copy, database, "run", "--env", "staging", "--phase", "apply")
        wait_for_statement(database.url, 'ALTER TABLE "public"."impersonation_sessions_projection" ADD CONSTRAINT')
        for kernel in kernels_of(proc):
            kernel.kill()
        assert proc.wait(timeout=120) == 1
    finally:
        blocker.close()
    wait_until_gone(database.url)
    log = (project_copy / "cli.log").read_text()
    assert "fkrunbook: error: phase apply failed: DeadKernelError" in log
    run = load_runs(project_copy / "audit", "staging")[0]
    assert run.status == "failed" and run.sealed and "04_apply.ipynb" in run.manifest["files"]
    assert database.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    rerun = cli("run", "--env", "staging", "--phase", "apply", cwd=project_copy,
                env={"STAGING_DATABASE_URL": database.url})
    assert rerun.returncode == 0, rerun.stderr


def test_a_cell_timeout_fails_the_phase_and_seals_the_evidence(project_copy, database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    blocker = hold_lock(database.url, "organizations_projection", "ROW EXCLUSIVE")
    try:
        result = cli("run", "--env", "staging", "--phase", "apply", "--cell-timeout", "4", cwd=project_copy,
                     env={"STAGING_DATABASE_URL": database.url})
    finally:
        blocker.close()
    assert result.returncode == 1 and "phase apply failed: CellTimeoutError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    wait_until_gone(database.url)
    run = load_runs(project_copy / "audit", "staging")[0]
    assert run.status == "failed" and run.sealed
    assert database.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]


def test_statement_timeout_during_validate_keeps_the_key_not_valid(database, spec, tmp_path):
    slow = replace(spec, migration=replace(spec.migration, lock_timeout="5s", statement_timeout="300ms"))
    migrations = tmp_path / "migrations"
    write_migrations(slow, migrations)
    clean_up_orphans(database.connect(), slow, tmp_path, "clean", confirm=True)
    for migration in list_local(migrations)[:2]:
        assert psql(database.url, migration.path).returncode == 0
    # VALIDATE must wait behind this lock longer than statement_timeout (a scan of a big table would too)
    blocker = hold_lock(database.url, "impersonation_sessions_projection", "SHARE UPDATE EXCLUSIVE")
    try:
        with pytest.raises(MigrationError, match="canceling statement due to statement timeout.*nothing of this "
                                                 "step was kept"):
            apply_plan(database.connect(), slow, migrations, {}, retries=LockRetries(((5000, 100),)))  # lock wait > 300ms
    finally:
        blocker.close()
    assert database.sql("SELECT bool_or(convalidated) FROM pg_constraint WHERE contype = 'f'") == [(False,)]
    assert "20261126120002" not in _versions(database)
    apply_plan(database.connect(), slow, migrations, {})
    assert verify_constraints(database.connect(), slow)["ok"].all()


def test_evidence_folder_not_writable_means_nothing_runs(project_copy, database):
    (project_copy / "audit").mkdir()
    (project_copy / "audit" / "staging").write_text("a file where the evidence folder should be")
    before = schema_state(database.url)
    result = cli("run", "--env", "staging", "--phase", "orphan_cleanup", "--confirm", cwd=project_copy,
                 env={"STAGING_DATABASE_URL": database.url})
    assert result.returncode == 1 and "cannot write the evidence in" in result.stderr and "nothing was run" in \
        result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert schema_state(database.url) == before


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a size-limited tmpfs here (needs root): " + done.stderr.decode().strip())
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_evidence_disk_full_means_the_change_is_not_attempted(project_copy, database, spec, tiny_disk, tmp_path):
    clean = schema_state(database.url)
    with pytest.raises(EvidenceUnwritableError, match="No space left on device"):
        run_phases(project_config(project_copy, database.environments, evidence=tiny_disk), "test",
                   ["orphan_cleanup"], parameters={"confirm": True})
    assert schema_state(database.url) == clean
    assert list(tiny_disk.rglob("*")) == [tiny_disk / "test"]  # only the empty environment folder
