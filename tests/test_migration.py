import subprocess

import pytest

from fkrunbook.errors import MigrationError, OrphansPresentError, ProtectedEnvironmentError, VerificationFailedError
from fkrunbook.history import list_local, split_statements
from fkrunbook.migration import apply_migration, plan_migration, render_migrations, verify_constraints, write_migrations
from fkrunbook.orphans import clean_up_orphans, find_orphans
from fkrunbook.server import embedded_bin_dir

from .conftest import PROJECT, schema_state

MIGRATIONS = PROJECT / "supabase" / "migrations"


def test_committed_migration_files_are_exactly_what_the_spec_generates(spec):
    assert write_migrations(spec, MIGRATIONS, check=True) == []
    rendered = render_migrations(spec)
    assert [r.filename for r in rendered] == [
        "20261126120000_add_missing_org_fk_constraints.sql",
        "20261126120001_add_missing_org_fk_constraints_validate.sql"]
    for r in rendered:
        assert (MIGRATIONS / r.filename).read_text() == r.sql


def test_not_valid_and_validate_are_in_separate_files(spec):
    add, validate = render_migrations(spec)
    assert add.sql.count("NOT VALID;") == 3 and "VALIDATE CONSTRAINT" not in add.sql
    assert validate.sql.count("VALIDATE CONSTRAINT %I'") == 3 and "ADD CONSTRAINT" not in validate.sql
    for r in (add, validate):
        assert "SET lock_timeout = '3s'" in r.sql and "-- Verification" in r.sql
        assert r.sql.count("DO $$") == 3


def test_check_reports_a_drifted_file(spec, tmp_path):
    write_migrations(spec, tmp_path)
    path = tmp_path / render_migrations(spec)[0].filename
    path.write_text(path.read_text() + "-- edited by hand\n")
    assert write_migrations(spec, tmp_path, check=True) == [path.name]


def _clean(database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)


def _psql(database, path):
    return subprocess.run([str(embedded_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database.url,
                           "-f", str(path)], capture_output=True, text=True)


def test_each_file_runs_twice_with_psql(database, spec, tmp_path):
    _clean(database, spec, tmp_path)
    for migration in list_local(MIGRATIONS):
        for attempt in (1, 2):
            result = _psql(database, migration.path)
            assert result.returncode == 0, (migration.filename, attempt, result.stderr)
    verify_constraints(database.connect(), spec)


def test_validate_file_fails_on_orphans_and_leaves_the_key_not_valid(database, spec):
    first, second = list_local(MIGRATIONS)
    assert _psql(database, first.path).returncode == 0  # NOT VALID: existing orphans are not checked
    result = _psql(database, second.path)
    assert result.returncode != 0 and "violates foreign key constraint" in result.stderr
    states = database.sql("SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' ORDER BY 1")
    assert len(states) == 3 and not any(valid for _, valid in states)


def test_plan_shows_every_statement_then_skips_what_is_in_place(database, spec, tmp_path):
    db = database.connect()
    plan = plan_migration(db, spec, MIGRATIONS)
    assert list(plan.statements["action"]) == ["run"] * 6
    assert plan.statements["statement"].iloc[0].endswith("ON DELETE CASCADE NOT VALID")
    assert plan.statements["statement"].iloc[3].startswith('ALTER TABLE "public"."impersonation_sessions_projection" '
                                                           "VALIDATE CONSTRAINT")
    assert list(plan.files["state"]) == ["pending", "pending"]
    _clean(database, spec, tmp_path)
    apply_migration(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    plan = plan_migration(db, spec, MIGRATIONS)
    assert list(plan.statements["action"]) == ["skip"] * 6
    assert list(plan.files["state"]) == ["applied", "applied"] and plan.pending == []


def test_apply_records_history_exactly_as_the_cli_does(database, spec, tmp_path):
    _clean(database, spec, tmp_path)
    db = database.connect()
    applied = apply_migration(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert list(applied["version"]) == ["20261126120000", "20261126120001"]
    rows = database.sql("SELECT version, name, statements FROM supabase_migrations.schema_migrations ORDER BY 1")
    for (version, name, statements), migration in zip(rows, list_local(MIGRATIONS)):
        assert (version, name) == (migration.version, migration.name)
        assert statements == split_statements(migration.path.read_text())
    table = verify_constraints(db, spec)
    assert list(table["ok"]) == [True] * 3 and list(table["information_schema_delete_rule"]) == ["CASCADE"] * 3
    again = apply_migration(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert len(again) == 0


def test_apply_tolerates_extra_platform_history_columns(database, spec, tmp_path):
    database.sql("CREATE SCHEMA supabase_migrations; CREATE TABLE supabase_migrations.schema_migrations "
                 "(version text PRIMARY KEY, statements text[], name text, created_by text, idempotency_key text)")
    _clean(database, spec, tmp_path)
    db = database.connect()
    apply_migration(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert len(database.sql("SELECT * FROM supabase_migrations.schema_migrations")) == 2


def test_apply_refuses_while_orphans_remain_and_changes_nothing(database, spec):
    before = schema_state(database.url)
    db = database.connect()
    with pytest.raises(OrphansPresentError, match="run the orphan_check and orphan_cleanup phases first"):
        apply_migration(db, spec, MIGRATIONS, find_orphans(db, spec).fk_orphans)
    assert schema_state(database.url) == before


def test_apply_refuses_on_a_protected_environment(database, spec, tmp_path):
    _clean(database, spec, tmp_path)
    before = schema_state(database.url)
    with pytest.raises(ProtectedEnvironmentError, match="apply refuses"):
        apply_migration(database.connect("guarded"), spec, MIGRATIONS, {})
    assert schema_state(database.url) == before


def test_apply_refuses_when_an_older_migration_is_pending(database, spec, tmp_path):
    folder = tmp_path / "migrations"
    write_migrations(spec, folder)
    (folder / "20250101000000_older_team_change.sql").write_text("CREATE TABLE team_change (id int);\n")
    _clean(database, spec, tmp_path)
    before = schema_state(database.url)
    db = database.connect()
    with pytest.raises(MigrationError, match="20250101000000_older_team_change.sql is older than this runbook's"):
        apply_migration(db, spec, folder, {})
    assert schema_state(database.url) == before


def test_failed_validate_rolls_back_its_file_and_records_nothing(database, spec, tmp_path):
    db = database.connect()
    first, second = list_local(MIGRATIONS)
    assert _psql(database, first.path).returncode == 0
    with pytest.raises(MigrationError, match="_validate.sql failed and was rolled back"):
        apply_migration(db, spec, MIGRATIONS, {})  # pretend the orphan gate was skipped
    versions = [v for (v,) in database.sql("SELECT version FROM supabase_migrations.schema_migrations")]
    assert versions == ["20261126120000"]
    with pytest.raises(VerificationFailedError, match="NOT VALID"):
        verify_constraints(db, spec)


def test_verify_before_apply_names_each_missing_key(database, spec):
    with pytest.raises(VerificationFailedError) as info:
        verify_constraints(database.connect(), spec)
    assert info.value.failures == [f"{fk.label}: missing" for fk in spec.foreign_keys]
