"""The runbook killed with SIGKILL in the middle of each step of apply: the database is left in a
known state, the killed run is listed as incomplete, and a re-run completes the job."""
import json

import pytest

from fkrunbook.evidence import load_runs, verify_archive
from fkrunbook.history import list_local
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.verify import verify_constraints

from ..conftest import schema_state
from ..test_cli import cli
from ..test_migration import MIGRATIONS, psql
from .conftest import hold_lock, kill_everything, start_cli, wait_for_statement, wait_until_gone

STEPS = {
    # step: (what makes it wait, statement to catch it in, files applied by hand first)
    "index": (("cross_tenant_access_grants_projection", "ROW EXCLUSIVE"), "CREATE INDEX CONCURRENTLY", 0),
    "not_valid": (("organizations_projection", "ROW EXCLUSIVE"), "ALTER TABLE \"public\".\"impersonation_sessions_"
                                                                  "projection\" ADD CONSTRAINT", 0),
    "validate": (("impersonation_sessions_projection", "SHARE UPDATE EXCLUSIVE"), "ALTER TABLE \"public\".\""
                                                                                 "impersonation_sessions_projection\" "
                                                                                 "VALIDATE", 2),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_sigkill_during_a_step_then_a_rerun_completes(step, project_copy, database, spec, tmp_path):
    (table, mode), statement, by_hand = STEPS[step]
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    for migration in list_local(MIGRATIONS)[:by_hand]:  # reach the step without waiting in earlier ones
        assert psql(database.url, migration.path).returncode == 0
    blocker = hold_lock(database.url, table, mode)
    try:
        proc = start_cli(project_copy, database, "run", "--env", "staging", "--phase", "apply")
        wait_for_statement(database.url, statement)
        kill_everything(proc)
    finally:
        blocker.close()
    wait_until_gone(database.url)
    state = schema_state(database.url)
    assert not any(valid for _, _, valid in state["fks"])  # nothing validated: a killed step is rolled back
    if step == "index":
        assert len(state["fks"]) == 0
    killed = load_runs(project_copy / "audit", "staging")
    assert [r.status for r in killed] == ["incomplete"]
    assert json.loads((killed[0].path / "manifest.json").read_text())["phases"][0]["status"] == "running"

    rerun = cli("run", "--env", "staging", "--phase", "apply", cwd=project_copy,
                env={"STAGING_DATABASE_URL": database.url})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert verify_constraints(database.connect(), spec)["ok"].all()
    assert database.sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]
    assert [v for (v,) in database.sql("SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1")] == \
        [m.version for m in list_local(MIGRATIONS)]
    statuses = sorted(r.status for r in load_runs(project_copy / "audit", "staging"))
    assert statuses == ["incomplete", "succeeded"]
    assert verify_archive(project_copy / "audit") == ([], 1)  # the killed run is not in the chain: no false alarm
