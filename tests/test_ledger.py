"""The ledger in each environment's database: one chain for every operator, append-only, checked by
`archive verify --env`. Real PostgreSQL; runs through the CLI as users type them."""
import hashlib
import json
import shutil
import uuid

import psycopg
import pytest

from fkrunbook.evidence import load_runs, seal_run, verify_archive
from fkrunbook.ledger import QUALIFIED, Ledger, read_ledger, verify_ledger
from fkrunbook.server import SUPERUSER

from .conftest import copy_project
from .test_cli import invoke


def _run(project, url, *extra):
    """`fkrunbook run --env staging --phase orphan_check` from ``project``; the run's manifest and folder."""
    result = invoke("run", "--env", "staging", "--phase", "orphan_check", *extra, cwd=project,
                    env={"STAGING_DATABASE_URL": url})
    assert result.exit_code == 0, result.output + result.stderr
    run_dir = sorted((project / "audit" / "staging").iterdir(), key=lambda p: p.stat().st_mtime)[-1]
    return result, run_dir, json.loads((run_dir / "manifest.json").read_text())


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verify(project, url, *args):
    return invoke("archive", "verify", "--env", "staging", *args, cwd=project, env={"STAGING_DATABASE_URL": url})


def test_a_second_checkout_continues_the_first_ones_chain_and_verify_names_a_deleted_newest_run(database, tmp_path):
    first, second = copy_project(tmp_path / "alice"), copy_project(tmp_path / "bob")
    out_a, run_a, manifest_a = _run(first, database.url)
    assert "ledger: entry 1 of fkrunbook_ledger.runs, chain #1" in out_a.output
    out_b, run_b, manifest_b = _run(second, database.url)  # an empty audit/ folder: a new operator, or CI
    assert manifest_b["sequence"] == 2 and manifest_b["previous_manifest_sha256"] == _sha(run_a / "manifest.json")
    assert manifest_b["ledger"] == {"schema": "fkrunbook_ledger", "entry": 2, "previous_run_id": run_a.name,
                                    "previous_here": False}
    assert f"ledger: entry 2 of fkrunbook_ledger.runs, chain #2, after {run_a.name} (sealed elsewhere)" in out_b.output
    assert verify_archive(second / "audit") == ([], 1)  # the gap is the other machine's run, not a removal
    index = (second / "audit" / "index.html").read_text()
    assert f"<code>{run_a.name}</code> (sealed elsewhere)<br>ledger entry 2" in index

    entries = read_ledger(database.connect("test"), "staging")
    assert [(e.entry, e.run_id, e.sequence, e.manifest_sha256) for e in entries] == [
        (1, run_a.name, 1, _sha(run_a / "manifest.json")), (2, run_b.name, 2, _sha(run_b / "manifest.json"))]
    assert entries[1].previous_entry_sha256 == entries[0].entry_sha256 and entries[0].previous_entry_sha256 is None
    assert entries[0].phases == [{"name": "orphan_check", "status": "succeeded"}] and entries[0].mode == "runner"
    assert entries[0].spec_sha256 == manifest_a["spec"]["sha256"] and entries[0].operator == manifest_a["operator"]

    # From the second checkout alone, the first operator's run is missing: named, with where it was expected.
    result = _verify(second, database.url)
    assert result.exit_code == 1
    assert (f"staging/{run_a.name}: in the ledger (entry 1, chain #1, sealed {manifest_a['sealed_at']} by "
            f"{manifest_a['operator']} on {manifest_a['host']}) but not in audit/staging: its evidence is missing"
            in result.output)
    # Both operators' evidence in one place (a shared store): the chain verifies, the other machine's run accepted.
    shutil.copytree(run_a, second / "audit" / "staging" / run_a.name)
    result = _verify(second, database.url)
    assert result.exit_code == 0, result.output + result.stderr
    assert "2 run(s) in the ledger of 'staging'" in result.output
    # The newest run's folder deleted: nothing links to it locally, but the ledger does.
    shutil.rmtree(run_b)
    result = _verify(second, database.url)
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if line.startswith("staging/")]
    assert problems == [f"staging/{run_b.name}: in the ledger (entry 2, chain #2, sealed {manifest_b['sealed_at']} by "
                        f"{manifest_b['operator']} on {manifest_b['host']}) but not in audit/staging: its evidence "
                        "is missing"]
    assert result.stderr.strip() == ("fkrunbook: error: 1 problem(s) against the ledger of 'staging' (2 run(s) "
                                     "recorded there, 1 found intact in audit/staging)")


def test_an_altered_manifest_and_a_manifest_naming_an_entry_the_ledger_lacks_fail(database, project_copy):
    _, run_dir, manifest = _run(project_copy, database.url)
    assert _verify(project_copy, database.url).exit_code == 0
    manifest["phases"][0]["results"]["orphans"] = {}  # hide what the check found
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    result = _verify(project_copy, database.url)
    assert result.exit_code == 1
    assert f"staging/{run_dir.name}: manifest.json is not the one the ledger recorded" in result.output
    assert "the manifest was altered" in result.output

    forged = run_dir.parent / "20990101T000000Z-forged"  # a run never sealed against this database
    shutil.copytree(run_dir, forged)
    manifest.update(run_id=forged.name, sequence=2)
    (forged / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    entries = read_ledger(database.connect("test"), "staging")
    problems = verify_ledger(entries, load_runs(project_copy / "audit", "staging"), "audit/staging").problems
    assert (f"staging/{forged.name}: its manifest names ledger entry 1, which the ledger does not hold for this run: "
            "it was not sealed against this database, or the entry is gone") in problems


def _seal_one(tmp_path, db, name="r1"):
    """A minimal sealed run (no notebook): enough to create and append to the ledger, fast."""
    run_dir = tmp_path / "audit" / db.env.name / name
    run_dir.mkdir(parents=True)
    (run_dir / "orphan_check.results.json").write_text("{}\n")
    manifest = {"run_id": name, "environment": db.env.name, "status": "succeeded", "mode": "runner",
                "started_at": "2026-11-30T00:00:00+00:00", "phases": [{"name": "orphan_check", "status": "succeeded"}]}
    return run_dir, seal_run(run_dir, manifest, [], ledger=Ledger(db))


@pytest.mark.parametrize("statement", [
    f"UPDATE {QUALIFIED} SET status = 'failed'",
    f"DELETE FROM {QUALIFIED}",
    f"TRUNCATE {QUALIFIED}",
])
def test_the_database_refuses_to_change_the_ledger(database, tmp_path, statement):
    db = database.connect()
    _seal_one(tmp_path, db)
    before = database.sql(f"SELECT * FROM {QUALIFIED}")
    with pytest.raises(psycopg.errors.RaiseException, match="fkrunbook_ledger.runs is append-only: .* refused"):
        database.sql(statement)  # as the superuser that owns it: the triggers refuse
    assert database.sql(f"SELECT * FROM {QUALIFIED}") == before


def test_the_ledger_is_invisible_to_supabase_api_roles(database, tmp_path):
    for role in ("anon", "authenticated"):
        database.sql(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    _seal_one(tmp_path, database.connect())
    for role in ("anon", "authenticated", "public"):
        usage, select = database.sql("SELECT has_schema_privilege(%s, 'fkrunbook_ledger', 'USAGE'), "
                                     f"has_table_privilege(%s, '{QUALIFIED}', 'SELECT')", (role, role))[0]
        assert (usage, select) == (False, False), role
    owner_can = database.sql(f"SELECT has_table_privilege('{QUALIFIED}', 'UPDATE'), "
                             f"has_table_privilege('{QUALIFIED}', 'INSERT'), relrowsecurity FROM pg_class "
                             f"WHERE oid = '{QUALIFIED}'::regclass")[0]
    assert owner_can == (True, True, True)  # superuser here; on Supabase the owner's UPDATE is revoked too


@pytest.fixture
def reader(database):
    """A role that can read the application's tables and nothing more: the scheduled orphan detection's."""
    name = f"fk_reader_{uuid.uuid4().hex[:6]}"
    database.sql(f"CREATE ROLE {name} LOGIN")
    database.sql(f"GRANT USAGE ON SCHEMA public TO {name}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}")
    yield database.url.replace(f"//{SUPERUSER}@", f"//{name}@")
    database.sql(f"DROP OWNED BY {name}")
    with psycopg.connect(database.url, autocommit=True) as conn:  # other sessions of the role end first
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
    database.sql(f"DROP ROLE {name}")


def test_a_read_only_role_skips_the_ledger_with_one_line_and_the_run_succeeds(database, tmp_path, reader):
    writer = copy_project(tmp_path / "writer")
    _, first, _ = _run(writer, database.url)  # the ledger exists: made by an operator's run
    ci = copy_project(tmp_path / "ci")
    result, run_dir, manifest = _run(ci, reader)
    skipped = [line for line in result.output.splitlines() if line.startswith("ledger:")]
    assert skipped == [f"ledger: skipped: role {reader.split('//')[1].split('@')[0]!r} cannot write "
                       "fkrunbook_ledger.runs (a read-only role); grant it USAGE on schema fkrunbook_ledger and "
                       "SELECT, INSERT on the table to record runs there; the run is sealed in this folder's chain only"]
    assert manifest["status"] == "succeeded" and manifest["sequence"] == 1 and "skipped" in manifest["ledger"]
    assert verify_archive(ci / "audit") == ([], 1)
    assert [e.run_id for e in read_ledger(database.connect("test"), "staging")] == [first.name]
    # and where the ledger does not exist yet, the role cannot create it: skipped as well
    database.sql("DROP SCHEMA fkrunbook_ledger CASCADE")
    result, _, manifest = _run(ci, reader)
    assert "ledger: skipped: this role cannot create or write fkrunbook_ledger.runs" in result.output
    assert manifest["status"] == "succeeded"


def test_verify_against_the_ledger_bad_input_gets_one_line(database, project_copy):
    result = invoke("archive", "verify", "--env", "stagng", cwd=project_copy)
    assert result.exit_code == 1
    assert result.stderr == ("fkrunbook: error: environment 'stagng' is not defined; known: local, staging, "
                             "production\n")
    result = _verify(project_copy, database.url)  # no run was ever sealed against this database
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "environment 'staging' has no ledger (fkrunbook_ledger.runs does not exist)" in result.stderr
    result = _verify(project_copy, database.url, "staging")
    assert result.exit_code == 1 and "give either a run or environment ('staging') or --env staging" in result.stderr
    assert not (project_copy / "audit").exists()
    assert database.sql("SELECT to_regnamespace('fkrunbook_ledger')") == [(None,)]  # verify never creates it


def test_a_run_sealed_again_appends_an_entry_and_only_while_it_is_the_ledgers_newest(database, tmp_path):
    """A walkthrough adds its phases to one run by sealing it again: each seal is an entry, the last one counts."""
    from fkrunbook.errors import EvidenceUnwritableError

    db = database.connect()
    run_dir, manifest = _seal_one(tmp_path / "one", db, "walk")
    (run_dir / "migration_preview.results.json").write_text("{}\n")  # the next phase of the walkthrough
    manifest["phases"].append({"name": "migration_preview", "status": "succeeded"})
    manifest = seal_run(run_dir, manifest, [], ledger=Ledger(db))
    entries = read_ledger(db)
    assert [(e.entry, e.run_id, e.sequence) for e in entries] == [(1, "walk", 1), (2, "walk", 1)]
    assert entries[1].manifest_sha256 == _sha(run_dir / "manifest.json") != entries[0].manifest_sha256
    check = verify_ledger(entries, load_runs(tmp_path / "one" / "audit", "test"), "here")
    assert (check.problems, check.runs, check.found) == ([], 1, 1)

    _seal_one(tmp_path / "two", db, "other")  # another machine seals a run after it
    (run_dir / "docs_update.results.json").write_text("{}\n")
    with pytest.raises(EvidenceUnwritableError, match="is no longer the newest run in the ledger of 'test'"):
        seal_run(run_dir, manifest, [], ledger=Ledger(db))
    assert [e.run_id for e in read_ledger(db)] == ["walk", "walk", "other"]


def test_reports_show_the_place_the_ledger_gave_even_when_another_run_is_sealed_in_between(database, tmp_path):
    """The headers are rendered before the ledger's short transaction, from where the ledger would
    place the run then; another operator's run sealed in that window moves the run one on, and the
    headers are made again: the report shows the place the manifest records."""
    first, second = copy_project(tmp_path / "alice"), copy_project(tmp_path / "bob")
    _, run_a, _ = _run(first, database.url)
    _, template, _ = _run(second, database.url)  # bob's #2: a sealed run to copy an unsealed one from

    env_dir = second / "audit" / "staging"
    run_dir = env_dir / "20261130T000000Z-racing"
    run_dir.mkdir()
    shutil.copy(template / "01_orphan_check.ipynb", run_dir)
    manifest = {key: value for key, value in json.loads((template / "manifest.json").read_text()).items()
                if key not in ("sequence", "previous_manifest_sha256", "ledger", "files", "reports", "sealed_at")}
    manifest["run_id"] = run_dir.name

    class Racing(Ledger):
        def placement(self, run_dir, manifest):
            placed = super().placement(run_dir, manifest)
            _run(first, database.url)  # alice seals #3 while bob's headers render
            return placed

    db = database.connect("test")
    sealed = seal_run(run_dir, manifest, [], ledger=Racing(db, "staging"))
    assert sealed["sequence"] == 4 and sealed["ledger"]["entry"] == 4 and not sealed["ledger"]["previous_here"]
    report = (run_dir / "01_orphan_check.html").read_text()
    assert "#4 in staging&#39;s chain" in report or "#4 in staging's chain" in report
    assert "sealed on another machine (in the ledger)" in report
    assert verify_archive(second / "audit", "staging")[0] == []
