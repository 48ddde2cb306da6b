"""Sealed evidence: file hashes, the chain of manifests, tampering caught, reports that need no network."""
import json
import shutil

import pytest

from fkrunbook.errors import PhaseFailedError
from fkrunbook.evidence import load_runs, scrub_secrets, verify_archive
from fkrunbook.phase import start
from fkrunbook.runbook import run_phases

from .conftest import PROJECT, copy_project, project_config, write_config


def _run(project_copy, database, phases=("orphan_check",), env="test", **parameters):
    return run_phases(project_config(project_copy, database.environments), env, list(phases), parameters=parameters)


@pytest.fixture(scope="module")
def pristine_archive(server, tmp_path_factory):
    """Three sealed runs of the same environment, made once per module."""
    import uuid

    import psycopg

    from .conftest import ENVIRONMENTS_YAML, TEMPLATE, TestDatabase

    root = tmp_path_factory.mktemp("archive")
    name = f"a_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    (root / "environments.yaml").write_text(ENVIRONMENTS_YAML)
    project = copy_project(root / "project")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FKRUNBOOK_TEST_URL", server.url(name))
        db = TestDatabase(name, server.url(name), root / "environments.yaml")
        runs = [_run(project, db).run_id for _ in range(3)]
    return project / "audit", runs


@pytest.fixture
def archive(pristine_archive, tmp_path):
    """A copy of the pristine archive to tamper with: (audit folder, runs oldest first)."""
    from types import SimpleNamespace

    audit = tmp_path / "audit"
    shutil.copytree(pristine_archive[0], audit)
    return audit, [SimpleNamespace(run_id=r, run_dir=audit / "test" / r) for r in pristine_archive[1]]


def test_a_sealed_manifest_holds_what_an_auditor_asks_for(project_copy, database):
    result = _run(project_copy, database, ["orphan_check", "migration_preview"])
    m = json.loads((result.run_dir / "manifest.json").read_text())
    for key in ("run_id", "environment", "operator", "host", "git_commit", "spec", "parameters", "phases",
                "started_at", "ended_at", "sealed_at", "files", "previous_manifest_sha256", "sequence"):
        assert key in m, key
    assert m["status"] == "succeeded" and m["sequence"] == 1 and m["previous_manifest_sha256"] is None
    assert len(m["plan_hash"]) == 64 and m["plan_hash"] == m["phases"][1]["results"]["plan_hash"]
    assert m["reports"] == ["01_orphan_check.html", "03_migration_preview.html"]
    assert set(m["files"]) >= {"01_orphan_check.ipynb", "01_orphan_check.html", "orphan_check.results.json"}
    assert all(len(digest) == 64 for digest in m["files"].values())
    assert (project_copy / "audit" / "index.html").read_text().count("01_orphan_check.html") == 1


def test_the_chain_links_each_run_to_the_previous_one(archive):
    audit, runs = archive
    manifests = [json.loads((r.run_dir / "manifest.json").read_text()) for r in runs]
    assert [m["sequence"] for m in manifests] == [1, 2, 3]
    import hashlib

    for earlier, later in zip(runs, manifests[1:]):
        assert later["previous_manifest_sha256"] == hashlib.sha256(
            (earlier.run_dir / "manifest.json").read_bytes()).hexdigest()
    assert verify_archive(audit) == ([], 3)
    assert verify_archive(audit, runs[1].run_id) == ([], 1)


def test_verify_catches_an_edited_byte(archive):
    audit, runs = archive
    notebook = runs[1].run_dir / "01_orphan_check.ipynb"
    data = bytearray(notebook.read_bytes())
    data[100] = ord("X") if data[100] != ord("X") else ord("Y")
    notebook.write_bytes(bytes(data))
    problems, _ = verify_archive(audit)
    assert problems == [f"test/{runs[1].run_id}: file 01_orphan_check.ipynb changed"]


def test_verify_catches_a_deleted_and_an_added_file(archive):
    audit, runs = archive
    (runs[0].run_dir / "orphan_check.results.json").unlink()
    (runs[2].run_dir / "extra.txt").write_text("slipped in later")
    problems, _ = verify_archive(audit)
    assert f"test/{runs[0].run_id}: file orphan_check.results.json was removed" in problems
    assert f"test/{runs[2].run_id}: file extra.txt was added after the run was sealed" in problems


def test_verify_catches_an_edited_manifest_through_the_chain(archive):
    audit, runs = archive
    path = runs[0].run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["phases"][0]["results"]["orphans"] = {}  # hide the orphans found
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    problems, _ = verify_archive(audit)
    assert any(p.startswith(f"test/{runs[1].run_id}: previous_manifest_sha256 does not match") for p in problems)


def test_verify_catches_a_removed_run(archive):
    audit, runs = archive
    shutil.rmtree(runs[1].run_dir)
    problems, _ = verify_archive(audit)
    assert problems == [f"test/{runs[2].run_id}: is number 3 in the chain but stands at 2: a run was removed or "
                        "inserted out of order"]


def test_verify_catches_a_run_inserted_out_of_order(archive):
    audit, runs = archive
    forged = runs[0].run_dir.parent / "20990101T000000Z-forged"
    shutil.copytree(runs[1].run_dir, forged)
    manifest = json.loads((forged / "manifest.json").read_text())
    manifest["run_id"] = forged.name
    (forged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    problems, _ = verify_archive(audit)
    assert any("inserted out of order" in p for p in problems)


def test_an_interrupted_run_is_listed_as_incomplete_not_lost(archive):
    audit, runs = archive
    killed = runs[0].run_dir.parent / "20261126T000000Z-killed"
    killed.mkdir()
    (killed / "manifest.json").write_text(json.dumps({"run_id": killed.name, "status": "running",
                                                      "started_at": "2026-11-26T00:00:00+00:00", "phases": []}))
    listed = {r.run_id: r.status for r in load_runs(audit)}
    assert listed[killed.name] == "incomplete" and len(listed) == 4
    assert verify_archive(audit) == ([], 3)  # not sealed, so not in the chain: no false alarm


def test_a_failed_run_is_sealed_too(project_copy, database):
    with pytest.raises(PhaseFailedError) as info:
        _run(project_copy, database, ["apply"])
    run_dir = project_copy / "audit" / "test" / info.value.run_id
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["sequence"] == 1
    assert "04_apply.html" in manifest["reports"] and "04_apply.ipynb" in manifest["files"]
    assert verify_archive(project_copy / "audit") == ([], 1)


def test_scrub_secrets_redacts_and_reports(tmp_path):
    (tmp_path / "a.txt").write_text("url postgresql://u:S3cr3t-x@h/db")
    (tmp_path / "b.txt").write_text("nothing here")
    assert scrub_secrets(tmp_path, ["S3cr3t-x"]) == ["a.txt"]
    assert "S3cr3t-x" not in (tmp_path / "a.txt").read_text()


def test_read_only_phases_cannot_write(database, spec, tmp_path, monkeypatch):
    import psycopg

    from fkrunbook.phase import READ_ONLY_PHASES, RUNNER_ENV

    monkeypatch.setenv(RUNNER_ENV, str(tmp_path / "test" / "r1"))  # as the runner starts a kernel for run r1

    assert READ_ONLY_PHASES == {"orphan_check", "migration_preview", "docs_update"}
    project = write_config(project_config(PROJECT, database.environments, evidence=tmp_path), tmp_path)
    for phase in sorted(READ_ONLY_PHASES):
        ctx = start(phase, "test", str(project), run_id="r1")
        assert ctx.mode == "runner" and ctx.run_dir == tmp_path / "test" / "r1"
        assert ctx.overview.loc["transactions", "value"] == "READ ONLY"
        with pytest.raises(Exception, match="read-only transaction"):
            with ctx.db.transaction() as conn:
                conn.exec_driver_sql("DELETE FROM organizations_projection")
        with ctx.db.connect_raw() as raw, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            raw.execute("CREATE TABLE sneaky (id int)")
    writer = start("apply", "test", str(project), run_id="r1")
    assert writer.overview.loc["transactions", "value"] == "read-write"


# -- sealing a run again: only the chain head, only intact ------------------------------------------
def _manifest(run):
    return json.loads((run.run_dir / "manifest.json").read_text())


def test_the_chain_head_is_sealed_again_in_place(archive):
    from fkrunbook.evidence import is_chain_head, seal_run

    audit, runs = archive
    head = runs[-1]
    before = _manifest(head)
    (head.run_dir / "docs_update.results.json").write_text("{}\n")  # a phase added to the run
    after = seal_run(head.run_dir, _manifest(head), [])
    assert (after["sequence"], after["previous_manifest_sha256"]) == (3, before["previous_manifest_sha256"])
    assert after["first_sealed_at"] == before["sealed_at"] and "docs_update.results.json" in after["files"]
    assert verify_archive(audit) == ([], 3) and is_chain_head(head.run_dir)


def test_a_run_behind_the_head_is_never_sealed_again(archive):
    from fkrunbook.errors import EvidenceUnwritableError
    from fkrunbook.evidence import seal_run

    audit, runs = archive
    (runs[1].run_dir / "extra.results.json").write_text("{}\n")
    with pytest.raises(EvidenceUnwritableError, match="is no longer the newest sealed run"):
        seal_run(runs[1].run_dir, _manifest(runs[1]), [])
    assert verify_archive(audit)[0] == [f"test/{runs[1].run_id}: file extra.results.json was added after the run "
                                        "was sealed"]  # the chain itself untouched


def test_a_head_with_an_altered_file_is_not_sealed_again(archive):
    """Sealing again must not launder an edited file into a valid seal."""
    from fkrunbook.errors import EvidenceUnwritableError
    from fkrunbook.evidence import is_chain_head, seal_run
    from fkrunbook.walkthrough import _run_for

    audit, runs = archive
    head = runs[-1]
    (head.run_dir / "orphan_check.results.json").write_text('{"orphans": {}}\n')
    assert not is_chain_head(head.run_dir)
    with pytest.raises(EvidenceUnwritableError):
        seal_run(head.run_dir, _manifest(head), [])
    assert verify_archive(audit)[0] == [f"test/{head.run_id}: file orphan_check.results.json changed"]
    # an interactive phase of this run's walkthrough goes to the walkthrough's next run instead
    manifest = _manifest(head)
    manifest["walkthrough"] = head.run_id
    (head.run_dir / "manifest.json").write_text(json.dumps(manifest))
    assert _run_for(head.run_dir.parent, head.run_id, "migration_preview") == (
        head.run_dir.parent / f"{head.run_id}.2", None)
