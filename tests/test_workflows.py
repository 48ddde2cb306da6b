"""The GitHub Actions workflows only run commands the CLI has, with options it accepts."""
import re
import shlex

import click
import pytest
import yaml

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
