"""fkrunbook installs as a tool: a wheel built from this repository, installed into a fresh venv,
brings the notebooks and runbook files with it, and works in a team's folder that holds nothing
of this repository."""
import os
import subprocess
import sys
import venv

import pytest

from .conftest import PROJECT
from .test_project import team_repository, tree


def _run(args, cwd, env=None, timeout=900):
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with only the wheel (and its dependencies) installed."""
    where = tmp_path_factory.mktemp("install")
    _run([sys.executable, "-m", "pip", "wheel", str(PROJECT), "--no-deps", "-q", "-w", str(where / "dist")], PROJECT)
    wheel = next((where / "dist").glob("fkrunbook-*.whl"))
    venv.EnvBuilder(with_pip=True).create(where / "venv")
    python = where / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], where)
    return where / "venv" / "bin"


def test_the_wheel_carries_the_notebooks_and_runbook_files(installed, tmp_path):
    found = _run([str(installed / "python"), "-c", "from fkrunbook.resources import notebooks_dir, runbook_file; "
                  "print(notebooks_dir()); print(runbook_file('environments.yaml'))"], tmp_path).stdout.split()
    assert all("site-packages" in line for line in found), found
    shipped = sorted(p.name for p in (installed.parent / "lib").glob("python*/site-packages/fkrunbook/notebooks/*"))
    assert shipped == sorted(p.name for p in (PROJECT / "notebooks").glob("*.ipynb"))


def test_installed_fkrunbook_inits_and_runs_in_a_team_folder(installed, tmp_path):
    root = team_repository(tmp_path / "team")
    # a new team folder: no earlier migration (the local database holds fkrunbook's sample schema, which
    # a pending baseline of the team's would contradict: apply refuses to run ahead of it)
    (root / "infrastructure/supabase/supabase/migrations/20250101000000_baseline.sql").unlink()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed}{os.pathsep}{env['PATH']}"
    fkrunbook = str(installed / "fkrunbook")
    before = tree(root)
    _run([fkrunbook, "init"], root, env)
    try:
        result = _run([fkrunbook, "run", "--env", "local", "--confirm"], root, env)
    finally:
        subprocess.run([fkrunbook, "local", "stop"], cwd=root, env=env, capture_output=True, timeout=120)
    assert "succeeded; evidence: fkrunbook/audit/local/" in result.stdout
    after = tree(root)
    migrations = sorted(k for k in set(after) - set(before) if k.startswith("infrastructure/supabase/supabase/migrations/"))
    assert len(migrations) == 3 and all(m.endswith(".sql") for m in migrations), migrations
    assert not any(k.startswith(("notebooks/", "runbooks/", "supabase/")) for k in after)  # nothing of this repo
