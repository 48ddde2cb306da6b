"""The phase registry: one declaration per phase, from which the CLI's flags and checks derive."""
import pytest

from fkrunbook.cli import run
from fkrunbook.errors import PhaseParameterError
from fkrunbook.phase import PHASES, READ_ONLY_PHASES, check_parameters, phase_parameters


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
