"""A team's own schema in the local PostgreSQL: the Supabase compatibility layer (fkrunbook.compat)
and loading migrations and dumps as the Supabase CLI does (fkrunbook.rehearsal), on the three
majors (tests/majors.py: Debian's 15, npm's 17, the embedded 18).

The migrations under tests/team_schemas/event_store are shaped like an event-sourced Supabase project's:
an ltree path on the organization projection, a BEFORE INSERT router on domain_events writing
projections, RLS with auth.uid()/auth.jwt(), grants to the API roles, Supabase's extensions, a
CREATE INDEX CONCURRENTLY file and a realtime publication.
"""
import hmac
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from fkrunbook.compat import ROLES, SCHEMAS, CompatLayer, apply_compat
from fkrunbook.environment import Environment
from fkrunbook.errors import FkrunbookError, SchemaLoadError
from fkrunbook.history import list_local, split_statements
from fkrunbook.rehearsal import load_dump, load_migrations, locate_statements, reset_local_from, strip_meta_commands
from fkrunbook.server import embedded_bin_dir

from .conftest import create_database, drop_database, made_database
from .majors import MAJORS

MIGRATIONS = Path(__file__).parent / "team_schemas" / "event_store" / "supabase" / "migrations"
TEAM = {"tables": 4, "views": 1, "functions": 6, "policies": 6, "triggers": 3, "foreign_keys": 2}
ALWAYS_STOOD_IN = {"pg_graphql", "supabase_vault", "pg_net", "pg_cron", "plpgsql_check"}


def _fresh_database(srv):
    return create_database(srv, "c")


@pytest.fixture(params=MAJORS)
def fresh(request, pg_servers):
    """An empty database (no compatibility layer yet) on PostgreSQL 15, 17 and 18."""
    with made_database(pg_servers(request.param), _fresh_database) as url:
        yield url


@pytest.fixture
def fresh18(server):
    with made_database(server, _fresh_database) as url:
        yield url


def _rows(url, statement, params=None):
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


def _compat(url) -> CompatLayer:
    with psycopg.connect(url, autocommit=True) as conn:
        return apply_compat(conn)


def _stand_ins(lines) -> set[str]:
    return {line.split()[3].rstrip(":") for line in lines if line.startswith("stand-in for extension ")}


# -- the compatibility layer ------------------------------------------------------------------
def test_compat_creates_supabase_objects_once(fresh):
    layer = _compat(fresh)
    assert {"schema auth", "table auth.users", "function auth.uid()", "publication supabase_realtime",
            "table supabase_functions.hooks"} <= set(layer.created)
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
        # uuid-ossp and pgcrypto: the real ones where the server has them (15, 17), stand-ins where not (18)
        assert conn.execute("SELECT extensions.uuid_generate_v4() IS NOT NULL, length(extensions.gen_random_bytes(20)),"
                            " encode(extensions.digest('abc', 'sha256'), 'hex')").fetchone() == (
            True, 20, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        assert conn.execute("SELECT extensions.uuid_generate_v3(extensions.uuid_ns_dns(), 'www.example.com')"
                            ).fetchone()[0] == uuid.uuid3(uuid.NAMESPACE_DNS, "www.example.com")
        long_key = "k" * 100  # longer than sha256's 64-byte block: hashed first
        for key, algorithm in (("key", "sha256"), (long_key, "sha256"), (long_key, "sha512"), ("key", "md5")):
            assert conn.execute("SELECT encode(extensions.hmac('payload', %s, %s), 'hex'), "
                                "encode(extensions.hmac('payload'::bytea, convert_to(%s, 'UTF8'), %s), 'hex')",
                                (key, algorithm, key, algorithm)).fetchone() == (
                hmac.new(key.encode(), b"payload", algorithm).hexdigest(),) * 2
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
    named = layer.rewrite("create extension http with schema extensions")
    assert named[0] == 'CREATE SCHEMA IF NOT EXISTS "extensions"' and '"extensions".http_header' in " ".join(named)
    assert "@extschema@" not in " ".join(named)
    unnamed = " ".join(layer.rewrite("create extension http"))  # where PostgreSQL would put it: unqualified
    assert "CREATE OR REPLACE FUNCTION http_header(" in unnamed
    hnsw = 'CREATE INDEX "docs_e" ON "public"."docs" USING "hnsw" ("e" "extensions"."vector_cosine_ops")'
    assert layer.rewrite(hnsw) == []
    assert layer.rewrite("create unique index concurrently d on docs\n using ivfflat (e) with (lists = 1)") == []
    assert layer.rewrite("create index g on docs using gin (tags)") == ["create index g on docs using gin (tags)"]
    with_vector = CompatLayer("18.1", available=frozenset({"vector"}), settings=frozenset())
    assert with_vector.rewrite(hnsw) == [hnsw]
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
        "stand-in for extension http: not available on this server; statements creating it skipped "
        "(2 in the files loaded); http(), http_get/post/put/patch/delete/head() send nothing and answer status 200 "
        "with no content; its types http_request, http_response and http_header",
        "index method hnsw: from extension vector, which has a stand-in here; 1 CREATE INDEX statement skipped",
        "index method ivfflat: from extension vector, which has a stand-in here; 1 CREATE INDEX statement skipped",
        "setting transaction_timeout: not a parameter of PostgreSQL 15.18; 1 SET statement skipped",
    ]


# -- statements as the CLI splits them -----------------------------------------------------------
def test_statements_located_where_their_first_word_is():
    text = ("-- header\n\ncreate table a (id int);\n/* a\n   block */ create function f() returns int\n"
            "language sql as $$ select 1; $$;\n\n  select ';' ;\n-- trailing comment\n")
    located = locate_statements(text)
    assert [s for _, s in located] == split_statements(text)
    assert [line for line, _ in located] == [3, 5, 8, 9]
    for migration in list_local(MIGRATIONS):
        text = migration.path.read_text()
        assert [s for _, s in locate_statements(text)] == split_statements(text)


def test_meta_commands_blanked_with_line_numbers_kept():
    text = "\\restrict abc\nSET x = 1;\nCREATE FUNCTION f() RETURNS text AS $$\n\\n$$ LANGUAGE sql;\n\\unrestrict abc\n"
    stripped = strip_meta_commands(text)
    assert stripped == "\nSET x = 1;\nCREATE FUNCTION f() RETURNS text AS $$\n\\n$$ LANGUAGE sql;\n\n"
    assert [line for line, _ in locate_statements(stripped)] == [2, 3]


# -- migrations ---------------------------------------------------------------------------------
def test_migrations_load_as_the_cli_loads_them(fresh):
    layer = _compat(fresh)
    result = load_migrations(fresh, MIGRATIONS, layer)
    files = list_local(MIGRATIONS)
    assert result.files == tuple(m.filename for m in files)
    assert result.counts == TEAM
    history = _rows(fresh, "SELECT version, name, statements FROM supabase_migrations.schema_migrations ORDER BY 1")
    assert history == [(m.version, m.name, m.statements()) for m in files]
    lacking = {e for e in ("uuid-ossp", "pgcrypto") if e not in layer.available}
    assert _stand_ins(result.stand_ins) == ALWAYS_STOOD_IN | lacking
    assert result.lines[0].startswith(f"loaded 4 files from {MIGRATIONS} into ")
    assert _rows(fresh, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                        "'public.idx_impersonation_sessions_target_org'::regclass") == [(True,)]
    assert _rows(fresh, "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime' ORDER BY 1") == [
        ("domain_events",), ("organizations_projection",)]
    assert _rows(fresh, "SELECT jobname FROM cron.job") == [("expire-impersonation-sessions",)]
    assert load_migrations(fresh, MIGRATIONS, layer).files == ()  # every version in the history: nothing again


def test_loaded_schema_behaves_like_the_teams(fresh):
    """The event router writes the projection (ltree path from the slug), and RLS policies built on
    auth.uid()/auth.jwt() let a member see only their organization."""
    load_migrations(fresh, MIGRATIONS, _compat(fresh))
    parent, child, user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(fresh, autocommit=True) as conn:
        for org, slug, extra in ((parent, "acme-health", {}), (child, "acme-north", {"parent_org_id": str(parent)})):
            conn.execute("INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, event_data) "
                         "VALUES (%s, 'organization', 1, 'organization.created', %s)",
                         (org, json.dumps({"name": slug, "slug": slug, "type": "provider", **extra})))
        assert conn.execute("SELECT path::text FROM organizations_projection ORDER BY path").fetchall() == [
            ("acme_health",), ("acme_health.acme_north",)]
        assert conn.execute("SELECT count(*) FROM unprocessed_events").fetchone() == (0,)
        conn.execute("INSERT INTO auth.users (id, email, raw_app_meta_data) VALUES (%s, 'm@example.test', %s)",
                     (user, json.dumps({"org_id": str(child)})))
        conn.execute("INSERT INTO user_roles_projection (user_id, org_id, role) VALUES (%s, %s, 'member')",
                     (user, child))
        conn.execute("BEGIN")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": str(user), "role": "authenticated"}),))
        conn.execute("SET LOCAL ROLE authenticated")
        assert conn.execute("SELECT id FROM organizations_projection").fetchall() == [(child,)]
        conn.execute("ROLLBACK")


def test_broken_file_stops_the_load_with_its_name_line_and_error(fresh, tmp_path):
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    broken = "20250301000000_org_units.sql"
    (folder / broken).write_text(
        "-- Organization units under each organization.\n"
        "create table public.org_units (id uuid primary key, org_id uuid not null);\n\n"
        "insert into public.org_units (id, org_id)\n"
        "select gen_random_uuid(), id from public.organization_projection;\n")
    (folder / "20250302000000_after.sql").write_text("create table public.never_reached (id int);\n")
    with pytest.raises(SchemaLoadError) as caught:
        load_migrations(fresh, folder, _compat(fresh))
    err = caught.value
    assert str(err) == (f'{broken} line 4: relation "public.organization_projection" does not exist (SQLSTATE 42P01); '
                        f"fix that statement and load again; nothing of {broken} was kept; 4 earlier files loaded")
    assert (err.file, err.line, err.sqlstate) == (broken, 4, "42P01")
    assert isinstance(err, FkrunbookError)
    assert _rows(fresh, "SELECT to_regclass('public.org_units'), to_regclass('public.never_reached')") == [(None, None)]
    assert [r[0] for r in _rows(fresh, "SELECT version FROM supabase_migrations.schema_migrations ORDER BY 1")] == [
        m.version for m in list_local(MIGRATIONS)]


AI_APP = {  # an app with embeddings and a webhook through pgsql-http, as Supabase AI projects write them
    "20240101000000_setup.sql": "create extension if not exists http with schema extensions;\n"
                                "create extension if not exists vector with schema extensions;\n",
    "20240102000000_documents.sql": (
        "create table documents (id bigint primary key, body text, embedding vector(3));\n"
        "create index documents_embedding on documents using hnsw (embedding vector_cosine_ops);\n"
        "create function notify_search() returns trigger language plpgsql as $$\n"
        "begin\n"
        "  perform extensions.http_post('http://search.invalid/index', new.body, 'text/plain');\n"
        "  return new;\n"
        "end $$;\n"
        "create trigger documents_notify after insert on documents for each row execute function notify_search();\n"
        "create function nearest(query vector(3)) returns setof bigint language sql stable as $$\n"
        "  select id from documents order by embedding <=> query limit 1 $$;\n"),
    "20240103000000_l2_index.sql": "create index concurrently documents_l2 on documents using ivfflat "
                                   "(embedding vector_l2_ops) with (lists = 1);\n",
}


def test_http_and_vector_load_real_or_stood_in(fresh, tmp_path):
    """pgsql-http has a stand-in on every major here; pgvector is real on 18 and stood in on 15 and
    17, where its indexes are skipped with one line each. The schema works the same either way."""
    for name, text in AI_APP.items():
        (tmp_path / name).write_text(text)
    layer = _compat(fresh)
    result = load_migrations(fresh, tmp_path, layer)
    assert result.counts == {"tables": 1, "views": 0, "functions": 2, "policies": 0, "triggers": 1, "foreign_keys": 0}
    real_vector = "vector" in layer.available
    assert _stand_ins(result.lines) == {"http"} | ({"pg_graphql", "supabase_vault"}) | (
        set() if real_vector else {"vector"}) | {e for e in ("uuid-ossp", "pgcrypto") if e not in layer.available}
    skipped = [line for line in result.lines if line.startswith("index method ")]
    assert skipped == ([] if real_vector else [
        "index method hnsw: from extension vector, which has a stand-in here; 1 CREATE INDEX statement skipped",
        "index method ivfflat: from extension vector, which has a stand-in here; 1 CREATE INDEX statement skipped"])
    indexes = {r[0] for r in _rows(fresh, "SELECT indexname FROM pg_indexes WHERE tablename = 'documents'")}
    assert indexes == {"documents_pkey"} | ({"documents_embedding", "documents_l2"} if real_vector else set())
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("INSERT INTO documents VALUES (1, 'a', '[1,0,0]'), (2, 'b', '[0,1,0]')")  # the trigger posts
        assert conn.execute("SELECT nearest('[0,2,0]')").fetchall() == [(2,)]
        assert conn.execute("SELECT '[0,0]'::vector <-> '[3,4]', round(('[1,1]'::vector <=> '[1,1]')::numeric, 6), "
                            "vector_dims(embedding), format_type(atttypid, atttypmod) FROM documents, pg_attribute "
                            "WHERE id = 1 AND attrelid = 'documents'::regclass AND attname = 'embedding'"
                            ).fetchone() == (5.0, 0, 3, "vector(3)")
        assert conn.execute("SELECT ARRAY[1, 2]::real[]::vector::real[]").fetchone() == ([1.0, 2.0],)
        conn.execute("INSERT INTO documents VALUES (3, 'c', ARRAY[0.5, 0, 0]::numeric[]), (4, 'd', ARRAY[0, 0, 1])")
        assert conn.execute("SELECT nearest('[0,0,3]'), vector_dims(embedding) FROM documents WHERE id = 3"
                            ).fetchone() == (4, 3)  # numeric[] and integer[] assigned as pgvector allows
        response = conn.execute("SELECT (extensions.http_get('http://x.invalid')).status, "
                                "(extensions.http(('DELETE', 'http://x.invalid', ARRAY[extensions.http_header('a', "
                                "'b')], NULL, NULL)::extensions.http_request)).content").fetchone()
        assert response == (200, "")


def test_extension_without_a_stand_in_names_what_to_do(fresh18, tmp_path):
    (tmp_path / "20240101000000_geo.sql").write_text("-- maps\ncreate extension if not exists postgis;\n")
    with pytest.raises(SchemaLoadError) as caught:
        load_migrations(fresh18, tmp_path, _compat(fresh18))
    assert str(caught.value).startswith(
        '20240101000000_geo.sql line 2: extension "postgis" is not available (SQLSTATE 0A000); fkrunbook has no '
        "stand-in for extension 'postgis': install it on this PostgreSQL 18.")
    assert "point the local environment's bin_dir at a PostgreSQL that has it" in str(caught.value)


def test_statements_before_a_concurrent_index_are_committed_as_the_cli_does(fresh18, tmp_path):
    """CLI 2.117.0 commits what precedes CREATE INDEX CONCURRENTLY, runs it alone, then goes on in a new
    transaction: a later failure keeps the first part and records nothing."""
    (tmp_path / "20250101000000_split.sql").write_text(
        "create table a (id int);\ncreate index concurrently a_id on a (id);\ncreate table b (id int);\nselect 1/0;\n")
    with pytest.raises(SchemaLoadError, match=r"^20250101000000_split.sql line 4: division by zero \(SQLSTATE 22012\);"
                                              r".* statements before line 2 were committed"):
        load_migrations(fresh18, tmp_path)
    assert _rows(fresh18, "SELECT to_regclass('a')::text, to_regclass('a_id')::text, to_regclass('b')") == [
        ("a", "a_id", None)]
    assert _rows(fresh18, "SELECT count(*) FROM supabase_migrations.schema_migrations") == [(0,)]


@pytest.mark.parametrize("folder, message", [
    ("missing", "migrations folder '{}' does not exist; pass the folder that holds the <version>_<name>.sql files"),
    ("empty", "migrations folder '{}' has no <version>_<name>.sql files; pass the folder the Supabase CLI reads"),
], ids=["missing", "empty"])
def test_bad_migrations_folder_refused(fresh18, tmp_path, folder, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.sql").write_text("select 1;\n")
    with pytest.raises(SchemaLoadError, match="^" + message.format(tmp_path / folder).replace("(", r"\(")):
        load_migrations(fresh18, tmp_path / folder)
    assert _rows(fresh18, "SELECT to_regnamespace('supabase_migrations')") == [(None,)]


# -- dumps --------------------------------------------------------------------------------------
SUPABASE_DUMP = """

\\restrict k3y


SET statement_timeout = 0;
SET lock_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

COMMENT ON SCHEMA "public" IS 'standard public schema';

CREATE EXTENSION IF NOT EXISTS "pg_graphql" WITH SCHEMA "graphql";
COMMENT ON EXTENSION "pg_graphql" IS 'pg_graphql: GraphQL support';
CREATE EXTENSION IF NOT EXISTS "pgsodium";
CREATE EXTENSION IF NOT EXISTS "supabase_vault" WITH SCHEMA "vault";
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA "extensions";

CREATE TABLE IF NOT EXISTS "public"."organizations_projection" (
    "id" "uuid" DEFAULT "extensions"."uuid_generate_v4"() NOT NULL,
    "name" "text" NOT NULL
);
ALTER TABLE "public"."organizations_projection" OWNER TO "postgres";
ALTER TABLE ONLY "public"."organizations_projection" ADD CONSTRAINT "organizations_projection_pkey" PRIMARY KEY ("id");
ALTER TABLE "public"."organizations_projection" ENABLE ROW LEVEL SECURITY;
CREATE POLICY "members read" ON "public"."organizations_projection" FOR SELECT TO "authenticated"
    USING (("id" = ((("auth"."jwt"() -> 'app_metadata'::"text") ->> 'org_id'::"text"))::"uuid"));
ALTER PUBLICATION "supabase_realtime" ADD TABLE ONLY "public"."organizations_projection";
GRANT ALL ON TABLE "public"."organizations_projection" TO "anon";
GRANT ALL ON TABLE "public"."organizations_projection" TO "authenticated";
GRANT ALL ON TABLE "public"."organizations_projection" TO "service_role";
ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" GRANT ALL ON TABLES TO "service_role";

RESET ALL;

\\unrestrict k3y
"""


def test_dump_in_supabase_shape_loads(fresh, tmp_path):
    dump = tmp_path / "schema.sql"
    dump.write_text(SUPABASE_DUMP)
    layer = _compat(fresh)
    result = load_dump(fresh, dump, layer)
    assert result.files == ("schema.sql",)
    assert result.counts == {"tables": 1, "views": 0, "functions": 0, "policies": 1, "triggers": 0, "foreign_keys": 0}
    assert {"pg_graphql", "pgsodium", "supabase_vault"} <= _stand_ins(result.stand_ins)
    settings = [line for line in result.lines if line.startswith("setting ")]
    assert settings == ([] if "transaction_timeout" in layer.settings else
                        [f"setting transaction_timeout: not a parameter of PostgreSQL {layer.server_version}; "
                         "1 SET statement skipped"])
    assert _rows(fresh, "SELECT tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'") == [
        ("organizations_projection",)]


def test_dump_from_pg_dump_round_trips(fresh, fresh18, tmp_path):
    """A schema dumped with pg_dump 18 as `supabase db dump` runs it loads on each major, with the
    same objects (the trigger on auth.users is not in a dump of the team's schemas)."""
    load_migrations(fresh18, MIGRATIONS, _compat(fresh18))
    excluded = "auth|extensions|storage|graphql|graphql_public|vault|realtime|supabase_functions|supabase_migrations|" \
               "cron|net|pgsodium|information_schema|pg_*"
    dumped = subprocess.run([str(embedded_bin_dir() / "pg_dump"), "--schema-only", "--quote-all-identifiers",
                             "--exclude-schema", excluded, "--schema", "*", "--extension", "*", "--dbname", fresh18],
                            capture_output=True, text=True, check=True).stdout
    assert dumped.count("\\restrict ") == 1
    dump = tmp_path / "schema.sql"
    dump.write_text(dumped.replace('\nCREATE SCHEMA "public";', '\n-- CREATE SCHEMA "public";'))  # as the CLI does
    result = load_dump(fresh, dump, _compat(fresh))
    assert result.counts == {**TEAM, "triggers": TEAM["triggers"] - 1}


def test_broken_dump_names_its_line_and_keeps_nothing(fresh18, tmp_path):
    dump = tmp_path / "schema.sql"
    dump.write_text(SUPABASE_DUMP.replace('"auth"."jwt"()', '"auth"."jwt_claims"()'))
    line = SUPABASE_DUMP[:SUPABASE_DUMP.index('CREATE POLICY "members read"')].count("\n") + 1
    with pytest.raises(SchemaLoadError, match=rf"^schema.sql line {line}: function auth.jwt_claims\(\) does not exist "
                                              r"\(SQLSTATE 42883\); fix that statement and load again; nothing of "
                                              r"schema.sql was kept$"):
        load_dump(fresh18, dump, _compat(fresh18))
    assert _rows(fresh18, "SELECT to_regclass('public.organizations_projection')") == [(None,)]


def test_missing_dump_refused(fresh18, tmp_path):
    with pytest.raises(SchemaLoadError, match=r"^dump file '.*nope.sql' does not exist; write one with `supabase db dump"):
        load_dump(fresh18, tmp_path / "nope.sql")


# -- the local environment rebuilt from a team's files -------------------------------------------
@pytest.fixture
def local_env(server):
    name = f"local_{uuid.uuid4().hex[:8]}"
    yield Environment("local", "embedded", data_dir=server.data_dir, database=name)
    drop_database(server, name)
    drop_database(server, f"{name}__loading")


def _databases(server, env):
    return {r[0] for r in _rows(server.url(), "SELECT datname FROM pg_database WHERE datname LIKE %s",
                                (env.database + "%",))}


def test_reset_local_from_migrations_then_from_a_dump(server, local_env, tmp_path):
    result = reset_local_from(local_env, migrations_dir=MIGRATIONS)
    assert (result.database, result.files, result.counts) == (local_env.database, tuple(
        m.filename for m in list_local(MIGRATIONS)), TEAM)
    assert "publication supabase_realtime" in result.compat
    assert _stand_ins(result.stand_ins) == ALWAYS_STOOD_IN | {"uuid-ossp", "pgcrypto"}
    assert result.lines[0].startswith(f"loaded 4 files from {MIGRATIONS} into {local_env.database!r} (PostgreSQL 18")
    assert result.lines[1].startswith("Supabase compatibility layer created ") and "1 publication" in result.lines[1]
    url = server.url(local_env.database)
    assert len(_rows(url, "SELECT version FROM supabase_migrations.schema_migrations")) == 4
    assert _rows(url, "SHOW search_path") == [('"$user", public, extensions',)]  # Supabase's, for every session
    dump = tmp_path / "schema.sql"
    dump.write_text(SUPABASE_DUMP)
    assert reset_local_from(local_env, dump=dump).counts["tables"] == 1
    assert _rows(url, "SELECT to_regclass('public.domain_events')") == [(None,)]
    assert _databases(server, local_env) == {local_env.database}


def test_reset_local_from_a_broken_folder_leaves_the_database_as_it_was(server, local_env, tmp_path):
    reset_local_from(local_env, migrations_dir=MIGRATIONS)
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, folder)
    (folder / "20250301000000_broken.sql").write_text("select * from nowhere;\n")
    with pytest.raises(SchemaLoadError, match=r"^20250301000000_broken.sql line 1: relation \"nowhere\" does not exist "
                                              rf".*; local database '{local_env.database}' left as it was$"):
        reset_local_from(local_env, migrations_dir=folder)
    assert _databases(server, local_env) == {local_env.database}
    assert len(_rows(server.url(local_env.database), "SELECT version FROM supabase_migrations.schema_migrations")) == 4


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give either a migrations folder (--from-migrations) or a dump file (--from-dump), not both or neither"),
    ({"migrations_dir": "m", "dump": "d.sql"}, "give either a migrations folder"),
    ({"migrations_dir": "missing"}, "migrations folder '{tmp}/missing' does not exist"),
    ({"dump": "missing.sql"}, "dump file '{tmp}/missing.sql' does not exist"),
], ids=["neither", "both", "missing-folder", "missing-dump"])
def test_reset_local_from_bad_input_starts_nothing(tmp_path, kwargs, message):
    env = Environment("local", "embedded", data_dir=tmp_path / "data", database="fkrunbook")
    kwargs = {k: tmp_path / v for k, v in kwargs.items()}
    with pytest.raises(SchemaLoadError) as caught:
        reset_local_from(env, **kwargs)
    assert str(caught.value).startswith(message.format(tmp=tmp_path))
    assert not (tmp_path / "data").exists()  # no server initialised or started


def test_reset_local_from_refuses_a_url_environment(tmp_path):
    env = Environment("staging", "url", url_env="STAGING_DB_URL")
    with pytest.raises(SchemaLoadError, match="^environment 'staging' is not the embedded kind"):
        reset_local_from(env, migrations_dir=MIGRATIONS)


def test_local_reset_from_the_configured_migrations_through_the_cli(tmp_path):
    """`fkrunbook local reset --from-migrations` in a team's repository: the default folder is the
    one fkrunbook.toml names; each stand-in is one line; a missing folder is one line, exit 1.
    (`--rows 0`: the schema only; `fkrunbook init`'s spec names tables this schema does not have.)"""
    import shutil

    from fkrunbook.server import stop_server

    from .test_cli import invoke

    assert invoke("init", cwd=tmp_path).exit_code == 0
    shutil.copytree(MIGRATIONS, tmp_path / "supabase" / "migrations")
    try:
        result = invoke("local", "reset", "--from-migrations", "--rows", "0", cwd=tmp_path)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"loaded 4 files from {tmp_path / 'supabase' / 'migrations'} into 'fkrunbook'")
        assert any(line.startswith("stand-in for extension pg_graphql: ") for line in lines)
        missing = invoke("local", "reset", "--from-migrations", "no/such", cwd=tmp_path)
        assert missing.exit_code == 1 and "migrations folder 'no/such' does not exist" in missing.stderr
    finally:
        stop_server(tmp_path / ".fkrunbook" / "local")
