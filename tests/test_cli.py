"""The CLI as a user types it: one clear line and a non-zero exit for every mistake, nothing changed.

``cli`` runs the installed console script in a process of its own (where the process boundary is
what a test is about: exit status, output, signals); ``invoke`` runs the same command in-process
with click's CliRunner, which is much cheaper for mistakes caught before anything runs."""
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fkrunbook.cli import main
from fkrunbook.evidence import find_run
from fkrunbook.phase import PHASES

from .conftest import schema_state

FKRUNBOOK = str(Path(sys.executable).parent / "fkrunbook")


def cli(*args, cwd, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([FKRUNBOOK, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)


def invoke(*args, cwd, env=None):
    """``fkrunbook ARGS`` in this process, from ``cwd``, with ``env`` added to the environment.
    An exception other than the exit the CLI chooses is re-raised, so a crash is never mistaken
    for a handled error."""
    with contextlib.chdir(cwd):
        result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.parametrize("args, env, expected", [
    (["run", "--env", "stagng"], {}, "environment 'stagng' is not defined; known: local, staging, production"),
    (["run", "--env", "staging"], {"STAGING_DATABASE_URL": ""},
     "environment variable STAGING_DATABASE_URL is not set; export it"),
    (["run", "--env", "staging"], {"STAGING_DATABASE_URL": "postgresql://app:pa55-secret@127.0.0.1:1/db?sslmode=disable"},
     "cannot connect to environment 'staging'"),
    (["run", "--env", "staging", "--spec", "runbooks/missing.yaml"], {},
     "spec file 'runbooks/missing.yaml' does not exist; pass --spec"),
    (["run", "--env", "staging", "--phase", "orphan_chek"], {},
     f"phase 'orphan_chek' does not exist; known, in order: {', '.join(PHASES)}"),
])
def test_cli_mistakes_get_one_clear_line_and_change_nothing(project_copy, database, args, env, expected):
    before = schema_state(database.url)
    env = {"STAGING_DATABASE_URL": database.url, **env}
    result = invoke(*args, cwd=project_copy, env=env)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"fkrunbook: error: {result.stderr.split('error: ', 1)[1].strip()}"]
    assert expected in result.stderr
    assert "pa55-secret" not in result.stderr + result.stdout
    assert not (project_copy / "audit").exists()
    assert schema_state(database.url) == before


def test_the_console_script_exits_1_with_one_line_on_stderr_and_nothing_on_stdout(project_copy):
    """The process boundary itself, once: the installed ``fkrunbook`` script's exit status and streams."""
    result = cli("run", "--env", "stagng", cwd=project_copy)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("fkrunbook: error: environment 'stagng' is not defined; known: local, staging, "
                             "production\n")


def test_cli_outside_a_project_says_where_to_run(tmp_path):
    result = invoke("run", "--env", "local", cwd=tmp_path)
    assert result.exit_code == 1 and "no fkrunbook.toml at or above" in result.stderr and "fkrunbook init" in result.stderr


def test_cli_runs_a_phase_and_prints_the_evidence_path(project_copy, database, sample):
    result = cli("run", "--env", "staging", "--phase", "orphan_check", cwd=project_copy,
                 env={"STAGING_DATABASE_URL": database.url})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[1/1] orphan_check ..."
    assert f"orphans: {sum(sample.orphans.values())}" in lines[1]
    assert lines[-1].startswith("run ") and "succeeded; evidence: audit/staging/" in lines[-1]
    assert database.url not in result.stdout + result.stderr


def test_cli_failed_phase_exits_non_zero_with_the_notebook_path(project_copy, database):
    result = cli("run", "--env", "staging", "--phase", "apply", cwd=project_copy,
                 env={"STAGING_DATABASE_URL": database.url})
    assert result.returncode == 1
    assert "fkrunbook: error: phase apply failed: OrphansPresentError" in result.stderr
    assert "04_apply.ipynb" in result.stderr


def test_generate_migrations_check_passes_on_the_committed_files(project_copy):
    result = invoke("generate-migrations", "--check", cwd=project_copy)
    assert result.exit_code == 0 and "match the spec" in result.stdout
    (project_copy / "supabase" / "migrations" / "20261126120001_add_missing_org_fk_constraints.sql").write_text("--\n")
    result = invoke("generate-migrations", "--check", cwd=project_copy)
    assert result.exit_code == 1 and "differ from the spec" in result.stderr


def test_every_command_has_help_with_an_example():
    import click
    from click.testing import CliRunner

    from fkrunbook.cli import main

    def leaves(group, path):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from leaves(command, path + [name])
            else:
                yield path + [name]

    paths = list(leaves(main, []))
    assert len(paths) >= 11
    for path in paths:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0 and "Example: fkrunbook " in result.output, path


def test_cli_rejects_an_injected_identifier_before_anything_runs(project_copy, database):
    spec = project_copy / "runbooks" / "add_missing_org_fk_constraints.yaml"
    spec.write_text(spec.read_text().replace("table: impersonation_sessions_projection",
                                             "table: impersonation_sessions_projection; drop table y", 1))
    before = schema_state(database.url)
    result = invoke("run", "--env", "staging", cwd=project_copy, env={"STAGING_DATABASE_URL": database.url})
    assert result.exit_code == 1 and len(result.stderr.splitlines()) == 1
    assert "'impersonation_sessions_projection; drop table y' is not a plain PostgreSQL identifier" in result.stderr
    assert not (project_copy / "audit").exists() and schema_state(database.url) == before


def test_cli_summary_table_and_archive_commands(project_copy, database):
    env = {"STAGING_DATABASE_URL": database.url}
    result = cli("run", "--env", "staging", "--phase", "orphan_check", "--phase", "migration_preview",
                 cwd=project_copy, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("phase "))
    assert out[header + 1].startswith("orphan_check       succeeded")
    assert out[header + 2].startswith("migration_preview  succeeded") and "plan_hash: " in out[header + 2]
    assert out[header + 3].startswith("report: audit/staging/") and "chain #1" in out[header + 3]
    quiet = cli("run", "--env", "staging", "--phase", "orphan_check", "--quiet", cwd=project_copy, env=env)
    assert quiet.returncode == 0 and len(quiet.stdout.splitlines()) == 1

    listing = invoke("archive", "list", cwd=project_copy)
    assert listing.exit_code == 0 and len(listing.stdout.splitlines()) == 3  # header and two runs
    run_id = listing.stdout.splitlines()[1].split()[0]
    shown = invoke("archive", "show", run_id, cwd=project_copy)
    assert shown.exit_code == 0 and f'"run_id": "{run_id}"' in shown.stdout
    assert json.loads(shown.stdout)["run_id"] == run_id
    assert f"manifest sha256 {find_run(project_copy / 'audit', run_id).manifest_sha256}" in shown.stderr
    assert invoke("archive", "show", "nope", cwd=project_copy).exit_code == 1
    verified = invoke("archive", "verify", "staging", cwd=project_copy)
    assert verified.exit_code == 0 and "2 sealed run(s) verified" in verified.stdout
    (project_copy / "audit" / "staging" / run_id / "01_orphan_check.html").write_text("<p>rewritten</p>")
    tampered = invoke("archive", "verify", cwd=project_copy)
    assert tampered.exit_code == 1
    assert f"staging/{run_id}: file 01_orphan_check.html changed" in tampered.stdout
    assert "the evidence was altered" in tampered.stderr


def test_cli_protected_environment_apply_needs_the_previewed_hash(project_copy, database, spec, tmp_path):
    from fkrunbook.orphans import clean_up_orphans

    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    env = {"PRODUCTION_DATABASE_URL": database.url}  # production is protected in the project's environments
    before = schema_state(database.url)
    refused = invoke("run", "--env", "production", "--phase", "apply", cwd=project_copy, env=env)
    assert refused.exit_code == 1 and "needs --approve PLAN_HASH" in refused.stderr
    assert "fkrunbook run --env production --phase migration_preview" in refused.stderr
    assert schema_state(database.url) == before
    preview = cli("run", "--env", "production", "--phase", "migration_preview", cwd=project_copy, env=env)
    run_id = preview.stdout.splitlines()[-1].split()[1]
    plan_hash = json.loads((project_copy / "audit" / "production" / run_id / "manifest.json").read_text())["plan_hash"]
    applied = cli("run", "--env", "production", "--phase", "apply", "--approve", plan_hash, cwd=project_copy, env=env)
    assert applied.returncode == 0, applied.stderr
    assert len(schema_state(database.url)["fks"]) == 3
