"""The Supabase compatibility layer (fkrunbook.compat), on the embedded PostgreSQL 18 and on
Debian's PostgreSQL 15."""
import json
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fkrunbook.compat import ROLES, SCHEMAS, CompatLayer, apply_compat
from fkrunbook.server import ensure_server, stop_server

PG15 = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def pg15(tmp_path_factory):
    if not (PG15 / "initdb").exists():
        pytest.skip("Debian's postgresql-15 is not installed (apt-get install postgresql-15)")
    data_dir = tmp_path_factory.mktemp("compat15") / "data"
    try:
        yield ensure_server(data_dir, PG15)
    finally:
        stop_server(data_dir, PG15)


def _fresh_database(srv):
    name = f"c_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(srv.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def _drop(srv, name):
    with psycopg.connect(srv.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["18", "15"])
def fresh(request, server):
    """An empty database (no compatibility layer yet) on PostgreSQL 18, then on 15."""
    srv = server if request.param == "18" else request.getfixturevalue("pg15")
    name = _fresh_database(srv)
    yield srv.url(name)
    _drop(srv, name)


def _rows(url, statement, params=None):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def _compat(url) -> CompatLayer:
    with psycopg.connect(url, autocommit=True) as conn:
        return apply_compat(conn)


# -- the compatibility layer ------------------------------------------------------------------
def test_compat_creates_supabase_objects_once(fresh):
    layer = _compat(fresh)
    assert {"schema auth", "table auth.users", "function auth.uid()", "publication supabase_realtime"} <= set(
        layer.created)
    roles = {r[0] for r in _rows(fresh, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ROLES),))}
    assert roles == set(ROLES)
    schemas = {r[0] for r in _rows(fresh, "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(SCHEMAS),))}
    assert schemas == set(SCHEMAS)
    columns = {r[0] for r in _rows(fresh, "SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = 'auth' AND table_name = 'users'")}
    assert {"id", "email", "raw_user_meta_data", "raw_app_meta_data", "created_at", "phone", "is_anonymous"} <= columns
    assert _rows(fresh, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'service_role'") == [(False, True)]
    assert _rows(fresh, "SELECT count(*) FROM pg_publication WHERE pubname = 'supabase_realtime'") == [(1,)]
    assert _compat(fresh).created == []  # idempotent: a second run creates nothing and fails on nothing


def test_compat_auth_functions_read_the_jwt_settings_as_supabase_does(fresh):
    _compat(fresh)
    user = uuid.uuid4()
    claims = json.dumps({"sub": str(user), "role": "authenticated", "email": "a@example.test",
                         "app_metadata": {"org_id": "x"}})
    with psycopg.connect(fresh, autocommit=True) as conn:
        assert conn.execute("SELECT auth.uid(), auth.role(), auth.jwt()").fetchone() == (None, None, None)
        conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
        assert conn.execute("SELECT auth.uid(), auth.role(), auth.email(), auth.jwt() -> 'app_metadata' ->> 'org_id'"
                            ).fetchone() == (user, "authenticated", "a@example.test", "x")
        legacy = uuid.uuid4()  # older PostgREST: one setting per claim, which wins
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (str(legacy),))
        assert conn.execute("SELECT auth.uid()").fetchone() == (legacy,)


def test_compat_stand_ins_follow_what_the_server_has(fresh):
    layer = _compat(fresh)
    with psycopg.connect(fresh, autocommit=True) as conn:
        # uuid-ossp and pgcrypto: the real ones where the server has them (15), stand-ins where not (18)
        assert conn.execute("SELECT extensions.uuid_generate_v4() IS NOT NULL, length(extensions.gen_random_bytes(20)),"
                            " encode(extensions.digest('abc', 'sha256'), 'hex')").fetchone() == (
            True, 20, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        assert conn.execute("SELECT extensions.uuid_generate_v3(extensions.uuid_ns_dns(), 'www.example.com')"
                            ).fetchone()[0] == uuid.uuid3(uuid.NAMESPACE_DNS, "www.example.com")
        real = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    lacking = {e for e in ("uuid-ossp", "pgcrypto") if e not in layer.available}
    assert set(layer.installed) == {"pg_graphql", "supabase_vault"} | lacking
    assert {"uuid-ossp", "pgcrypto"} - lacking <= real


def test_compat_rewrites_statements_for_what_the_server_lacks():
    layer = CompatLayer("15.18", available=frozenset({"ltree", "pgcrypto"}), settings=frozenset({"statement_timeout"}))
    graphql = '-- GraphQL\nCREATE EXTENSION IF NOT EXISTS "pg_graphql" WITH SCHEMA "graphql"'
    assert layer.rewrite(graphql) == ['CREATE SCHEMA IF NOT EXISTS "graphql"']
    assert layer.rewrite("create extension if not exists ltree with schema extensions") == [
        "create extension if not exists ltree with schema extensions"]
    assert layer.rewrite("create extension pg_cron with schema pg_catalog")[0] == "CREATE SCHEMA IF NOT EXISTS cron"
    assert layer.rewrite("COMMENT ON EXTENSION \"pg_graphql\" IS 'pg_graphql: GraphQL support'") == []
    assert layer.rewrite("DROP EXTENSION IF EXISTS plpgsql_check") == []
    assert layer.rewrite("create extension postgis") == ["create extension postgis"]  # no stand-in: fails as it would
    assert layer.rewrite("SET transaction_timeout = 0") == []
    assert layer.rewrite("SET statement_timeout = 0") == ["SET statement_timeout = 0"]
    assert layer.rewrite("SET app.tenant = 'x'") == ["SET app.tenant = 'x'"]
    assert layer.report() == [
        "stand-in for extension pg_graphql: not available on this server; statements creating it skipped "
        "(2 in the files loaded)",
        "stand-in for extension pg_cron: not available on this server; statements creating it skipped "
        "(1 in the files loaded); cron.schedule() records jobs in cron.job and never runs them; "
        "cron.unschedule() removes them",
        "stand-in for extension plpgsql_check: not available on this server; statements creating it skipped "
        "(1 in the files loaded)",
        "setting transaction_timeout: not a parameter of PostgreSQL 15.18; 1 SET statement skipped",
    ]
