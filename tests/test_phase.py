"""The phase registry: one declaration per phase, from which the CLI's flags and checks derive."""
import pytest

from fkrunbook.cli import run
from fkrunbook.errors import PhaseParameterError
from fkrunbook.phase import PHASES, READ_ONLY_PHASES, check_parameters, phase_parameters, runner_command


def test_registry_gives_each_phase_its_own_parameters():
    given = check_parameters(list(PHASES), {"confirm": True, "approve": "abc", "write": True, "previewed": "x"})
    assert given["orphan_cleanup"] == {"confirm": True, "approve": "abc"}
    assert given["apply"] == {"approve": "abc", "previewed": "x"}
    assert given["docs_update"] == {"write": True} and given["orphan_check"] == {}
    assert READ_ONLY_PHASES == {"orphan_check", "migration_preview", "docs_update"}


def test_cli_flags_are_the_registrys_and_runner_only_ones_stay_hidden():
    options = {opt for param in run.params for opt in getattr(param, "opts", [])}
    for name, (parameter, _) in phase_parameters().items():
        assert (parameter.option in options) == parameter.cli, name
    assert "--write-docs" in options and "--previewed" not in options


@pytest.mark.parametrize("phases, parameters, message", [
    (["orphan_check"], {"confrim": True}, "no phase takes a parameter 'confrim'"),
    (["orphan_check"], {"sample_size": "5"}, "--sample-size must be int, not str"),
    (["orphan_check"], {"sample_size": True}, "--sample-size must be int, not bool"),
    (["orphan_check"], {"write": True}, "--write-docs applies to the docs_update phase, which this run does not include"),
    (["orphan_check"], {"approve": "h"}, "--approve applies to the apply or orphan_cleanup phase"),
])
def test_registry_refuses_bad_parameters_with_one_line(phases, parameters, message):
    with pytest.raises(PhaseParameterError) as info:
        check_parameters(phases, parameters)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("phase, values, command", [
    ("orphan_cleanup", {"confirm": True, "approve": "ab12"},
     "fkrunbook run --env staging --phase orphan_cleanup --confirm --approve ab12"),
    ("orphan_cleanup", {"confirm": False}, "fkrunbook run --env staging --phase orphan_cleanup"),
    ("apply", {"approve": "", "previewed": "x"}, "fkrunbook run --env staging --phase apply"),  # runner-only hidden
    ("docs_update", {"write": True}, "fkrunbook run --env staging --phase docs_update --write-docs"),
    ("orphan_check", {"sample_size": 10}, "fkrunbook run --env staging --phase orphan_check --sample-size 10"),
])
def test_runner_command_gives_a_notebooks_parameters_as_the_registrys_flags(phase, values, command):
    assert runner_command(phase, "staging", values) == command


def test_runner_command_quotes_what_a_shell_would_split():
    assert runner_command("cascade_validation", "staging", {"blast_org": "acme corp"}, spec="my spec.yaml") == (
        "fkrunbook run --env staging --phase cascade_validation --blast-org 'acme corp' --spec 'my spec.yaml'")


@pytest.mark.parametrize("phase", sorted(set(PHASES) - READ_ONLY_PHASES))
def test_start_outside_the_runner_refuses_a_writing_phase_off_local_before_connecting(phase, tmp_path, monkeypatch):
    """No database is reachable here at all: the refusal comes first, and nothing is written."""
    from fkrunbook.errors import InteractiveChangeRefusedError
    from fkrunbook.phase import RUNNER_ENV, start

    from .conftest import ENVIRONMENTS_YAML, PROJECT, project_config, write_config

    (tmp_path / "environments.yaml").write_text(ENVIRONMENTS_YAML)
    project = write_config(project_config(PROJECT, tmp_path / "environments.yaml", evidence=tmp_path / "audit"),
                           tmp_path)
    monkeypatch.delenv(RUNNER_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # where fkrunbook finds this project's fkrunbook.toml
    with pytest.raises(InteractiveChangeRefusedError) as info:
        start(phase, "unset", str(project))
    assert info.value.command == f"fkrunbook run --env unset --phase {phase}"
    assert "\n" not in str(info.value) and not (tmp_path / "audit").exists()
    monkeypatch.chdir(PROJECT)  # where fkrunbook would find another project: the command names this one
    with pytest.raises(InteractiveChangeRefusedError) as info:
        start(phase, "unset", str(project))
    assert info.value.command == f"fkrunbook run --env unset --phase {phase} --project {project}"
