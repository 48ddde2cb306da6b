"""The interactive walkthrough, driven as JupyterLab drives it: nbclient (no papermill, no injected
cell) executes the working copies that `fkrunbook lab` makes (lab.prepare_walkthrough), each
notebook top to bottom, first with its default parameters, then with one edited as an engineer
edits it (confirm = True). What is checked is the evidence each leaves: run folders, executed
notebooks with outputs, HTML reports, sealed manifests marked interactive, the chain intact,
`archive list` and the index showing them."""
import hashlib
import json
import time

import nbclient
import nbformat
import pytest

from fkrunbook.config import load_config
from fkrunbook.environment import get_environment
from fkrunbook.evidence import load_runs, verify_archive
from fkrunbook.lab import fill_parameters, prepare_walkthrough
from fkrunbook.phase import PHASES
from fkrunbook.sample import reset_local
from fkrunbook.server import stop_server

from .conftest import PROJECT, copy_project
from .test_cli import cli, invoke

TIMINGS: dict[str, float] = {}


def execute(path, allow_errors=False):
    """Run a notebook file as JupyterLab's Run All does (its folder as the kernel's working
    folder); the executed notebook and the seconds it took."""
    book = nbformat.read(path, as_version=4)
    started = time.monotonic()
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        TIMINGS[path.stem + ("" if path.stem not in TIMINGS else " (again)")] = time.monotonic() - started
    return book


def edit(path, **values):
    """Change the parameters cell of a working copy, as an engineer does in JupyterLab."""
    book = nbformat.read(path, as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = fill_parameters(cell.source, values)
    nbformat.write(book, path)


def tracked_notebooks() -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((PROJECT / "notebooks").glob("*.ipynb"))}


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """A fresh local database with planted orphans, then the whole walkthrough in JupyterLab's
    order: 01, 02 (dry run), 02 again with confirm = True, 03, 04, 05, 06."""
    project = copy_project(tmp_path_factory.mktemp("walkthrough") / "project")
    config = load_config(project / "fkrunbook.toml")
    local = get_environment("local", config.environments)
    tracked = tracked_notebooks()
    try:
        reset_local(local, rows=300)
        walkthrough = prepare_walkthrough(config, "local")
        books = {}
        for phase in PHASES.values():
            path = walkthrough.folder / phase.notebook
            books[phase.name] = execute(path)
            if phase.name == "orphan_cleanup":
                edit(path, confirm=True)
                books["orphan_cleanup confirmed"] = execute(path)
        yield project, config, walkthrough, books, tracked
    finally:
        stop_server(local.data_dir)
        (tmp_path_factory.getbasetemp() / "walkthrough-timings.json").write_text(json.dumps(TIMINGS, indent=2))


def test_the_working_copies_carry_the_walkthrough_and_the_tracked_notebooks_stay_clean(walked):
    project, config, walkthrough, books, tracked = walked
    assert walkthrough.folder.parent == project / ".fkrunbook" / "lab"
    for phase in PHASES.values():
        params = papermill_parameters(walkthrough.folder / phase.notebook)
        assert params["env"] == '"local"' and params["run_id"] == json.dumps(walkthrough.run_id)
        assert params["spec"] == '"runbooks/add_missing_org_fk_constraints.yaml"'
    assert tracked_notebooks() == tracked  # outputs and confirm = True stayed in the copies
    assert "confirm = True" in (walkthrough.folder / "02_orphan_cleanup.ipynb").read_text()


def papermill_parameters(path):
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def test_each_notebook_run_as_jupyterlab_runs_it_is_sealed_into_the_walkthroughs_runs(walked):
    project, config, walkthrough, books, _ = walked
    for name, book in books.items():  # every cell ran, none failed
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(c.get("execution_count") for c in code), name
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], name
    runs = {r.run_id: r for r in load_runs(project / "audit", "local")}
    first, second = runs[walkthrough.run_id], runs[f"{walkthrough.run_id}.2"]
    assert set(runs) == {first.run_id, second.run_id}  # no pending folder left
    # one run while it is the chain head; the confirmed clean-up (a phase the run holds already) opens the next
    assert [p["name"] for p in first.manifest["phases"]] == ["orphan_check", "orphan_cleanup"]
    assert [p["name"] for p in second.manifest["phases"]] == ["orphan_cleanup", "migration_preview", "apply",
                                                              "cascade_validation", "docs_update"]
    for run in (first, second):
        m = run.manifest
        assert run.sealed and m["status"] == "succeeded" and m["mode"] == "interactive"
        assert m["walkthrough"] == walkthrough.run_id and m["environment"] == "local"
        assert [r for r in m["reports"]] == sorted(PHASES[p["name"]].notebook.replace(".ipynb", ".html")
                                                   for p in m["phases"])
        for entry in m["phases"]:
            assert entry["status"] == "succeeded" and entry["mode"] == "interactive", entry
            assert set(PHASES[entry["name"]].key_results) <= set(entry["results"]), entry["name"]
            executed = nbformat.read(run.path / entry["notebook"], as_version=4)
            code = [c for c in executed.cells if c.cell_type == "code"]
            assert code[0].metadata.get("tags") == ["parameters"] and executed.cells[0].cell_type == "markdown"
            assert code[-1].source == "ctx.finish()" and "evidence is sealed" in code[-1].outputs[0].data["text/plain"]
            assert sum(len(c.outputs) for c in code) >= 4 and all(c.execution_count for c in code)
            report = (run.path / entry["notebook"]).with_suffix(".html").read_text()
            assert "evidence is sealed" in report and "<table" in report
    assert first.manifest["phases"][1]["results"]["confirmed"] is False
    cleanup, applied = second.manifest["phases"][0], second.manifest["phases"][2]
    assert cleanup["results"]["confirmed"] is True and cleanup["parameters"]["confirm"] is True
    kept = sum(len(p.read_text().splitlines()) for p in (second.path / "quarantine").glob("*.jsonl"))
    assert kept == sum(cleanup["results"]["rows"].values()) > 0  # the deleted rows' copies, sealed with the run
    assert len(applied["results"]["verified"]) == 3 and second.manifest["plan_hash"] == applied["results"]["plan_hash"]
    assert second.manifest["sequence"] == 2 and second.manifest["previous_manifest_sha256"] == first.manifest_sha256
    assert verify_archive(project / "audit") == ([], 2)


def test_archive_list_verify_and_the_index_show_the_interactive_runs(walked):
    project, config, walkthrough, books, _ = walked
    listed = invoke("archive", "list", cwd=project)
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert {(r[0], r[2], r[3]) for r in rows} == {(walkthrough.run_id, "succeeded", "interactive"),
                                                  (f"{walkthrough.run_id}.2", "succeeded", "interactive")}
    verified = invoke("archive", "verify", cwd=project)
    assert verified.exit_code == 0 and "2 sealed run(s) verified" in verified.stdout
    index = (project / "audit" / "index.html").read_text()
    assert index.count("<td>interactive") == 2 and f"{walkthrough.run_id}.2/02_orphan_cleanup.html" in index


def test_the_demo_after_the_walkthrough_joins_the_same_chain(walked):
    project, config, walkthrough, books, _ = walked
    try:
        result = cli("demo", "--rows", "300", cwd=project)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        stop = cli("local", "stop", cwd=project)
        assert stop.returncode == 0, stop.stderr
    demo = max((r for r in load_runs(project / "audit", "local")), key=lambda r: r.sequence)
    assert demo.status == "succeeded" and demo.mode == "runner" and len(demo.manifest["reports"]) == 6
    assert demo.manifest["sequence"] == 3
    finish = nbformat.read(demo.path / "01_orphan_check.ipynb", as_version=4).cells[-1]
    assert "kept by `fkrunbook run`" in finish.outputs[0].data["text/markdown"]  # finish() leaves it to the runner
    assert verify_archive(project / "audit") == ([], 3)
