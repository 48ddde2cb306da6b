"""The interactive walkthrough: after `make demo`, each notebook opened as it is and run top to
bottom with its default parameters (no papermill, no injected cell) works against the local
environment, as an engineer would run it in JupyterLab."""
import shutil

import nbclient
import nbformat
import pytest

from fkrunbook.phase import PHASES

from .test_cli import cli


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory):
    from .conftest import PROJECT, copy_project

    project = copy_project(tmp_path_factory.mktemp("walkthrough") / "project")
    shutil.copytree(PROJECT / "notebooks", project / "notebooks")  # opened from the repository, as in JupyterLab
    try:
        result = cli("demo", "--rows", "300", cwd=project)
        assert result.returncode == 0, result.stdout + result.stderr
        yield project
    finally:  # the demo's local server is stopped even when the demo failed
        stop = cli("local", "stop", cwd=project)
        assert stop.returncode == 0, stop.stderr


@pytest.mark.parametrize("phase", list(PHASES), ids=list(PHASES))
def test_each_notebook_runs_top_to_bottom_with_its_defaults(demo_project, phase):
    notebook = PHASES[phase].notebook
    before = set((demo_project / "audit" / "local").glob(f"*/{phase}.results.json"))
    book = nbformat.read(demo_project / "notebooks" / notebook, as_version=4)
    nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(demo_project / "notebooks")}}).execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    assert all(c.get("execution_count") for c in book.cells if c.cell_type == "code")
    # the interactive run records its results in a run folder of its own
    assert len(set((demo_project / "audit" / "local").glob(f"*/{phase}.results.json")) - before) == 1


def test_the_demo_left_a_sealed_successful_run(demo_project):
    from fkrunbook.evidence import load_runs, verify_archive

    demo = [r for r in load_runs(demo_project / "audit", "local") if r.sealed]
    assert demo and demo[-1].status == "succeeded" and len(demo[-1].manifest["reports"]) == 6
    assert verify_archive(demo_project / "audit")[0] == []
