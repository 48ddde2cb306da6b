"""Apply: exactly the plan, every lock wait bounded and retried, history kept as the CLI keeps it."""
import threading
import time
from dataclasses import replace

import psycopg
import pytest

from fkrunbook.errors import (LockUnavailableError, MigrationError, OrphansPresentError, ProtectedEnvironmentError,
                              ValidationFailedError, VerificationFailedError)
from fkrunbook.executor import apply_plan
from fkrunbook.history import list_local, split_statements
from fkrunbook.migration import add_statement, write_migrations
from fkrunbook.orphans import clean_up_orphans, find_orphans
from fkrunbook.plan import plan_migration
from fkrunbook.spec import LockRetries
from fkrunbook.verify import verify_constraints

from .conftest import schema_state
from .test_migration import MIGRATIONS


def _clean(database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)


def _versions(database):
    return [v for (v,) in database.sql("SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1")]


def test_apply_runs_the_plan_and_records_history_exactly_as_the_cli_does(database, spec, tmp_path):
    _clean(database, spec, tmp_path)
    db = database.connect()
    previewed = plan_migration(db, spec, MIGRATIONS).hash
    result = apply_plan(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert result.plan_hash == previewed
    assert result.results()["statements_applied"] == 8 and result.results()["statements_skipped"] == 1
    assert list(result.attempts["outcome"]) == ["done"] * 8
    rows = database.sql("SELECT version, name, statements FROM supabase_migrations.schema_migrations ORDER BY 1")
    for (version, name, statements), migration in zip(rows, list_local(MIGRATIONS), strict=True):
        assert (version, name) == (migration.version, migration.name)
        assert statements == split_statements(migration.path.read_text())
    table = verify_constraints(db, spec)
    assert table["ok"].all() and list(table["information_schema_delete_rule"]) == ["CASCADE"] * 3
    assert list(table["covering_index"]) == [fk.index for fk in spec.foreign_keys]
    again = apply_plan(db, spec, MIGRATIONS, {})
    assert again.recorded == [] and again.results()["statements_applied"] == 0


def test_apply_creates_the_history_table_and_tolerates_platform_columns(database, spec, tmp_path):
    database.sql("CREATE SCHEMA supabase_migrations; CREATE TABLE supabase_migrations.schema_migrations "
                 "(version text PRIMARY KEY, statements text[], name text, created_by text, idempotency_key text, "
                 "rollback text[])")
    _clean(database, spec, tmp_path)
    apply_plan(database.connect(), spec, MIGRATIONS, {})
    assert len(_versions(database)) == 3


def test_apply_refuses_while_orphans_remain_and_changes_nothing(database, spec):
    before = schema_state(database.url)
    db = database.connect()
    with pytest.raises(OrphansPresentError, match="run the orphan_check and orphan_cleanup phases first"):
        apply_plan(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert schema_state(database.url) == before


def test_protected_environment_needs_an_approval_of_the_exact_plan(database, spec, tmp_path):
    _clean(database, spec, tmp_path)
    guarded = database.connect("guarded")
    before = schema_state(database.url)
    with pytest.raises(ProtectedEnvironmentError) as info:  # no approval
        apply_plan(guarded, spec, MIGRATIONS, {})
    assert str(info.value) == ("environment 'guarded' is protected: apply needs --approve PLAN_HASH; review the plan "
                               "with `fkrunbook run --env guarded --phase migration_preview` and pass the plan hash "
                               "it shows")
    approved = plan_migration(guarded, spec, MIGRATIONS).hash
    database.sql(f"CREATE INDEX {spec.foreign_keys[1].index} ON cross_tenant_access_grants_projection (provider_org_id)")
    after_index = schema_state(database.url)
    with pytest.raises(ProtectedEnvironmentError, match="plan changed since it was approved"):  # stale approval
        apply_plan(guarded, spec, MIGRATIONS, {}, expected_hash=approved)
    assert schema_state(database.url) == after_index != before
    fresh = plan_migration(guarded, spec, MIGRATIONS).hash
    result = apply_plan(guarded, spec, MIGRATIONS, {}, expected_hash=fresh)  # the right approval
    assert result.plan_hash == fresh and verify_constraints(guarded, spec)["ok"].all()


def test_a_second_operator_is_refused_while_one_applies(database, spec, tmp_path):
    from fkrunbook.errors import ConcurrentRunError
    from fkrunbook.guard import lock_key

    _clean(database, spec, tmp_path)
    other = psycopg.connect(database.url, autocommit=True, application_name="fkrunbook-operator-a")
    other.execute("SELECT pg_advisory_lock(%s, %s)", lock_key(spec.name))
    before = schema_state(database.url)
    try:
        with pytest.raises(ConcurrentRunError) as info:
            apply_plan(database.connect(), spec, MIGRATIONS, {})
    finally:
        other.close()
    assert "another fkrunbook apply or clean-up is running on environment 'test'" in str(info.value)
    assert "fkrunbook-operator-a" in str(info.value) and "wait for it to finish" in str(info.value)
    assert schema_state(database.url) == before
    apply_plan(database.connect(), spec, MIGRATIONS, {})  # once the first is gone


def test_two_applies_at_once_one_applies_the_other_refuses_or_finds_nothing(database, spec, tmp_path):
    from fkrunbook.errors import ConcurrentRunError

    _clean(database, spec, tmp_path)
    outcomes = []

    def apply():
        try:
            outcomes.append(apply_plan(database.connect(), spec, MIGRATIONS, {}).results()["statements_applied"])
        except ConcurrentRunError:
            outcomes.append("refused")

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(str, outcomes)) in (["8", "refused"], ["0", "8"])  # never both applying
    assert _versions(database) == ["20261126120000", "20261126120001", "20261126120002"]


def test_apply_refuses_when_an_older_migration_is_pending(database, spec, tmp_path):
    folder = tmp_path / "migrations"
    write_migrations(spec, folder)
    (folder / "20250101000000_older_team_change.sql").write_text("CREATE TABLE team_change (id int);\n")
    _clean(database, spec, tmp_path)
    before = schema_state(database.url)
    with pytest.raises(MigrationError, match="20250101000000_older_team_change.sql is older than this runbook's"):
        apply_plan(database.connect(), spec, folder, {})
    assert schema_state(database.url) == before


def test_orphans_written_after_the_check_are_refused_under_the_lock(database, spec):
    before = schema_state(database.url)
    with pytest.raises(OrphansPresentError, match="impersonation_sessions_projection.target_org_id: "):
        apply_plan(database.connect(), spec, MIGRATIONS, {})  # the check said none: counted again under the lock
    assert schema_state(database.url) == before


def test_a_late_orphan_fails_validate_keeps_the_key_not_valid_and_recovers(database, spec, tmp_path):
    db = database.connect()
    for fk in spec.foreign_keys:  # the keys in place NOT VALID (say, pushed by the CLI) while orphans remain
        database.sql(add_statement(spec, fk))
    with pytest.raises(ValidationFailedError) as info:
        apply_plan(db, spec, MIGRATIONS, {})
    error = info.value
    assert error.column == "impersonation_sessions_projection.target_org_id"
    assert "run the orphan_check and orphan_cleanup phases" in str(error) and len(error.rows) == 20
    assert "Offending rows in impersonation_sessions_projection.target_org_id:" in error._render_traceback_()
    assert _versions(database) == ["20261126120000", "20261126120001"]  # validate not recorded
    states = database.sql("SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' ORDER BY 1")
    assert len(states) == 3 and not any(valid for _, valid in states)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # new rows are already enforced
        database.sql("INSERT INTO impersonation_sessions_projection (session_id, super_admin_user_id, target_user_id,"
                     " target_org_id, expires_at) VALUES ('late', gen_random_uuid(), gen_random_uuid(), "
                     "gen_random_uuid(), now())")
    with pytest.raises(VerificationFailedError, match="NOT VALID"):
        verify_constraints(db, spec)
    _clean(database, spec, tmp_path)
    result = apply_plan(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert result.recorded == ["20261126120002_add_missing_org_fk_constraints_validate.sql"]
    assert verify_constraints(db, spec)["ok"].all()


FAST = LockRetries.rising(3, "200ms", "200ms", backoff="100ms", backoff_max="200ms")


def _spec_with_lock_timeout(spec, value="200ms"):
    return replace(spec, migration=replace(spec.migration, lock_timeout=value))


def _hold_parent_lock(database):
    """Another session with an open write transaction on the parent table."""
    conn = psycopg.connect(database.url, application_name="blocker-under-test")
    conn.execute("LOCK TABLE organizations_projection IN ROW EXCLUSIVE MODE")
    return conn


def test_a_lock_never_released_fails_cleanly_naming_who_holds_it(database, spec, tmp_path):
    _clean(database, spec, tmp_path)
    fast = _spec_with_lock_timeout(spec)
    migrations = tmp_path / "migrations"
    write_migrations(fast, migrations)
    blocker = _hold_parent_lock(database)
    try:
        with pytest.raises(LockUnavailableError) as info:
            apply_plan(database.connect(), fast, migrations, {}, retries=FAST)
    finally:
        blocker.close()
    error = info.value
    message = str(error)
    assert "in 3 attempts of lock_timeout 200ms" in message and "blocker-under-test" in message
    assert "RowExclusiveLock on organizations_projection" in message and "nothing of this step was done" in message
    assert [a["outcome"] for a in error.attempts] == ["lock timeout"] * 3
    assert all(0.15 <= a["waited_s"] < 2.0 for a in error.attempts)  # each wait bounded by lock_timeout
    # nothing half-done: the indexes (complete step) stay, no key was added, only the index file is recorded
    assert database.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    assert _versions(database) == ["20261126120000"]
    assert database.sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]


def apply_past_a_brief_lock_holder(database, spec, tmp_path, retries):
    """Apply while another session holds a write lock on the parent for 0.6 s; (the result, the spec)."""
    _clean(database, spec, tmp_path)
    fast = _spec_with_lock_timeout(spec)
    migrations = tmp_path / "migrations"
    write_migrations(fast, migrations)
    blocker = _hold_parent_lock(database)
    threading.Timer(0.6, blocker.close).start()
    return apply_plan(database.connect(), fast, migrations, {}, retries=retries), fast


def test_a_lock_released_during_the_retries_lets_apply_finish(database, spec, tmp_path):
    result, fast = apply_past_a_brief_lock_holder(
        database, spec, tmp_path, LockRetries.rising(20, "200ms", "200ms", backoff="100ms", backoff_max="200ms"))
    outcomes = list(result.attempts["outcome"])
    assert "lock timeout" in outcomes and outcomes[-1] == "done"
    assert result.results()["lock_retries"] >= 1
    assert verify_constraints(database.connect(), fast)["ok"].all()


def test_writers_never_wait_longer_than_one_lock_timeout(database, spec, tmp_path):
    """While apply waits for a lock it cannot get, writers on the child it already locked wait at most
    one lock_timeout (0.2 s here) each time, never the whole sequence of retries."""
    _clean(database, spec, tmp_path)
    fast = _spec_with_lock_timeout(spec)
    migrations = tmp_path / "migrations"
    write_migrations(fast, migrations)
    blocker = _hold_parent_lock(database)
    latencies, stop = [], threading.Event()

    def writer():
        with psycopg.connect(database.url, autocommit=True) as conn:
            while not stop.is_set():
                started = time.monotonic()
                conn.execute("UPDATE impersonation_sessions_projection SET ended_at = now() WHERE session_id = 'sess-1'")
                latencies.append(time.monotonic() - started)
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(LockUnavailableError):
            apply_plan(database.connect(), fast, migrations, {},
                       retries=LockRetries.rising(4, "200ms", "200ms", backoff="100ms", backoff_max="100ms"))
    finally:
        stop.set()
        thread.join()
        blocker.close()
    assert len(latencies) > 10
    assert max(latencies) >= 0.1  # the writers did queue behind the waiting ALTER...
    assert max(latencies) < 0.2 + 0.5  # ...for one lock_timeout at most, plus scheduling slack
