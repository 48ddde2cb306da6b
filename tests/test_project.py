"""`fkrunbook init` in a team's repository: finds their layout, writes its three files and nothing
else, says what it found and what it assumed, and never overwrites without --force."""
from pathlib import Path

import pytest
from click.testing import CliRunner

from fkrunbook.cli import main
from fkrunbook.config import load_config


def team_repository(root: Path) -> Path:
    """A repository shaped like a real Supabase team's: the Supabase folder in a subfolder, nested
    table docs with front matter, a keyword index, procedures in a dot-folder, other noise."""
    supabase = root / "infrastructure" / "supabase" / "supabase"
    (supabase / "migrations").mkdir(parents=True)
    (supabase / "config.toml").write_text('project_id = "team"\n\n[db]\nmajor_version = 17\n')
    (supabase / "migrations" / "20250101000000_baseline.sql").write_text("SELECT 1;\n")
    tables = root / "documentation" / "infrastructure" / "reference" / "database" / "tables"
    tables.mkdir(parents=True)
    for table in ("organizations_projection", "impersonation_sessions_projection", "users"):
        (tables / f"{table}.md").write_text(f"---\nstatus: current\n---\n\n# {table}\n")
    (root / "documentation" / "AGENT-INDEX.md").write_text(
        "# Agent Navigation Index\n\n## By Keyword\n\n| Keyword | Primary Document | Related |\n|---|---|---|\n"
        "| `users` | [users.md](infrastructure/reference/database/tables/users.md) | auth.md |\n")
    commands = root / ".claude" / "commands"
    commands.mkdir(parents=True)
    (commands / "org-cleanup.md").write_text("# Organization Cleanup Workflow\n")
    (commands / "org-cleanup-dryrun.md").write_text("# Organization Cleanup Dry Run\n")
    (root / "frontend" / "node_modules" / "x" / "supabase").mkdir(parents=True)  # a vendored copy: ignored
    (root / "frontend" / "node_modules" / "x" / "supabase" / "config.toml").write_text("")
    (root / "README.md").write_text("team\n")
    return root


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def init(root: Path, *args):
    return CliRunner().invoke(main, ["init", "--root", str(root), *args])


def test_init_finds_the_teams_layout_and_writes_only_its_files(tmp_path):
    root = team_repository(tmp_path / "team")
    before = tree(root)
    result = init(root)
    assert result.exit_code == 0, result.output
    after = tree(root)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing of the team's changed
    assert sorted(set(after) - set(before)) == [
        "fkrunbook.toml", "fkrunbook/add_missing_org_fk_constraints.yaml", "fkrunbook/environments.yaml"]
    assert "found:   Supabase folder infrastructure/supabase/supabase (config.toml, 1 migration file(s))" in result.output
    assert "found:   keyword index documentation/AGENT-INDEX.md" in result.output
    assert ".claude/commands/org-cleanup-dryrun.md" in result.output and "assumed: new docs" in result.output
    config = load_config(root)
    assert config.migrations == root.resolve() / "infrastructure/supabase/supabase/migrations"
    assert config.docs.table_doc("users") == root.resolve() / "documentation/infrastructure/reference/database/tables/users.md"
    assert config.docs.index == root.resolve() / "documentation/AGENT-INDEX.md"
    assert [p.name for p in config.docs.procedure_files()] == ["org-cleanup-dryrun.md", "org-cleanup.md"]
    assert config.docs.new == root.resolve() / "documentation/infrastructure/reference/database"
    spec = (root / "fkrunbook" / "add_missing_org_fk_constraints.yaml").read_text()
    assert "version:" not in spec and "impersonation_sessions_projection" in spec


def test_init_refuses_to_overwrite_without_force(tmp_path):
    root = team_repository(tmp_path / "team")
    assert init(root).exit_code == 0
    (root / "fkrunbook.toml").write_text((root / "fkrunbook.toml").read_text() + "# the team's edit\n")
    before = tree(root)
    result = init(root)
    assert result.exit_code == 1 and "already exist" in result.output and "--force" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert tree(root) == before
    assert init(root, "--force").exit_code == 0
    assert "# the team's edit" not in (root / "fkrunbook.toml").read_text()


def test_init_overrides_each_detection(tmp_path):
    root = team_repository(tmp_path / "team")
    (root / "db").mkdir()
    result = init(root, "--supabase-dir", "db", "--table-docs", "wiki/tables/{table}.md", "--docs-new", "wiki",
                  "--index", "wiki/INDEX.md", "--procedures", "ops/*.md", "--runbook-dir", "ops/fkrunbook")
    assert result.exit_code == 0, result.output
    config = load_config(root)
    assert config.supabase_dir == root.resolve() / "db"
    assert config.docs.table_doc("t") == root.resolve() / "wiki/tables/t.md"
    assert config.docs.index == root.resolve() / "wiki/INDEX.md" and config.docs.procedures == ("ops/*.md",)
    assert config.spec == root.resolve() / "ops/fkrunbook/add_missing_org_fk_constraints.yaml"


def test_init_in_an_empty_folder_says_what_it_assumed(tmp_path):
    result = init(tmp_path)
    assert result.exit_code == 0, result.output
    assert "assumed: Supabase folder supabase/" in result.output
    assert "assumed: no keyword index" in result.output and "assumed: no org clean-up procedures" in result.output
    assert load_config(tmp_path).docs.table_doc("t") == tmp_path.resolve() / "docs/schema/tables/t.md"


def test_init_with_github_ci_writes_the_two_workflows(tmp_path):
    root = team_repository(tmp_path / "team")
    result = init(root, "--ci", "github", "--pip-spec", "fkrunbook==0.1.0")
    assert result.exit_code == 0, result.output
    workflows = sorted(p.name for p in (root / ".github" / "workflows").iterdir())
    assert workflows == ["fkrunbook-orphan-detection.yml", "fkrunbook-pr.yml"]
    assert "infrastructure/supabase/supabase/migrations/**" in (root / ".github/workflows/fkrunbook-pr.yml").read_text()


@pytest.mark.parametrize("args, expected", [
    (["--supabase-dir", "nope"], "--supabase-dir 'nope' is not a folder"),
    (["--table-docs", "docs/tables.md"], "--table-docs 'docs/tables.md' must contain {table}"),
])
def test_init_bad_flags_get_one_line_and_write_nothing(tmp_path, args, expected):
    root = team_repository(tmp_path / "team")
    before = tree(root)
    result = init(root, *args)
    assert result.exit_code == 1 and expected in result.output and len(result.output.strip().splitlines()) == 1
    assert tree(root) == before
