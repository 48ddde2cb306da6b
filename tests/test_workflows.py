"""The GitHub Actions workflows only run commands the CLI has, with options it accepts."""
import re
import shlex

import click
import pytest
import yaml

from fkrunbook.audit import FIX
from fkrunbook.cli import main

from .conftest import PROJECT

WORKFLOWS = sorted((PROJECT / ".github" / "workflows").glob("*.yml"))


def _commands(workflow):
    data = yaml.safe_load(workflow.read_text())
    for job in data["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").splitlines():
                if line.strip():
                    yield shlex.split(line)


def _check(argv):
    command, args = main, list(argv)
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        name = args.pop(0)
        assert name in command.commands, f"no command {name!r} in {' '.join(argv)}"
        command = command.commands[name]
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for arg in args:
        if arg.startswith("-"):
            assert arg.split("=")[0] in options, f"{command.name} has no option {arg} ({' '.join(argv)})"


def test_there_is_a_pull_request_and_a_scheduled_workflow():
    triggers = [yaml.safe_load(w.read_text())[True] for w in WORKFLOWS]  # YAML reads the key 'on' as True
    assert any("pull_request" in t for t in triggers) and any("schedule" in t for t in triggers)


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_every_command_in_the_workflow_exists_with_its_options(workflow):
    makefile = (PROJECT / "Makefile").read_text()
    seen = 0
    for argv in _commands(workflow):
        if argv[0].endswith("fkrunbook"):
            _check(argv[1:])
            seen += 1
        elif argv[0] == "make":
            assert re.search(rf"^{argv[1]}:", makefile, re.M), f"no make target {argv[1]}"
        else:
            pytest.fail(f"unexpected command in {workflow.name}: {argv}")
    assert seen >= 2


def test_the_workflow_check_catches_a_missing_option():
    with pytest.raises(AssertionError, match="has no option --frobnicate"):
        _check(["run", "--env", "staging", "--frobnicate"])
    with pytest.raises(AssertionError, match="no command 'nope'"):
        _check(["nope"])


def test_the_workflows_init_writes_use_the_teams_paths_and_real_commands(tmp_path):
    from fkrunbook.workflows import render_workflows

    rendered = render_workflows("ops/fkrunbook", "infrastructure/supabase/supabase", "fkrunbook==0.1.0")
    assert set(rendered) == {"fkrunbook-pr.yml", "fkrunbook-orphan-detection.yml"}
    triggers = []
    for name, text in rendered.items():
        path = tmp_path / name
        path.write_text(text)
        data = yaml.safe_load(text)
        triggers.append(data[True])
        steps = [s for job in data["jobs"].values() for s in job["steps"]]
        assert any(s.get("with", {}).get("path") == "ops/fkrunbook/audit/" for s in steps), name
        seen = 0
        for argv in _commands(path):
            if argv[0] == "fkrunbook":
                _check(argv[1:])
                seen += 1
            else:
                assert argv[:2] == ["pip", "install"] and argv[2] == "fkrunbook==0.1.0", argv
        assert seen >= 2
    assert "infrastructure/supabase/supabase/migrations/**" in triggers[0]["pull_request"]["paths"]
    assert any("schedule" in t for t in triggers)


def test_the_pull_request_workflow_gates_on_the_teams_own_schema(tmp_path):
    """The steps `init --ci github` writes, run in order in a team's repository: the schema comes
    from the team's migrations (the runbook's files included), the audit gate passes on it; a
    later migration adding an organization column without a key makes the gate fail."""
    from fkrunbook.server import stop_server

    from .rehearse import local_bin_dir, team_repository
    from .test_cli import invoke

    root = team_repository("event_store", "18", tmp_path / "team", "--ci", "github")
    assert invoke("generate-migrations", cwd=root).exit_code == 0  # the runbook's files, committed with the PR
    steps = [shlex.split(line) for line in _commands_of(root / ".github" / "workflows" / "fkrunbook-pr.yml")]
    fkrunbook = [argv[1:] for argv in steps if argv[0] == "fkrunbook"]
    assert ["local", "reset", "--from-migrations"] in fkrunbook
    gate_step = ["audit", "--env", "local", "--format", "github"]
    assert fkrunbook.index(["local", "reset", "--from-migrations"]) < fkrunbook.index(gate_step)
    summary = tmp_path / "step-summary.md"
    try:
        for argv in fkrunbook:
            result = invoke(*argv, cwd=root, env={"GITHUB_STEP_SUMMARY": str(summary)})
            assert result.exit_code == 0, f"{' '.join(argv)}: {result.output}"
        assert "### fkrunbook FK audit: PASS" in summary.read_text()
        (root / "supabase" / "migrations" / "29990101000000_notes.sql").write_text(
            "create table public.notes (id uuid primary key, organization_id uuid not null, body text);\n")
        assert invoke("local", "reset", "--from-migrations", cwd=root).exit_code == 0
        gate = invoke(*gate_step, cwd=root, env={"GITHUB_STEP_SUMMARY": str(summary)})
        assert gate.exit_code == 1, gate.output
        errors = [line for line in gate.stdout.splitlines() if line.startswith("::error ")]
        assert errors == ["::error title=fkrunbook audit%3A missing_fk (UNDECLARED)::public.notes.organization_id: "
                          "uuid organization reference with no foreign key to public.organizations_projection, direct "
                          "or through a composite key. Fix: " + FIX["missing_fk"]]
        assert any(line.startswith("::notice title=fkrunbook audit%3A blocking_delete (accepted until 2099-12-31)::")
                   for line in gate.stdout.splitlines())
        table = summary.read_text().split("### fkrunbook FK audit: FAIL")[1]
        assert "| **fails the gate** | `missing_fk` | `public.notes.organization_id` |" in table
    finally:
        stop_server(root / ".fkrunbook" / "local", local_bin_dir(root))


def _commands_of(workflow):
    data = yaml.safe_load(workflow.read_text())
    return [line for job in data["jobs"].values() for step in job["steps"]
            for line in step.get("run", "").splitlines() if line.strip()]
