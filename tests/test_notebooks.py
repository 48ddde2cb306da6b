"""The real notebooks, executed by papermill through the runner, against a real database."""
import ast
import json

import nbformat
import pytest

from fkrunbook.errors import PhaseFailedError
from fkrunbook.phase import PHASES
from fkrunbook.runbook import run_phases

from .conftest import project_config, PROJECT, schema_state


def _run(project_copy, database, phases=None, **parameters):
    return run_phases(project_config(project_copy, database.environments), "test", phases, parameters=parameters)


def test_whole_runbook_end_to_end(project_copy, database, sample):
    result = _run(project_copy, database, confirm=True, write=True)
    m = result.manifest
    assert m["status"] == "succeeded" and [p["name"] for p in m["phases"]] == list(PHASES)
    for entry in m["phases"]:
        assert entry["status"] == "succeeded" and entry["started_at"] <= entry["ended_at"]
        assert (result.run_dir / entry["notebook"]).exists()
    by_name = {p["name"]: p["results"] for p in m["phases"]}
    assert by_name["orphan_check"]["orphans"] == sample.orphans
    assert by_name["orphan_check"]["warnings"] == []  # the sample's filters and payload key match its data
    assert by_name["orphan_check"]["discriminator_values"]["domain_events.stream_id"]["matched"] == \
        sample.organizations + sample.hard_deleted
    assert by_name["orphan_cleanup"]["confirmed"] and by_name["migration_preview"]["statements_to_run"] == 8
    assert by_name["apply"]["plan_hash"] == by_name["migration_preview"]["plan_hash"]  # previewed is what ran
    assert by_name["apply"]["lock_schedule"] == by_name["migration_preview"]["lock_schedule"]  # and how it took its locks
    assert by_name["apply"]["max_writer_wait_ms"] == 150
    assert len(by_name["apply"]["files_recorded"]) == 3 and len(by_name["apply"]["verified"]) == 3
    assert by_name["cascade_validation"]["passed"] and by_name["cascade_validation"]["counts_match"]
    assert by_name["docs_update"]["files_changed"] == 9 and by_name["docs_update"]["skipped"] == 1  # no procedures
    assert (project_copy / "docs" / "schema" / "tables" / "impersonation_sessions_projection.md").exists()
    for phase in PHASES.values():  # every result the registry promises for the summary is recorded
        assert set(phase.key_results) <= set(by_name[phase.name]), phase.name
    # orphan clean-up kept a copy of every deleted row in the evidence folder
    kept = sum(len(p.read_text().splitlines()) for p in (result.run_dir / "quarantine").glob("*.jsonl"))
    assert kept == sum(by_name["orphan_cleanup"]["rows"].values()) > 0
    assert json.loads((result.run_dir / "manifest.json").read_text()) == json.loads(json.dumps(m, default=str))
    # the executed notebooks hold no URL and no error
    for entry in m["phases"]:
        text = (result.run_dir / entry["notebook"]).read_text()
        assert database.url not in text and "postgresql://" not in text and '"output_type": "error"' not in text


def test_apply_refused_with_orphans_keeps_the_failed_notebook(project_copy, database):
    before = schema_state(database.url)
    with pytest.raises(PhaseFailedError) as info:
        _run(project_copy, database, ["orphan_check", "migration_preview", "apply", "cascade_validation"])
    assert info.value.phase == "apply"
    assert "OrphansPresentError" in str(info.value) and "run the orphan_check and orphan_cleanup" in str(info.value)
    run_dir = project_copy / "audit" / "test" / info.value.run_id
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert [p["status"] for p in manifest["phases"]] == ["succeeded", "succeeded", "failed", "skipped"]
    failed = nbformat.read(run_dir / "04_apply.ipynb", as_version=4)
    errors = [o for c in failed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0].ename == "OrphansPresentError"
    # one line saying what to do in notebook terms; the library's traceback folded away above it
    assert errors[0].traceback == [f"OrphansPresentError: orphan rows would violate the new foreign keys "
                                   f"({errors[0].evalue.split('(')[1].split(')')[0]}); run 01_orphan_check and "
                                   "02_orphan_cleanup first"]
    folded = [o for c in failed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "<details" in o.get("data", {}).get("text/html", "")]
    assert len(folded) == 1 and "Traceback (most recent call last)" in folded[0].data["text/html"]
    assert not (run_dir / "05_cascade_validation.ipynb").exists()
    assert schema_state(database.url) == before


def test_cleanup_dry_run_through_papermill_changes_nothing(project_copy, database, sample):
    before = schema_state(database.url)
    result = _run(project_copy, database, ["orphan_cleanup"])
    assert result.manifest["phases"][0]["results"]["rows"] == sample.orphans
    assert not result.manifest["phases"][0]["results"]["confirmed"]
    assert schema_state(database.url) == before


def test_protected_environment_refuses_confirmed_cleanup_in_the_notebook(project_copy, database):
    before = schema_state(database.url)
    with pytest.raises(PhaseFailedError, match="ProtectedEnvironmentError: environment 'guarded' is protected"):
        run_phases(project_config(project_copy, database.environments), "guarded", ["orphan_cleanup"],
                   parameters={"confirm": True})
    assert schema_state(database.url) == before


@pytest.mark.parametrize("phase", list(PHASES.values()), ids=list(PHASES))
def test_notebook_parameters_are_the_registrys(phase):
    """Each notebook's parameters cell declares exactly what the registry says, with its defaults."""
    import papermill

    from fkrunbook.phase import COMMON_PARAMETERS

    found = papermill.inspect_notebook(str(PROJECT / "notebooks" / phase.notebook))
    declared = {p.name: p for p in COMMON_PARAMETERS + phase.parameters}
    assert list(found) == list(declared)
    for name, parameter in declared.items():
        assert ast.literal_eval(found[name]["default"]) == parameter.default, name
        assert type(ast.literal_eval(found[name]["default"])) is parameter.type, name


@pytest.mark.parametrize("phase", list(PHASES.values()), ids=list(PHASES))
def test_notebook_sources_are_thin(phase):
    """Also the guard that keeps tracked notebooks clean: no outputs, no execution counts, literal
    defaults (see test_notebook_parameters_are_the_registrys), nothing a run adds."""
    book = nbformat.read(PROJECT / "notebooks" / phase.notebook, as_version=4)
    assert not {"papermill", "fkrunbook", "widgets"} & set(book.metadata)
    assert not [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code[-1].source == "ctx.finish()"  # the evidence of an interactive run is sealed last, under its verdict
    assert book.cells[-1].cell_type == "markdown" and "verdict" in book.cells[-1].source  # Run All ends in view of it
    assert book.cells[0].cell_type == "markdown" and "Go/no-go" in book.cells[0].source
    params = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    for node in ast.parse(params[0].source).body:  # literal defaults only
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        assert "://" not in str(node.value.value)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None
        if cell.cell_type == "code" and cell is not params[0]:
            assert len(cell.source.splitlines()) <= 2  # one call, one result shown
            assert not any(word in cell.source for word in ("def ", "try:", "for ", "import os"))


def test_password_in_the_url_never_reaches_the_evidence(project_copy, database, monkeypatch):
    secret = "Pw-9f3c-never-in-evidence"
    # The embedded server trusts local connections, so the password is accepted and ignored.
    monkeypatch.setenv("FKRUNBOOK_TEST_URL", database.url.replace("postgres@", f"postgres:{secret}@"))
    with pytest.raises(PhaseFailedError):  # apply fails (orphans): failed notebooks are evidence too
        _run(project_copy, database, ["orphan_check", "orphan_cleanup", "migration_preview", "apply"])
    files = [p for p in (project_copy / "audit").rglob("*") if p.is_file()]
    assert len(files) >= 6
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
