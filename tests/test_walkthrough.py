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
    folder, stopping at the first failing cell); the executed notebook (on failure, as the
    error's ``book``)."""
    book = nbformat.read(path, as_version=4)
    started = time.monotonic()
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3", allow_errors=allow_errors,
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        err.book = book
        raise
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
            nbformat.validate(executed)
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
    cells = nbformat.read(demo.path / "01_orphan_check.ipynb", as_version=4).cells
    finish = [c for c in cells if c.cell_type == "code"][-1]
    shown = finish.outputs[0].data["text/markdown"]
    assert shown.startswith("**NO-GO: ") and "orphan rows in" in shown  # the verdict first (the demo plants orphans)
    assert "kept by `fkrunbook run`" in shown  # finish() leaves the evidence to the runner
    assert verify_archive(project / "audit") == ([], 3)


# -- on an environment reached by URL (the test database, through an environments file) -------------
@pytest.fixture
def url_project(project_copy, database):
    """The copied project, its fkrunbook.toml reaching the test database as environments 'test'
    and 'guarded' (protected)."""
    from .conftest import project_config, write_config

    write_config(project_config(project_copy, database.environments), project_copy)
    return load_config(project_copy / "fkrunbook.toml")


def _error_outputs(book):
    return [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


@pytest.mark.parametrize("env, notebook, values, command", [
    ("test", "02_orphan_cleanup.ipynb", {"confirm": True}, "fkrunbook run --env test --phase orphan_cleanup --confirm"),
    ("test", "02_orphan_cleanup.ipynb", {}, "fkrunbook run --env test --phase orphan_cleanup"),
    ("guarded", "04_apply.ipynb", {"approve": "0f3a9c"}, "fkrunbook run --env guarded --phase apply --approve 0f3a9c"),
    ("test", "05_cascade_validation.ipynb", {"blast_org": "acme"},
     "fkrunbook run --env test --phase cascade_validation --blast-org acme"),
], ids=["cleanup-confirmed", "cleanup-dry-run", "apply-approved-protected", "cascade"])
def test_a_phase_that_writes_refuses_outside_local_naming_the_command(url_project, database, env, notebook, values,
                                                                      command):
    from .conftest import schema_state

    before = schema_state(database.url)
    walkthrough = prepare_walkthrough(url_project, env)
    edit(walkthrough.folder / notebook, **values)
    with pytest.raises(nbclient.exceptions.CellExecutionError) as info:
        execute(walkthrough.folder / notebook)
    (refused,) = _error_outputs(info.value.book)  # what the engineer sees under the start cell
    assert refused.ename == "InteractiveChangeRefusedError"
    assert refused.traceback == [f"InteractiveChangeRefusedError: {refused.evalue}"]  # one line, no library traceback
    assert refused.evalue.endswith(f"through the runner, which seals its evidence: {command}")
    assert f"On {env!r} run it" in refused.evalue and "nothing was changed" in refused.evalue
    assert schema_state(database.url) == before
    assert not (url_project.evidence / env).exists()  # no run folder, no pending folder


def test_read_only_phases_run_on_any_environment_and_join_the_chain_around_a_runner_run(url_project, database):
    from fkrunbook.runbook import run_phases

    walkthrough = prepare_walkthrough(url_project, "test")
    execute(walkthrough.folder / "01_orphan_check.ipynb")
    runner = run_phases(url_project, "test", ["orphan_check"])  # a CLI run sealed in between
    execute(walkthrough.folder / "03_migration_preview.ipynb")
    runs = sorted(load_runs(url_project.evidence, "test"), key=lambda r: r.sequence)
    assert [(r.run_id, r.mode) for r in runs] == [(walkthrough.run_id, "interactive"), (runner.run_id, "runner"),
                                                  (f"{walkthrough.run_id}.2", "interactive")]
    # the walkthrough's run was no longer the chain head: the preview opened its next run, linked after the CLI's
    assert runs[2].manifest["previous_manifest_sha256"] == runs[1].manifest_sha256
    assert [p["name"] for p in runs[2].manifest["phases"]] == ["migration_preview"]
    assert len(runs[2].manifest["plan_hash"]) == 64
    assert verify_archive(url_project.evidence) == ([], 3)
    for run in runs:
        for path in run.path.rglob("*"):
            assert database.url.encode() not in path.read_bytes() if path.is_file() else True


def test_a_failing_cell_seals_the_phase_as_failed(url_project, database):
    walkthrough = prepare_walkthrough(url_project, "test")
    notebook = walkthrough.folder / "01_orphan_check.ipynb"
    edit(notebook, fail_on_orphans=True)
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="OrphansPresentError"):
        execute(notebook)  # Run All stops at the failing cell
    (run,) = load_runs(url_project.evidence, "test")
    assert run.sealed and run.status == "failed" and run.mode == "interactive"
    assert run.manifest["phases"][0]["error"].startswith("OrphansPresentError: orphan rows would violate")
    executed = nbformat.read(run.path / "01_orphan_check.ipynb", as_version=4)
    assert [o.ename for o in _error_outputs(executed)] == ["OrphansPresentError"]
    assert executed.cells[-1].source == "report.conclude(fail=fail_on_orphans)"  # it ends where the run stopped
    assert verify_archive(url_project.evidence) == ([], 1)
