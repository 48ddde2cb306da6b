"""fkrunbook.toml: found by walking up, every path from one place, one clear line for each mistake."""
import pytest

from fkrunbook.config import find_config, load_config
from fkrunbook.errors import ConfigError

from .conftest import PROJECT

TEAM = """
[supabase]
dir = "infrastructure/supabase/supabase"

[runbook]
specs = ["fkrunbook/a.yaml", "fkrunbook/b.yaml"]
environments = "fkrunbook/environments.yaml"
evidence = "fkrunbook/audit"

[docs]
table = "documentation/db/tables/{table}.md"
new = "documentation/db"
index = "documentation/AGENT-INDEX.md"
procedures = [".claude/commands/org-cleanup*.md"]
"""


def test_config_found_by_walking_up_from_a_subfolder(tmp_path):
    (tmp_path / "fkrunbook.toml").write_text(TEAM)
    deep = tmp_path / "documentation" / "db" / "tables"
    deep.mkdir(parents=True)
    config = find_config(deep)
    assert config.root == tmp_path.resolve() and config.path == (tmp_path / "fkrunbook.toml").resolve()
    assert config.migrations == tmp_path.resolve() / "infrastructure/supabase/supabase/migrations"
    assert config.spec == tmp_path.resolve() / "fkrunbook/a.yaml"
    assert config.resolve_spec("b") == tmp_path.resolve() / "fkrunbook/b.yaml"
    assert config.docs.table_doc("users") == tmp_path.resolve() / "documentation/db/tables/users.md"
    assert config.docs.may_create(tmp_path / "documentation/db/graph.md")
    assert not config.docs.may_create(tmp_path / "elsewhere/graph.md")


def test_config_procedure_globs_include_dot_folders(tmp_path):
    (tmp_path / "fkrunbook.toml").write_text(TEAM)
    commands = tmp_path / ".claude" / "commands"
    commands.mkdir(parents=True)
    for name in ("org-cleanup.md", "org-cleanup-dryrun.md", "other.md"):
        (commands / name).write_text("x")
    found = load_config(tmp_path).docs.procedure_files()
    assert [p.name for p in found] == ["org-cleanup-dryrun.md", "org-cleanup.md"]


def test_config_copy_in_a_run_folder_points_back_at_the_repository(tmp_path):
    (tmp_path / "fkrunbook.toml").write_text(TEAM)
    config = load_config(tmp_path)
    run_dir = config.evidence / "local" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "fkrunbook.toml").write_text(config.to_toml(run_dir))
    again = load_config(run_dir / "fkrunbook.toml")
    assert (again.root, again.migrations, again.specs, again.environments, again.evidence) == (
        config.root, config.migrations, config.specs, config.environments, config.evidence)
    assert again.docs == config.docs
    moved = config.with_docs_under(tmp_path / "demo")
    (run_dir / "fkrunbook.toml").write_text(moved.to_toml(run_dir))
    assert load_config(run_dir / "fkrunbook.toml").docs.table_doc("t") == (tmp_path / "demo/documentation/db/tables/t.md")


def test_this_repository_carries_its_own_config():
    config = load_config(PROJECT)
    assert config.spec.is_file() and config.environments.is_file() and config.migrations.is_dir()


@pytest.mark.parametrize("text, expected", [
    ("[runbook]\nspecs = []\n", "[runbook] specs is empty"),
    ("[runbook]\nspecs = ['a.yaml']\n[docs]\ntable = 'docs/x.md'\n", "must contain {table}"),
    ("[runbook]\nspecs = ['a.yaml']\n[docs]\ntable = 'docs/{table}/{col}.md'\n", "only the placeholder {table}"),
    ("[runbook]\nspecs = ['a.yaml']\n[suapbase]\ndir = 'x'\n", "unknown section [suapbase]"),
    ("[runbook]\nspecs = ['a.yaml']\nevidnce = 'x'\n", "unknown key 'evidnce'"),
    ("[runbook]\nspecs = ['a.yaml']\nevidnce = 'x'\n[docs]\n", "unknown key 'evidnce'"),
    ("[runbook]\nspecs = ['a.yaml'\n", "is not valid TOML"),
    ("[runbook]\nspecs = [1]\n", "[runbook] specs must be a list of strings"),
])
def test_config_mistakes_get_one_clear_line(tmp_path, text, expected):
    (tmp_path / "fkrunbook.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_config_missing_says_to_run_init(tmp_path):
    with pytest.raises(ConfigError, match="no fkrunbook.toml at or above .*fkrunbook init"):
        find_config(tmp_path)
