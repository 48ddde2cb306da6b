"""The whole story in a team's repository: `fkrunbook init`, then the six phases from the
repository's root against a database whose history already holds the team's baseline; the real
Supabase CLI, run from the team's Supabase folder, agrees with the history afterwards, and the
team's own docs are updated in place with no stray file."""
import json
import os
import subprocess

import psycopg
from click.testing import CliRunner

from fkrunbook.cli import main

from .test_cli import FKRUNBOOK
from .test_project import tree
from .test_supabase_cli import run_cli, supabase  # noqa: F401 - the real CLI, as a fixture

SUPABASE = "infrastructure/supabase/supabase"
TABLES = "documentation/infrastructure/reference/database/tables"
BASELINE = "20250101000000_baseline.sql"


def team_repository_with_history(root, supabase_cli, url):
    """A team repository whose baseline migration (with its own covering index) is already pushed."""
    (root / SUPABASE / "migrations").mkdir(parents=True)
    code, out = run_cli(supabase_cli, root / "infrastructure" / "supabase", "init", "--force")
    assert code == 0, out
    (root / SUPABASE / "migrations" / BASELINE).write_text(
        "-- the team's baseline (the tables exist already in this test database)\n"
        "CREATE INDEX IF NOT EXISTS idx_access_grants_provider_org\n"
        "    ON public.cross_tenant_access_grants_projection USING btree (provider_org_id);\n")
    code, out = run_cli(supabase_cli, root / "infrastructure" / "supabase", "db", "push", "--db-url", url, "--yes")
    assert code == 0, out
    tables = root / TABLES
    tables.mkdir(parents=True)
    for table, column in (("impersonation_sessions_projection", "target_org_id"),
                          ("cross_tenant_access_grants_projection", "provider_org_id")):
        (tables / f"{table}.md").write_text(
            f"---\nstatus: current\nlast_updated: 2026-06-22\n---\n\n<!-- TL;DR-START -->\n## TL;DR\n\n"
            f"**Summary**: the {table} projection.\n<!-- TL;DR-END -->\n\n# {table}\n\n## Relationships\n\n"
            f"- **organizations_projection** → `{column}`\n  - Implicit foreign key (not enforced)\n")
    (root / "documentation" / "AGENT-INDEX.md").write_text(
        "---\nstatus: current\n---\n\n# Agent Navigation Index\n\n## By Keyword\n\n"
        "| Keyword | Primary Document | Related |\n|---|---|---|\n"
        "| `impersonation-sessions` | [impersonation_sessions_projection.md]"
        "(infrastructure/reference/database/tables/impersonation_sessions_projection.md) | security.md |\n")
    commands = root / ".claude" / "commands"
    commands.mkdir(parents=True)
    (commands / "org-cleanup.md").write_text("---\ndescription: \"Complete organization cleanup\"\n---\n\n"
                                             "# Organization Cleanup Workflow\n")
    (commands / "org-cleanup-dryrun.md").write_text("# Organization Cleanup Dry Run\n")
    return root


def test_init_then_six_phases_in_a_team_repository(supabase, database, tmp_path):  # noqa: F811
    root = team_repository_with_history(tmp_path / "team", supabase, database.url)
    result = CliRunner().invoke(main, ["init", "--root", str(root)])
    assert result.exit_code == 0, result.output
    before = tree(root)

    env = {**os.environ, "STAGING_DATABASE_URL": database.url}
    run = subprocess.run([FKRUNBOOK, "run", "--env", "staging", "--confirm", "--write-docs"], cwd=root / TABLES,
                         env=env, capture_output=True, text=True, timeout=900)  # found by walking up
    assert run.returncode == 0, run.stdout + run.stderr
    run_dir = (root / TABLES / run.stdout.splitlines()[-1].split("evidence: ")[1]).resolve()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    results = {p["name"]: p["results"] for p in manifest["phases"]}

    # the real CLI, from the team's Supabase folder: every version Local and Remote, nothing to push
    workdir = root / "infrastructure" / "supabase"
    code, listed = run_cli(supabase, workdir, "migration", "list", "--db-url", database.url)
    assert code == 0, listed
    versions = ["20250101000000"] + [name.split("_")[0] for name in results["apply"]["files_recorded"]]
    assert len(versions) == 4
    for version in versions:  # "  <version> | <version> | <time>": Local and Remote
        assert any(line.count(version) == 2 for line in listed.splitlines()), (version, listed)
    code, out = run_cli(supabase, workdir, "db", "push", "--dry-run", "--db-url", database.url)
    assert code == 0 and "Remote database is up to date" in out, out

    # the team's covering index is reused: one index on provider_org_id, the team's
    with psycopg.connect(database.url) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = i.indkey[0] WHERE i.indrelid = 'cross_tenant_access_grants_projection'::regclass "
            "AND a.attname = 'provider_org_id'").fetchall()]
    assert names == ["idx_access_grants_provider_org"]

    # every file that changed, and nothing else
    after = tree(root)
    changed = sorted(k for k in after if k in before and after[k] != before[k])
    added = sorted(k for k in set(after) - set(before) if not k.startswith(("fkrunbook/audit/", ".fkrunbook/")))
    assert changed == [".claude/commands/org-cleanup-dryrun.md", ".claude/commands/org-cleanup.md",
                       "documentation/AGENT-INDEX.md",
                       f"{TABLES}/cross_tenant_access_grants_projection.md",
                       f"{TABLES}/impersonation_sessions_projection.md"], changed
    migrations = [k for k in added if k.startswith(f"{SUPABASE}/migrations/")]
    assert len(migrations) == 3 and all(m.split("/")[-1][:14] > "20250101000000" for m in migrations)
    docs = sorted(set(added) - set(migrations))
    assert all(k.startswith("documentation/infrastructure/reference/database/") for k in docs), docs
    assert f"{TABLES}/organizations_projection.md" in docs
    for table in ("impersonation_sessions_projection", "cross_tenant_access_grants_projection"):
        text = (root / TABLES / f"{table}.md").read_text()
        assert text.startswith(before[f"{TABLES}/{table}.md"].decode().split("# ")[0])  # front matter kept
        assert "<!-- fkrunbook:begin" in text
    index = (root / "documentation" / "AGENT-INDEX.md").read_text()
    assert "(infrastructure/reference/database/tables/cross_tenant_access_grants_projection.md)" in index
    assert results["docs_update"]["stale_lines"] == 2  # "Implicit foreign key (not enforced)", now enforced


def test_rehearse_on_the_teams_own_schema_loaded_from_its_migrations(tmp_path):
    """`local reset --from-migrations --rows 0` builds the team's schema without rows, as a new
    environment is, then the whole runbook runs on it with a spec of the team's own."""
    import shutil

    import yaml

    from fkrunbook.server import stop_server

    from .test_cli import invoke
    from .test_compat import MIGRATIONS

    root = tmp_path / "team"
    root.mkdir()
    assert invoke("init", cwd=root).exit_code == 0
    shutil.copytree(MIGRATIONS, root / "supabase" / "migrations")
    spec_path = root / "fkrunbook" / "add_missing_org_fk_constraints.yaml"
    spec = yaml.safe_load(spec_path.read_text())  # this team has no cross-tenant grants table
    spec["foreign_keys"] = [fk for fk in spec["foreign_keys"] if fk["table"] == "impersonation_sessions_projection"]
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        loaded = invoke("local", "reset", "--from-migrations", "--rows", "0", cwd=root)
        assert loaded.exit_code == 0, loaded.output
        assert "no sample data (--rows 0): the schema only, as a new environment is" in loaded.stdout
        result = invoke("run", "--env", "local", "--confirm", cwd=root)
        assert result.exit_code == 0, result.output
    finally:
        stop_server(root / ".fkrunbook" / "local")
    run_dir = root / result.stdout.splitlines()[-1].split("evidence: ")[1]
    results = {p["name"]: p["results"] for p in json.loads((run_dir / "manifest.json").read_text())["phases"]}
    assert results["apply"]["files_recorded"] and results["cascade_validation"]["passed"]
    assert results["cascade_validation"]["blast_radius"]["organization"] is None  # nothing to measure yet
    assert "nothing to measure" in result.stdout
