"""Sample data for a team's own schema (fkrunbook.teamdata) on the event-store shape
(tests/team_schemas/event_store, its own spec), on PostgreSQL 15, 17 and 18: the orphan check finds
exactly the orphans planted, the team's triggers fired on every row, rows already there are left
alone; and through the CLI, `local reset --from-migrations --rows N` and `demo --from-migrations`.
"""
import json
import uuid

import psycopg
import pytest
from psycopg import sql

from fkrunbook.compat import apply_compat
from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.errors import RowMakerError, SampleDataError
from fkrunbook.orphans import find_orphans
from fkrunbook.rehearsal import load_migrations
from fkrunbook.server import ensure_server, stop_server
from fkrunbook.spec import load_spec
from fkrunbook.teamdata import seed_team_data

from .conftest import create_database, drop_database, made_database
from .majors import MAJORS
from .rehearse import SHAPES, local_bin_dir, team_repository
from .test_cli import invoke

SHAPE = SHAPES / "event_store"
SPEC = load_spec(SHAPE / "spec.yaml")
FK_COLUMNS = ["impersonation_sessions_projection.target_org_id", "user_roles_projection.org_id"]


def _database(srv) -> str:
    """A database on ``srv`` holding the event-store shape, loaded as `local reset --from-migrations` loads it."""
    name = create_database(srv, "s")
    with psycopg.connect(srv.url(name), autocommit=True) as conn:
        load_migrations(conn, SHAPE / "supabase" / "migrations", apply_compat(conn))
    return name


@pytest.fixture(params=MAJORS)
def shaped(request, pg_servers):
    """The shape on PostgreSQL 15, 17 and 18."""
    with made_database(pg_servers(request.param), _database) as url:
        yield url


@pytest.fixture
def shaped18(server):
    with made_database(server, _database) as url:
        yield url


def _found(url: str, spec=None) -> dict:
    """What the orphan check counts, as TeamSample.expected() has it (its other results, the
    discriminator values and payload keys seen, left out)."""
    results = find_orphans(Database(Environment("test", "url", url_env="UNUSED"), url), spec or SPEC).results()
    return {kind: results[kind] for kind in ("orphans", "orphan_streams")}


def _rows(url, statement, params=None):
    with psycopg.connect(url) as conn:
        return conn.execute(statement, params).fetchall()


def test_the_orphan_check_finds_exactly_what_was_planted(shaped):
    with psycopg.connect(shaped, autocommit=True) as conn:
        sample = seed_team_data(conn, SPEC, rows=200, planted=3)
    assert _found(shaped) == sample.expected()
    assert sample.orphans == dict.fromkeys(FK_COLUMNS, 3) and sample.by_triggers == {}
    streams = sample.orphan_streams
    assert streams["domain_events.stream_id"] == 3  # organization streams whose organization is gone
    assert streams["domain_events.event_data->organization_id"] == 6  # those 3, and 3 events of another stream type
    assert sample.read_back == ("unprocessed_events.stream_id",) and streams["unprocessed_events.stream_id"] == 3
    assert sample.organizations == 10 and sample.rows["public.organizations_projection"] == 10
    children = sum(sample.rows[f"public.{t}"] for t in ("impersonation_sessions_projection", "user_roles_projection",
                                                        "domain_events"))
    assert 200 <= children <= 200 + 66 + 15 + 10  # rows, the users' sign-up events, planted, probes
    assert sample.lines[0].startswith(f"sample data: {sample.total} rows in 5 tables (10 organizations), written "
                                      "through the schema's own triggers in ")
    assert sample.lines[0].endswith("orphans planted: 3 in impersonation_sessions_projection.target_org_id, 3 in "
                                    "user_roles_projection.org_id, 3 in domain_events.stream_id, 6 in "
                                    "domain_events.event_data->organization_id")
    assert sample.lines[1] == ("skipped public.unprocessed_events: a view, it shows the rows of its tables (nothing "
                               "written to it)")


def test_rows_go_in_through_the_teams_own_triggers(shaped):
    with psycopg.connect(shaped, autocommit=True) as conn:
        seed_team_data(conn, SPEC, rows=200)
    # the BEFORE INSERT router ran on every event: processed, or (an organization event of a type
    # its handler does not know) its error kept and left unprocessed
    events = dict(((t, p, e), n) for t, p, e, n in _rows(shaped, """
        SELECT stream_type = 'organization', processed_at IS NOT NULL, processing_error IS NOT NULL, count(*)
        FROM domain_events GROUP BY 1, 2, 3"""))
    assert set(events) == {(False, True, False), (True, False, True)}, events
    assert _rows(shaped, "SELECT count(*) FROM domain_events WHERE processing_error LIKE 'unknown organization event%%'"
                 ) == [(events[(True, False, True)],)]
    # each role's user signed up through auth.users, whose AFTER INSERT trigger wrote the event
    users = _rows(shaped, "SELECT count(*) FROM auth.users")[0][0]
    assert users >= 66
    assert _rows(shaped, "SELECT count(*) FROM domain_events WHERE event_type = 'user.registered' AND "
                         "stream_id IN (SELECT id FROM auth.users)") == [(users,)]
    # the trigger and no session setting let the rows in: nothing was switched off
    assert _rows(shaped, "SELECT count(*) FROM pg_trigger WHERE tgenabled <> 'O' AND NOT tgisinternal") == [(0,)]


def test_rows_already_there_are_left_alone_and_counted(shaped18):
    url = shaped18
    with psycopg.connect(url, autocommit=True) as conn:
        first = seed_team_data(conn, SPEC, rows=60, planted=2)
        kept = conn.execute("SELECT id, slug FROM organizations_projection ORDER BY id").fetchall()
        second = seed_team_data(conn, SPEC, rows=40, planted=1)
        assert conn.execute("SELECT id, slug FROM organizations_projection WHERE id = ANY(%s) ORDER BY id",
                            ([i for i, _ in kept],)).fetchall() == kept
    assert second.before["orphans"] == first.orphans
    assert second.expected()["orphans"] == dict.fromkeys(FK_COLUMNS, 3)
    assert _found(url) == second.expected()


def test_a_table_the_spec_names_but_the_schema_lacks_is_one_line_and_nothing_is_kept(shaped18, tmp_path):
    url = shaped18
    broken = tmp_path / "spec.yaml"
    broken.write_text((SHAPE / "spec.yaml").read_text().replace("table: user_roles_projection", "table: user_roles"))
    with psycopg.connect(url, autocommit=True) as conn:
        with pytest.raises(RowMakerError, match=r"^table public.user_roles does not exist; check the spec's schema "
                                                r"and table names$"):
            seed_team_data(conn, load_spec(broken), rows=50)
        with pytest.raises(SampleDataError, match=r"^--rows -1 is negative; give 0 for the schema only"):
            seed_team_data(conn, SPEC, rows=-1)
    assert _rows(url, "SELECT (SELECT count(*) FROM organizations_projection), (SELECT count(*) FROM domain_events), "
                      "(SELECT count(*) FROM impersonation_sessions_projection)") == [(0, 0, 0)]


def test_a_table_no_row_can_be_made_for_names_table_column_and_constraint(shaped18):
    url = shaped18
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE impersonation_sessions_projection ADD CONSTRAINT never CHECK (status = 'x' AND "
                     "status <> 'x')")
        with pytest.raises(RowMakerError) as caught:
            seed_team_data(conn, SPEC, rows=50)
    message = str(caught.value)
    assert message.startswith("cannot make a test row for public.impersonation_sessions_projection: column status: "
                              "check constraint never refused the last candidate"), message
    assert (caught.value.table, caught.value.column, caught.value.constraint) == (
        "public.impersonation_sessions_projection", "status", "never")
    assert _rows(url, "SELECT count(*) FROM organizations_projection") == [(0,)]  # nothing kept


def test_local_reset_from_migrations_seeds_inside_the_build_then_swap(tmp_path):
    """`local reset --from-migrations --rows N` in a team's repository: one line for what was made
    and planted; a seed that fails leaves the previous local database as it was."""
    root = team_repository("event_store", "18", tmp_path / "team")
    data_dir = root / ".fkrunbook" / "local"
    try:
        loaded = invoke("local", "reset", "--from-migrations", "--rows", "100", cwd=root)
        assert loaded.exit_code == 0, loaded.output
        line = next(line for line in loaded.stdout.splitlines() if line.startswith("sample data: "))
        assert "(5 organizations)" in line and "3 in user_roles_projection.org_id" in line
        url = ensure_server(data_dir, local_bin_dir(root)).url("fkrunbook")
        before = _rows(url, "SELECT id FROM organizations_projection ORDER BY id")
        assert len(before) == 5
        spec = root / "fkrunbook" / "add_missing_org_fk_constraints.yaml"
        spec.write_text(spec.read_text().replace("column: target_org_id", "column: target_organization_id"))
        failed = invoke("local", "reset", "--from-migrations", cwd=root)
        assert failed.exit_code == 1 and failed.stdout == ""
        assert failed.stderr == ("fkrunbook: error: column impersonation_sessions_projection.target_organization_id "
                                 f"does not exist in environment 'local'; fix the spec ({spec}) or the database; "
                                 "local database 'fkrunbook' left as it was (--rows 0 loads the schema without "
                                 "sample data)\n")
        assert _rows(url, "SELECT id FROM organizations_projection ORDER BY id") == before
    finally:
        stop_server(data_dir, local_bin_dir(root))


def test_demo_from_migrations_rehearses_the_whole_runbook_on_seeded_data(tmp_path):
    root = team_repository("event_store", "18", tmp_path / "team")
    try:
        result = invoke("demo", "--from-migrations", "--rows", "120", cwd=root)
    finally:
        stop_server(root / ".fkrunbook" / "local", local_bin_dir(root))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("  sample data: ") for line in lines)
    run_dir = root / lines[-1].split("Evidence: ")[1].split(" (sealed")[0]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    results = {p["name"]: p["results"] for p in manifest["phases"]}
    assert manifest["status"] == "succeeded" and manifest["environment"] == "local"
    assert results["orphan_check"]["orphans"] == dict.fromkeys(FK_COLUMNS, 3)
    assert results["orphan_check"]["orphan_streams"]["domain_events.stream_id"] == 3
    assert results["orphan_cleanup"]["confirmed"] and results["orphan_cleanup"]["rows"] == dict.fromkeys(FK_COLUMNS, 3)
    assert results["cascade_validation"]["passed"]
    assert results["cascade_validation"]["blast_radius"]["organization"] is not None  # organizations to measure
    assert results["docs_update"]["written"]
    assert (root / ".fkrunbook" / "demo-docs" / "docs" / "schema" / "orphan-detection.md").is_file()
    assert not (root / "docs").exists()  # the team's own docs folder untouched


def test_local_reset_from_a_dump_with_rows_seeds_around_the_rows_it_carries(server, shaped18, tmp_path):
    """`--from-dump FILE --rows N` on a dump that carries rows as well as the schema (pg_dump
    --inserts), their orphans included: the rows stay, and the orphan check finds theirs plus those
    planted."""
    import subprocess

    from fkrunbook.rehearsal import reset_local_from
    from fkrunbook.server import embedded_bin_dir

    source = shaped18
    with psycopg.connect(source, autocommit=True) as conn:
        carried = seed_team_data(conn, SPEC, rows=40, planted=2)
    excluded = "auth|extensions|storage|graphql|graphql_public|vault|realtime|supabase_functions|supabase_migrations|" \
               "cron|net|pgsodium|information_schema|pg_*"
    dumped = subprocess.run([str(embedded_bin_dir() / "pg_dump"), "--inserts", "--quote-all-identifiers",
                             "--exclude-schema", excluded, "--schema", "*", "--extension", "*",
                             "--exclude-table-data", "public.user_roles_projection",  # its users are in auth
                             "--dbname", source], capture_output=True, text=True, check=True).stdout
    dump = tmp_path / "dump.sql"
    dump.write_text(dumped.replace('\nCREATE SCHEMA "public";', '\n-- CREATE SCHEMA "public";'))
    env = Environment("local", "embedded", data_dir=server.data_dir, database=f"local_{uuid.uuid4().hex[:8]}")
    try:
        result = reset_local_from(env, dump=dump, rows=60, spec=SPEC)
        url = server.url(env.database)
        assert result.sample.before["orphans"] == {FK_COLUMNS[0]: 2, FK_COLUMNS[1]: 0}
        assert result.sample.before["orphan_streams"]["domain_events.stream_id"] == 2
        assert _found(url) == result.sample.expected()
        assert _rows(url, "SELECT count(*) FROM organizations_projection") == [(carried.organizations + 3,)]
        assert result.lines[-2].startswith("sample data: ")
    finally:
        drop_database(server, env.database)


def test_views_and_absent_tables_among_the_exceptions_are_skipped_and_counted_as_the_check_counts(
        shaped18, tmp_path):
    import yaml

    raw = yaml.safe_load((SHAPE / "spec.yaml").read_text())
    raw["intentional_exceptions"][1]["payload"] = {"column": "event_data", "key": "organization_id"}  # the view
    raw["intentional_exceptions"].append({"table": "event_archive", "column": "stream_id", "reason": "gone",
                                          "discriminator": {"column": "stream_type", "value": "organization"}})
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(tmp_path / "spec.yaml")
    with psycopg.connect(shaped18, autocommit=True) as conn:
        sample = seed_team_data(conn, spec, rows=90)
    assert _found(shaped18, spec) == sample.expected()
    assert set(sample.read_back) == {"unprocessed_events.stream_id", "unprocessed_events.event_data->organization_id",
                                     "event_archive.stream_id"}
    assert sample.notes == (
        "skipped public.unprocessed_events: a view, it shows the rows of its tables (nothing written to it)",
        "skipped public.event_archive: not in this schema (intentional exception)")


def test_orphans_the_schemas_triggers_copy_from_planted_rows_are_counted_apart(server):
    """The accounts shape logs every project in activity_log by trigger: a planted project whose
    account is gone leaves a log row naming it too; the line says so, and the check agrees."""
    accounts = SHAPES / "accounts"
    spec = load_spec(accounts / "spec.yaml")
    name = f"s_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(server.url(name), autocommit=True) as conn:
            load_migrations(conn, accounts / "supabase" / "migrations", apply_compat(conn))
            sample = seed_team_data(conn, spec, rows=120)
        assert sample.orphans["projects.account_id"] == 3 and sample.orphans["activity_log.account_id"] == 3
        assert sample.by_triggers == {"activity_log.account_id": 3}
        assert sample.lines[0].endswith("; more written by the schema's triggers: 3 in activity_log.account_id")
        assert _found(server.url(name), spec) == sample.expected()
    finally:
        drop_database(server, name)
