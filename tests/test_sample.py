import psycopg
import pytest

from fkrunbook import connect
from fkrunbook.environment import load_environments
from fkrunbook.orphans import find_orphans
from fkrunbook.sample import ensure_local_database, generate_data, load_baseline
from fkrunbook.server import ensure_server, stop_server


def test_generated_data_has_every_kind_of_row(database, sample):
    counts = dict(database.sql(
        "SELECT 'orgs', count(*) FROM organizations_projection UNION ALL "
        "SELECT 'soft', count(*) FROM organizations_projection WHERE deleted_at IS NOT NULL AND NOT is_active UNION ALL "
        "SELECT 'sessions', count(*) FROM impersonation_sessions_projection UNION ALL "
        "SELECT 'grants', count(*) FROM cross_tenant_access_grants_projection UNION ALL "
        "SELECT 'events', count(*) FROM domain_events UNION ALL "
        "SELECT 'queue', count(*) FROM workflow_queue_projection"))
    assert counts == {"orgs": sample.organizations, "soft": sample.soft_deleted, "sessions": sample.sessions,
                      "grants": sample.grants, "events": sample.events, "queue": sample.queue}
    assert sample.hard_deleted >= 2 and all(sample.orphans.values())
    assert sample.orphan_streams["domain_events"] == sample.hard_deleted


def test_generator_rejects_too_few_rows(database):
    from fkrunbook.errors import LocalServerError

    with psycopg.connect(database.url) as conn, pytest.raises(LocalServerError, match="at least 10"):
        generate_data(conn, rows=5)


def test_local_environment_starts_on_demand_and_creates_its_database(tmp_path, spec):
    envs = tmp_path / "runbooks" / "environments.yaml"
    envs.parent.mkdir()
    envs.write_text("environments:\n  local:\n    kind: embedded\n    data_dir: ../.fkrunbook/local\n"
                    "    database: fkrunbook\n")
    env = load_environments(envs)["local"]
    assert env.data_dir == (tmp_path / ".fkrunbook" / "local").resolve()
    try:
        db = connect(env)  # starts the server, creates the database with sample data
        assert sum(find_orphans(db, spec).fk_orphans.values()) > 0
        again = ensure_local_database(ensure_server(env.data_dir), env.database)
        assert again is None  # kept, not recreated
        bigger = ensure_local_database(ensure_server(env.data_dir), env.database, rows=5000, reset=True)
        assert bigger.sessions == 5000 + 3
        assert find_orphans(connect(env), spec).fk_orphans == bigger.orphans
    finally:
        assert stop_server(env.data_dir)
    assert not stop_server(env.data_dir)  # already stopped


def test_baseline_loads_twice(database):
    with psycopg.connect(database.url) as conn:
        load_baseline(conn)  # IF NOT EXISTS throughout: harmless on an existing schema
