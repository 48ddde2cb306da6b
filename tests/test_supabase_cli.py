"""Interop with the real Supabase CLI (npm supabase@2.117.0): the history the runbook writes is the
history the CLI expects, and files the CLI applies are seen by the runbook as applied.

Skipped only where Node.js is absent. The CLI is taken from .cache/supabase-cli (where .ci/run
installs it) and installed there with npm if missing.
"""
import fcntl
import os
import shutil
import subprocess

import pytest

from fkrunbook.executor import apply_plan
from fkrunbook.migration import ensure_migrations
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.plan import plan_migration
from fkrunbook.verify import verify_constraints

from .conftest import PROJECT, team_spec
from .test_migration import MIGRATIONS

VERSION = "2.117.0"
CACHE = PROJECT / ".cache" / "supabase-cli"


@pytest.fixture(scope="session")
def supabase():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("Node.js and npm are not installed: the Supabase CLI comes from npm")
    binary = CACHE / "node_modules" / ".bin" / "supabase"
    CACHE.mkdir(parents=True, exist_ok=True)
    folder = os.open(CACHE, os.O_RDONLY)
    try:  # parallel test workers: one installs, the others wait on the folder's lock
        fcntl.flock(folder, fcntl.LOCK_EX)
        if not binary.exists():
            subprocess.run(["npm", "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "-E",
                            f"supabase@{VERSION}"], check=True, capture_output=True, timeout=600)
    finally:
        os.close(folder)  # releases the lock
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert version == VERSION
    return binary


@pytest.fixture
def workdir(tmp_path):
    """A team repository as the CLI sees it: supabase/migrations with the runbook's files."""
    (tmp_path / "supabase").mkdir()
    shutil.copytree(MIGRATIONS, tmp_path / "supabase" / "migrations")
    return tmp_path


def run_cli(supabase, workdir, *args):
    env = {**os.environ, "SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"}
    result = subprocess.run([str(supabase), *args], cwd=workdir, env=env, capture_output=True, text=True,
                            timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_after_the_runbooks_apply_the_cli_sees_every_version_applied(supabase, workdir, database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    code, out = run_cli(supabase, workdir, "migration", "list", "--db-url", database.url)
    assert code == 0, out
    for version in ("20261126120000", "20261126120001", "20261126120002"):
        row = next(line for line in out.splitlines() if version in line)
        assert row.count(version) == 2, row  # Local and Remote
    code, out = run_cli(supabase, workdir, "db", "push", "--dry-run", "--db-url", database.url)
    assert code == 0 and "Remote database is up to date." in out, out


def test_before_apply_the_cli_would_push_all_three_files(supabase, workdir, database):
    code, out = run_cli(supabase, workdir, "db", "push", "--dry-run", "--db-url", database.url)
    assert code == 0, out
    assert "Would push these migrations:" in out
    assert [line.strip() for line in out.splitlines() if line.strip().startswith("•")] == [
        f"• {p.name}" for p in sorted(MIGRATIONS.glob("*.sql"))]


def test_after_the_cli_pushed_the_files_the_runbook_sees_nothing_pending(supabase, workdir, database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    code, out = run_cli(supabase, workdir, "db", "push", "--yes", "--db-url", database.url)
    assert code == 0, out
    plan = plan_migration(db, spec, MIGRATIONS)
    assert plan.pending == [] and set(plan.statements["action"]) == {"skip"}
    assert verify_constraints(db, spec)["ok"].all()
    assert database.sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]


def test_the_cli_refuses_to_push_the_validate_file_over_late_orphans(supabase, workdir, database, spec):
    code, out = run_cli(supabase, workdir, "db", "push", "--yes", "--db-url", database.url)
    assert code != 0 and "violates foreign key constraint" in out
    versions = [v for (v,) in database.sql("SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1")]
    assert versions == ["20261126120000", "20261126120001"]
    plan = plan_migration(database.connect(), spec, MIGRATIONS)
    assert [m.filename for m in plan.pending] == ["20261126120002_add_missing_org_fk_constraints_validate.sql"]


# -- a team's repository: its Supabase folder elsewhere, a baseline already recorded by the CLI -------------
GRANTS = "public.cross_tenant_access_grants_projection"
BASELINE = ("-- The team's baseline: its own indexes on the grants' organization columns.\n"
            f"CREATE INDEX IF NOT EXISTS idx_access_grants_provider_org ON {GRANTS} USING btree (provider_org_id);\n"
            f"CREATE INDEX IF NOT EXISTS idx_access_grants_consultant_org ON {GRANTS} (consultant_org_id);\n")


@pytest.fixture
def team(supabase, database, tmp_path):
    """infrastructure/supabase/supabase/ (config.toml from `supabase init`, migrations/ with a baseline
    that the real CLI has pushed) and a spec without migration.version or `index:` names."""
    root = tmp_path / "team" / "infrastructure" / "supabase"
    root.mkdir(parents=True)
    code, out = run_cli(supabase, root, "init")
    assert code == 0 and (root / "supabase" / "config.toml").exists(), out
    migrations = root / "supabase" / "migrations"
    migrations.mkdir()  # CLI 2.117's init no longer creates it
    (migrations / "20250101000000_baseline.sql").write_text(BASELINE)
    code, out = run_cli(supabase, root, "db", "push", "--yes", "--db-url", database.url)
    assert code == 0, out
    assert database.sql("SELECT version FROM supabase_migrations.schema_migrations") == [("20250101000000",)]
    return root, migrations, team_spec(tmp_path / "team" / "runbooks")


def _indexes_leading_with(database, column):
    return [name for (name,) in database.sql(
        "SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s::regclass AND a.attname = %s ORDER BY 1",
        (GRANTS, column))]


def test_in_a_team_repository_the_generated_files_land_in_its_folder_and_the_cli_agrees(
        supabase, database, team, tmp_path):
    root, migrations, spec = team
    db = database.connect()
    files = ensure_migrations(spec, migrations, db)
    assert sorted(p.name for p in migrations.glob("*.sql")) == ["20250101000000_baseline.sql"] + [
        f.filename for f in files]
    assert all(f.version > "20250101000000" for f in files)
    index = files[0].sql
    for column, name in (("provider_org_id", "idx_access_grants_provider_org"),
                         ("consultant_org_id", "idx_access_grants_consultant_org")):
        assert (f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" '
                f'ON "public"."cross_tenant_access_grants_projection" ("{column}")') in index
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    applied = apply_plan(db, spec, migrations, {})
    assert applied.recorded == [f.filename for f in files]
    assert _indexes_leading_with(database, "provider_org_id") == ["idx_access_grants_provider_org"]
    assert _indexes_leading_with(database, "consultant_org_id") == ["idx_access_grants_consultant_org"]
    code, out = run_cli(supabase, root, "migration", "list", "--db-url", database.url)
    assert code == 0, out
    for version in ["20250101000000"] + [f.version for f in files]:
        row = next(line for line in out.splitlines() if version in line)
        assert row.count(version) == 2, row  # Local and Remote
    code, out = run_cli(supabase, root, "db", "push", "--dry-run", "--db-url", database.url)
    assert code == 0 and "Remote database is up to date." in out, out
    assert verify_constraints(db, spec)["ok"].all()


def test_in_a_team_repository_files_the_cli_pushed_leave_nothing_pending(supabase, database, team, tmp_path):
    root, migrations, spec = team
    db = database.connect()
    files = ensure_migrations(spec, migrations, db)
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    code, out = run_cli(supabase, root, "db", "push", "--yes", "--db-url", database.url)
    assert code == 0 and all(f.filename in out for f in files), out
    plan = plan_migration(db, spec, migrations)
    assert plan.pending == [] and set(plan.statements["action"]) == {"skip"}
    assert list(plan.files["state"]) == ["applied"] * 4
    assert _indexes_leading_with(database, "provider_org_id") == ["idx_access_grants_provider_org"]
    assert ensure_migrations(spec, migrations, db) == files  # found again, nothing new generated
