"""The lock and late-orphan faults through the whole runbook (the CLI, papermill, the notebook),
so the evidence and the operator's message are checked too (tests/test_executor.py has the same
faults at the library level)."""
import json

import psycopg

from fkrunbook.evidence import load_runs
from fkrunbook.orphans import clean_up_orphans

from ..test_cli import cli
from .conftest import hold_lock, wait_until_gone


def test_a_lock_never_released_fails_the_apply_phase_with_who_holds_it(project_copy, database, spec, tmp_path):
    envs = project_copy / "runbooks" / "environments.yaml"
    envs.write_text(envs.read_text().replace("    url_env: STAGING_DATABASE_URL\n", "    url_env: STAGING_DATABASE_URL\n"
                                             "    lock_retries: {attempts: 2, backoff: 100ms, backoff_max: 100ms}\n"))
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    blocker = hold_lock(database.url, "organizations_projection", "ROW EXCLUSIVE")
    try:
        result = cli("run", "--env", "staging", "--phase", "apply", cwd=project_copy,
                     env={"STAGING_DATABASE_URL": database.url})
    finally:
        blocker.close()
    wait_until_gone(database.url)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1
    assert "phase apply failed: LockUnavailableError: could not get the lock" in lines[0]
    assert "in 2 attempts of lock_timeout 100ms to 150ms: held by pid" in lines[0] and "fault-blocker" in lines[0]
    run = load_runs(project_copy / "audit", "staging")[0]
    assert run.status == "failed" and run.sealed
    notebook = json.loads((run.path / "04_apply.ipynb").read_text())
    errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors and "Attempts:" in errors[0]["traceback"] and any("lock timeout" in line for line in
                                                                      errors[0]["traceback"])
    assert database.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    assert [v for (v,) in database.sql("SELECT version FROM supabase_migrations.schema_migrations")] == \
        ["20261126120000"]  # the index step was complete; the key step left nothing


def test_orphans_written_between_the_check_and_the_apply_stop_the_apply(project_copy, database, spec, tmp_path):
    env = {"STAGING_DATABASE_URL": database.url}
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    check = cli("run", "--env", "staging", "--phase", "orphan_check", cwd=project_copy, env=env)
    assert check.returncode == 0 and "orphans: 0" in check.stdout
    with psycopg.connect(database.url, autocommit=True) as conn:  # a writer without a key to stop it
        conn.execute("INSERT INTO cross_tenant_access_grants_projection (consultant_org_id, provider_org_id, scope, "
                     "authorization_type) SELECT id, gen_random_uuid(), 'client_specific', 'late' "
                     "FROM organizations_projection LIMIT 1")
    apply = cli("run", "--env", "staging", "--phase", "apply", cwd=project_copy, env=env)
    assert apply.returncode == 1
    assert "OrphansPresentError: orphan rows would violate the new foreign keys " \
           "(cross_tenant_access_grants_projection.provider_org_id: 1)" in apply.stderr
    assert "run the orphan_check and orphan_cleanup phases first" in apply.stderr
    assert database.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    assert database.sql("SELECT to_regclass('supabase_migrations.schema_migrations')") == [(None,)]
    assert [r.status for r in load_runs(project_copy / "audit", "staging")] == ["failed", "succeeded"]
