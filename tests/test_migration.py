"""The migration files generated from the spec, and the Supabase CLI's way of splitting them."""
import shutil
import subprocess
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from fkrunbook.errors import MigrationError, MigrationFilesError
from fkrunbook.history import FILE_PATTERN, list_local
from fkrunbook.migration import ensure_migrations, load_migrations, next_versions, render_migrations, write_migrations
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.server import embedded_bin_dir
from fkrunbook.verify import verify_constraints

from .conftest import CROSS_SCHEMA, PROJECT, cross_schema_spec, team_spec

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


def test_the_verification_comment_names_each_key_that_does_not_cascade(spec):
    spec = replace(spec, foreign_keys=tuple(replace(fk, on_delete="set null") if fk.column == "consultant_org_id"
                                            else fk for fk in spec.foreign_keys))
    _, add, validate = render_migrations(spec)
    line = ("-- Verification (after all three steps): every row shows convalidated = t and confdeltype = 'c' "
            "(CASCADE), except 'n' (SET NULL) for cross_tenant_access_grants_projection_consultant_org_id_fkey.\n")
    assert line in add.sql and line in validate.sql


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


def test_the_files_name_a_parent_in_another_schema_by_its_schema(database, tmp_path):
    spec = cross_schema_spec()
    index, add, validate = render_migrations(spec)
    assert 'ON "public"."projects" ("account_id")' in index.sql
    assert ('ALTER TABLE "public"."projects" ADD CONSTRAINT "projects_account_id_fkey" FOREIGN KEY ("account_id") '
            'REFERENCES "basejump"."accounts" ("id") ON DELETE CASCADE NOT VALID') in add.sql
    assert "-- projects.account_id -> basejump.accounts.id (oversight): ON DELETE CASCADE" in add.sql
    for file in (add, validate):
        assert "AND con.confrelid = '\"basejump\".\"accounts\"'::regclass" in file.sql
        assert "confrelid = '\"basejump\".\"accounts\"'::regclass AND conname IN ('projects_account_id_fkey')" in file.sql
        assert '"public"."accounts"' not in file.sql
    database.sql(CROSS_SCHEMA)
    database.sql("DELETE FROM public.projects WHERE name LIKE 'orphan%'")
    for file in (index, add, validate):
        (tmp_path / file.filename).write_text(file.sql)
        for attempt in (1, 2):
            result = psql(database.url, tmp_path / file.filename)
            assert result.returncode == 0, (file.filename, attempt, result.stderr)
    assert database.sql("SELECT confrelid::regclass::text, convalidated FROM pg_constraint "
                        "WHERE conname = 'projects_account_id_fkey'") == [("basejump.accounts", True)]
    verify_constraints(database.connect(), spec)


# -- a spec without migration.version: its files are found in, or generated into, the team's folder ------
T = "cross_tenant_access_grants_projection"


def _state(folder):
    return {p.name: p.read_text() for p in sorted(folder.glob("*.sql"))}


def test_without_a_version_the_files_are_generated_once_with_cli_naming(tmp_path):
    spec = team_spec(tmp_path / "runbooks")
    folder = tmp_path / "supabase" / "migrations"
    before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
    files = ensure_migrations(spec, folder)
    versions = [datetime.strptime(f.version, "%Y%m%d%H%M%S") for f in files]
    assert versions[0] > before and versions[1:] == [versions[0] + timedelta(seconds=1),
                                                     versions[0] + timedelta(seconds=2)]
    assert [p.name for p in sorted(folder.glob("*.sql"))] == [f.filename for f in files]
    assert [f.name for f in files] == ["add_missing_org_fk_constraints_indexes", "add_missing_org_fk_constraints",
                                       "add_missing_org_fk_constraints_validate"]
    assert all(FILE_PATTERN.match(f.filename) for f in files)
    written = _state(folder)
    assert ensure_migrations(spec, folder) == files and _state(folder) == written  # found, not generated again
    assert write_migrations(spec, folder, check=True) == []
    assert load_migrations(spec, folder).files["validate"].filename == files[2].filename


def test_versions_step_in_real_time_and_pass_the_newest_file_and_remote_version(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    assert next_versions(folder, now=datetime(2026, 12, 31, 23, 59, 58, 500000, tzinfo=timezone.utc)) == [
        "20261231235959", "20270101000000", "20270101000001"]
    (folder / "20991231235958_future_dated.sql").write_text("SELECT 1;\n")
    assert next_versions(folder)[0] == "20991231235959"
    assert next_versions(folder, remote=["20250101000000", "20991231235959"])[0] == "21000101000000"
    with pytest.raises(MigrationError, match=r"version 999 \(in the database's .*\) is not a YYYYMMDDHHMMSS time"):
        next_versions(folder, remote=["999"])  # as text, '999' sorts after any timestamp


def test_the_version_is_newer_than_a_remote_only_version_and_a_future_file(database, tmp_path):
    spec = team_spec(tmp_path / "runbooks")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "20980101000000_future_dated.sql").write_text("SELECT 1;\n")
    database.sql("CREATE SCHEMA supabase_migrations; CREATE TABLE supabase_migrations.schema_migrations "
                 "(version text PRIMARY KEY, statements text[], name text); "
                 "INSERT INTO supabase_migrations.schema_migrations VALUES ('20991231235959', '{}', 'remote_only')")
    files = ensure_migrations(spec, folder, database.connect())
    assert [f.version for f in files] == ["21000101000000", "21000101000001", "21000101000002"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "20980101000000_future_dated.sql").write_text("SELECT 1;\n")
    assert ensure_migrations(spec, other)[0].version == "20980101000001"  # no database: the folder only


def test_each_index_takes_the_name_of_one_that_exists(database, tmp_path):
    spec = team_spec(tmp_path / "runbooks")
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "20250101000000_baseline.sql").write_text(
        f"CREATE INDEX IF NOT EXISTS idx_access_grants_provider_org ON public.{T} USING btree (provider_org_id);\n"
        f'CREATE INDEX CONCURRENTLY "idx_access_grants_consultant_org" ON ONLY "public"."{T}" (consultant_org_id);\n'
        f"CREATE INDEX partial_consultant ON {T} (consultant_org_id) WHERE status = 'active';\n")
    database.sql(f"CREATE INDEX live_provider ON {T} (provider_org_id, status)")
    database.sql(f"CREATE INDEX live_partial ON {T} (consultant_org_id) WHERE status = 'active'")
    index = ensure_migrations(spec, folder, database.connect())[0]
    assert index.sql.count("CREATE INDEX CONCURRENTLY IF NOT EXISTS") == 3
    assert ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "idx_impersonation_sessions_target_org" '
            'ON "public"."impersonation_sessions_projection" ("target_org_id")') in index.sql  # live
    assert f'IF NOT EXISTS "live_provider" ON "public"."{T}" ("provider_org_id")' in index.sql  # live beats the file
    assert f'IF NOT EXISTS "idx_access_grants_consultant_org" ON "public"."{T}" ("consultant_org_id")' in index.sql
    loaded = load_migrations(spec, folder)  # the names are read back from the file: it counts as unedited
    assert [fk.index for fk in loaded.spec.foreign_keys] == [
        "idx_impersonation_sessions_target_org", "live_provider", "idx_access_grants_consultant_org"]
    without_db = tmp_path / "without_db"
    shutil.copytree(folder, without_db)
    for path in without_db.glob("*_add_missing_*"):
        path.unlink()
    index = ensure_migrations(spec, without_db)[0]
    assert f'"idx_access_grants_provider_org" ON "public"."{T}"' in index.sql  # from the baseline file
    assert '"impersonation_sessions_projection_target_org_id_idx"' in index.sql  # nothing anywhere: the default


def test_the_specs_own_index_name_wins(database, tmp_path):
    spec = team_spec(tmp_path / "runbooks")
    fks = list(spec.foreign_keys)
    fks[1] = replace(fks[1], index="grants_provider_by_spec", index_given=True)
    spec = replace(spec, foreign_keys=tuple(fks))
    database.sql(f"CREATE INDEX live_provider ON {T} (provider_org_id)")
    index = ensure_migrations(spec, tmp_path / "m", database.connect())[0]
    assert '"grants_provider_by_spec"' in index.sql and "live_provider" not in index.sql


def test_a_hand_edited_file_is_refused_and_left_alone(tmp_path):
    spec = team_spec(tmp_path / "runbooks")
    folder = tmp_path / "migrations"
    add = ensure_migrations(spec, folder)[1]
    (folder / add.filename).write_text(add.sql.replace("NOT VALID;", ";"))
    written = _state(folder)
    for call in (lambda: ensure_migrations(spec, folder), lambda: load_migrations(spec, folder)):
        with pytest.raises(MigrationError) as err:
            call()
        assert str(err.value) == (f"migration file {add.filename} differs from what the spec generates; "
                                  "run `fkrunbook generate-migrations` (or revert the hand edit)")
    assert _state(folder) == written
    assert write_migrations(spec, folder, check=True) == [add.filename]


def test_two_sets_of_files_get_one_clear_line_and_nothing_changes(tmp_path):
    spec = team_spec(tmp_path / "runbooks")
    folder = tmp_path / "migrations"
    first = ensure_migrations(spec, folder)
    for f in first:
        (folder / f.filename.replace(f.version, str(int(f.version) + 100))).write_text(f.sql)
    written = _state(folder)
    for call in (lambda: ensure_migrations(spec, folder), lambda: load_migrations(spec, folder),
                 lambda: write_migrations(spec, folder)):
        with pytest.raises(MigrationFilesError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{folder} holds more than one set of migration files "
                                                          "for spec 'add_missing_org_fk_constraints' (")
        assert all(name in message for name in written) and "set migration.version in the spec" in message
    assert sorted(err.value.files) == list(written)
    assert _state(folder) == written


def test_part_of_a_set_gets_one_clear_line(tmp_path):
    spec = team_spec(tmp_path / "runbooks")
    folder = tmp_path / "migrations"
    files = ensure_migrations(spec, folder)
    (folder / files[2].filename).unlink()
    with pytest.raises(MigrationFilesError, match=r"holds only part of the migration files .* missing "
                                                  r"<version>_add_missing_org_fk_constraints_validate\.sql\); "
                                                  "restore the missing file"):
        ensure_migrations(spec, folder)


def test_a_fixed_version_names_the_files_and_existing_files_keep_their_index_names(database, tmp_path, spec):
    database.sql(f"CREATE INDEX live_provider ON {T} (provider_org_id)")
    files = ensure_migrations(spec, tmp_path / "m", database.connect())
    assert [f.filename for f in files] == [f.filename for f in render_migrations(spec)]
    assert "live_provider" in files[0].sql  # the default name is replaced by the live one ...
    assert load_migrations(spec, tmp_path / "m").spec.foreign_keys[1].index == "live_provider"  # ... and read back
    assert write_migrations(spec, MIGRATIONS, check=True, db=database.connect()) == []  # committed files keep theirs
