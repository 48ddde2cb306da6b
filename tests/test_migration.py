"""The migration files generated from the spec, and the Supabase CLI's way of splitting them."""
import subprocess

from fkrunbook.history import list_local
from fkrunbook.migration import render_migrations, write_migrations
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.server import embedded_bin_dir
from fkrunbook.verify import verify_constraints

from .conftest import PROJECT

MIGRATIONS = PROJECT / "supabase" / "migrations"


def test_committed_migration_files_are_exactly_what_the_spec_generates(spec):
    assert write_migrations(spec, MIGRATIONS, check=True) == []
    rendered = render_migrations(spec)
    assert [r.filename for r in rendered] == [
        "20261126120000_add_missing_org_fk_constraints_indexes.sql",
        "20261126120001_add_missing_org_fk_constraints.sql",
        "20261126120002_add_missing_org_fk_constraints_validate.sql"]
    for r in rendered:
        assert (MIGRATIONS / r.filename).read_text() == r.sql


def test_each_step_is_in_its_own_file(spec):
    index, add, validate = render_migrations(spec)
    assert index.sql.count("CREATE INDEX CONCURRENTLY IF NOT EXISTS") == 3 and "ALTER TABLE" not in index.sql
    assert '"idx_impersonation_sessions_target_org"' in index.sql  # the team's existing covering index
    assert add.sql.count("NOT VALID;") == 3 and "VALIDATE CONSTRAINT" not in add.sql
    assert validate.sql.count("VALIDATE CONSTRAINT %I'") == 3 and "ADD CONSTRAINT" not in validate.sql
    for r in (index, add, validate):
        assert "SET lock_timeout = '1s';\nSET statement_timeout = '15min';\nSET max_parallel_maintenance_workers = 0;" in r.sql
        assert "-- Verification" in r.sql
    assert add.sql.count("DO $$") == 3 and validate.sql.count("DO $$") == 3


def test_check_reports_a_drifted_file(spec, tmp_path):
    write_migrations(spec, tmp_path)
    path = tmp_path / render_migrations(spec)[1].filename
    path.write_text(path.read_text() + "-- edited by hand\n")
    assert write_migrations(spec, tmp_path, check=True) == [path.name]


def psql(url, path):
    return subprocess.run([str(embedded_bin_dir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url,
                           "-f", str(path)], capture_output=True, text=True)


def test_each_file_runs_twice_with_psql(database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    for migration in list_local(MIGRATIONS):
        for attempt in (1, 2):
            result = psql(database.url, migration.path)
            assert result.returncode == 0, (migration.filename, attempt, result.stderr)
    verify_constraints(database.connect(), spec)


def test_validate_file_fails_on_orphans_and_leaves_the_keys_not_valid(database, spec):
    index, add, validate = list_local(MIGRATIONS)
    assert psql(database.url, index.path).returncode == 0
    assert psql(database.url, add.path).returncode == 0  # NOT VALID: existing orphans are not checked
    result = psql(database.url, validate.path)
    assert result.returncode != 0 and "violates foreign key constraint" in result.stderr
    states = database.sql("SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' ORDER BY 1")
    assert len(states) == 3 and not any(valid for _, valid in states)
