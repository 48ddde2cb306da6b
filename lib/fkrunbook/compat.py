"""A Supabase compatibility layer for a plain PostgreSQL, so a team's own migrations or dump load
locally as they load on Supabase.

:func:`apply_compat` creates, idempotently, what the files take for granted: the platform's roles
(``anon``, ``authenticated``, ``service_role``, ``authenticator``, ``supabase_admin``, ...), its
schemas, ``auth.users`` with ``auth.uid()``/``jwt()``/``role()``/``email()``, storage's tables,
``supabase_functions.hooks``, the ``supabase_realtime`` publication and Supabase's ``search_path``
(see ``sql/supabase_compat.sql``), and installs ``uuid-ossp`` and ``pgcrypto`` in ``extensions`` as
Supabase does.

Extensions Supabase has and this server lacks (``pg_available_extensions`` decides) get a
stand-in: :meth:`CompatLayer.rewrite` turns ``CREATE EXTENSION`` of one into creating the schema
it names plus the stand-in's few objects (``cron.schedule`` records jobs, ``net.http_post`` sends
nothing, ...), and ``ALTER``/``DROP``/``COMMENT ON EXTENSION`` of one into nothing; a ``CREATE
INDEX`` using an index method of such an extension (pgvector's ``hnsw``, ``ivfflat``) is skipped. A
``SET`` of a parameter this server does not know (``transaction_timeout`` from a PostgreSQL 17
dump, on 15) is skipped too. Every stand-in and skip is reported, one line each.
"""
from __future__ import annotations

import contextlib
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources

import psycopg
from psycopg import sql

from .errors import SchemaLoadError
from .sqltext import IDENT, lex, unquote

# name -> attributes, as Supabase creates them. ``postgres`` only where the server lacks it (it is
# the bootstrap superuser of the local servers, and is left as it is).
ROLES = {
    "anon": "NOLOGIN NOINHERIT",
    "authenticated": "NOLOGIN NOINHERIT",
    "service_role": "NOLOGIN NOINHERIT BYPASSRLS",
    "authenticator": "LOGIN NOINHERIT",
    "supabase_admin": "LOGIN SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS",
    "supabase_auth_admin": "LOGIN NOINHERIT CREATEROLE",
    "supabase_storage_admin": "LOGIN NOINHERIT CREATEROLE",
    "dashboard_user": "NOLOGIN CREATEDB CREATEROLE REPLICATION",
    "postgres": "LOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS",
}
SCHEMAS = ("extensions", "auth", "storage", "graphql", "graphql_public", "vault", "realtime", "supabase_functions")


@dataclass(frozen=True)
class StandIn:
    """What replaces an extension the server lacks: ``statements`` run where the files create it,
    with ``@extschema@`` (as in an extension's own script) standing for the schema the statement
    names, qualified (``"extensions".``), or for nothing when it names none (the objects then go
    where PostgreSQL would put the extension's: the first schema of the search_path)."""
    extension: str
    detail: str = ""
    statements: tuple[str, ...] = ()
    preinstalled: bool = False  # Supabase installs it in every project: the stand-in goes in up front
    access_methods: tuple[str, ...] = ()  # index methods of the extension: CREATE INDEX ... USING one is skipped


STAND_INS = {s.extension: s for s in (
    StandIn("pg_graphql", preinstalled=True),
    StandIn("supabase_vault", "vault.secrets, vault.decrypted_secrets, vault.create_secret() and "
            "vault.update_secret() keep secrets in plain text (local only)", (
        "CREATE SCHEMA IF NOT EXISTS vault",
        "CREATE TABLE IF NOT EXISTS vault.secrets (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text, "
        "description text NOT NULL DEFAULT '', secret text NOT NULL, key_id uuid, nonce bytea, "
        "created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())",
        "CREATE UNIQUE INDEX IF NOT EXISTS secrets_name_idx ON vault.secrets (name) WHERE name IS NOT NULL",
        "CREATE OR REPLACE VIEW vault.decrypted_secrets AS SELECT id, name, description, secret, "
        "secret AS decrypted_secret, key_id, nonce, created_at, updated_at FROM vault.secrets",
        "CREATE OR REPLACE FUNCTION vault.create_secret(new_secret text, new_name text DEFAULT NULL, "
        "new_description text DEFAULT '', new_key_id uuid DEFAULT NULL) RETURNS uuid LANGUAGE sql AS "
        "$$ INSERT INTO vault.secrets (secret, name, description, key_id) VALUES ($1, $2, coalesce($3, ''), $4) "
        "RETURNING id $$",
        "CREATE OR REPLACE FUNCTION vault.update_secret(secret_id uuid, new_secret text DEFAULT NULL, "
        "new_name text DEFAULT NULL, new_description text DEFAULT NULL, new_key_id uuid DEFAULT NULL) RETURNS void "
        "LANGUAGE sql AS $$ UPDATE vault.secrets SET secret = coalesce($2, secret), name = coalesce($3, name), "
        "description = coalesce($4, description), key_id = coalesce($5, key_id), updated_at = now() "
        "WHERE id = $1 $$",
    ), preinstalled=True),
    StandIn("uuid-ossp", "uuid_generate_v1/v1mc/v4 (all random), uuid_generate_v3, uuid_nil and uuid_ns_* in "
            "schema extensions; no uuid_generate_v5", (
        *(f"CREATE OR REPLACE FUNCTION extensions.{name}() RETURNS uuid LANGUAGE sql VOLATILE AS "
          "$$ SELECT gen_random_uuid() $$" for name in ("uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4")),
        *(f"CREATE OR REPLACE FUNCTION extensions.{name}() RETURNS uuid LANGUAGE sql IMMUTABLE AS $$ SELECT "
          f"'{value}'::uuid $$" for name, value in (
              ("uuid_nil", "00000000-0000-0000-0000-000000000000"),
              ("uuid_ns_dns", "6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
              ("uuid_ns_url", "6ba7b811-9dad-11d1-80b4-00c04fd430c8"),
              ("uuid_ns_oid", "6ba7b812-9dad-11d1-80b4-00c04fd430c8"),
              ("uuid_ns_x500", "6ba7b814-9dad-11d1-80b4-00c04fd430c8"))),
        "CREATE OR REPLACE FUNCTION extensions.uuid_generate_v3(namespace uuid, name text) RETURNS uuid "
        "LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT encode(set_byte(set_byte(h, 6, (get_byte(h, 6) & 15) | 48), "
        "8, (get_byte(h, 8) & 63) | 128), 'hex')::uuid FROM (SELECT decode(md5(uuid_send($1) || "
        "convert_to($2, 'UTF8')), 'hex') AS h) AS s $$",
    ), preinstalled=True),
    StandIn("pgcrypto", "gen_random_bytes(), digest() and hmac() (md5, sha224-sha512) in schema extensions; "
            "no crypt(), gen_salt() or pgp_*()", (
        # 13 bytes of each random uuid carry no version or variant bits.
        "CREATE OR REPLACE FUNCTION extensions.gen_random_bytes(integer) RETURNS bytea LANGUAGE sql VOLATILE "
        "STRICT AS $$ SELECT substr(string_agg(substr(u, 1, 6) || substr(u, 10, 7), ''::bytea), 1, $1) "
        "FROM (SELECT uuid_send(gen_random_uuid()) AS u FROM generate_series(0, $1 / 13)) AS s $$",
        "CREATE OR REPLACE FUNCTION extensions.digest(bytea, text) RETURNS bytea LANGUAGE plpgsql IMMUTABLE "
        "STRICT AS $$ BEGIN CASE lower($2) WHEN 'md5' THEN RETURN decode(md5($1), 'hex'); "
        "WHEN 'sha224' THEN RETURN sha224($1); WHEN 'sha256' THEN RETURN sha256($1); "
        "WHEN 'sha384' THEN RETURN sha384($1); WHEN 'sha512' THEN RETURN sha512($1); "
        "ELSE RAISE EXCEPTION 'digest type % is not in the local pgcrypto stand-in', $2; END CASE; END $$",
        "CREATE OR REPLACE FUNCTION extensions.digest(text, text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT "
        "AS $$ SELECT extensions.digest(convert_to($1, 'UTF8'), $2) $$",
        # RFC 2104: H((K xor opad) || H((K xor ipad) || message)), K padded to the hash's block size.
        "CREATE OR REPLACE FUNCTION extensions.hmac(bytea, bytea, text) RETURNS bytea LANGUAGE plpgsql IMMUTABLE "
        "STRICT AS $$ DECLARE block int := CASE WHEN lower($3) IN ('sha384', 'sha512') THEN 128 ELSE 64 END; "
        "k bytea := $2; inner_key bytea; outer_key bytea; BEGIN "
        "IF length(k) > block THEN k := extensions.digest(k, $3); END IF; "
        "k := k || decode(repeat('00', block - length(k)), 'hex'); inner_key := k; outer_key := k; "
        "FOR i IN 0 .. block - 1 LOOP inner_key := set_byte(inner_key, i, get_byte(k, i) # 54); "
        "outer_key := set_byte(outer_key, i, get_byte(k, i) # 92); END LOOP; "
        "RETURN extensions.digest(outer_key || extensions.digest(inner_key || $1, $3), $3); END $$",
        "CREATE OR REPLACE FUNCTION extensions.hmac(text, text, text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT "
        "AS $$ SELECT extensions.hmac(convert_to($1, 'UTF8'), convert_to($2, 'UTF8'), $3) $$",
    ), preinstalled=True),
    StandIn("pg_net", "net.http_get(), net.http_post() and net.http_delete() send nothing", (
        "CREATE SCHEMA IF NOT EXISTS net",
        "CREATE SEQUENCE IF NOT EXISTS net.http_request_queue_id_seq",
        *(f"CREATE OR REPLACE FUNCTION net.{name}(url text, {body}params jsonb DEFAULT '{{}}', headers jsonb DEFAULT "
          f"'{headers}', timeout_milliseconds integer DEFAULT 5000) RETURNS bigint LANGUAGE sql AS "
          "$$ SELECT nextval('net.http_request_queue_id_seq') $$"
          for name, body, headers in (("http_get", "", "{}"), ("http_delete", "", "{}"),
                                      ("http_post", "body jsonb DEFAULT '{}', ", '{"Content-Type": "application/json"}'))),
    )),
    StandIn("pg_cron", "cron.schedule() records jobs in cron.job and never runs them; cron.unschedule() removes them", (
        "CREATE SCHEMA IF NOT EXISTS cron",
        "CREATE TABLE IF NOT EXISTS cron.job (jobid bigserial PRIMARY KEY, schedule text NOT NULL, command text NOT NULL, "
        "nodename text NOT NULL DEFAULT 'localhost', nodeport integer NOT NULL DEFAULT 5432, database text NOT NULL "
        "DEFAULT current_database(), username text NOT NULL DEFAULT current_user, active boolean NOT NULL DEFAULT true, "
        "jobname text UNIQUE)",
        "CREATE OR REPLACE FUNCTION cron.schedule(job_name text, schedule text, command text) RETURNS bigint "
        "LANGUAGE sql AS $$ INSERT INTO cron.job (jobname, schedule, command) VALUES ($1, $2, $3) ON CONFLICT (jobname) "
        "DO UPDATE SET schedule = excluded.schedule, command = excluded.command RETURNING jobid $$",
        "CREATE OR REPLACE FUNCTION cron.schedule(schedule text, command text) RETURNS bigint LANGUAGE sql AS "
        "$$ INSERT INTO cron.job (schedule, command) VALUES ($1, $2) RETURNING jobid $$",
        "CREATE OR REPLACE FUNCTION cron.unschedule(job_id bigint) RETURNS boolean LANGUAGE sql AS "
        "$$ WITH gone AS (DELETE FROM cron.job WHERE jobid = $1 RETURNING 1) SELECT count(*) > 0 FROM gone $$",
        "CREATE OR REPLACE FUNCTION cron.unschedule(job_name text) RETURNS boolean LANGUAGE sql AS "
        "$$ WITH gone AS (DELETE FROM cron.job WHERE jobname = $1 RETURNING 1) SELECT count(*) > 0 FROM gone $$",
    )),
    StandIn("pgsodium", "schema pgsodium only", ("CREATE SCHEMA IF NOT EXISTS pgsodium",)),
    StandIn("plpgsql_check"),
    StandIn("pgjwt"),
    StandIn("http", "http(), http_get/post/put/patch/delete/head() send nothing and answer status 200 with no "
            "content; its types http_request, http_response and http_header", (
        "DO $$ BEGIN IF to_regtype('@extschema@http_request') IS NULL THEN "
        "CREATE DOMAIN @extschema@http_method AS text; "
        "CREATE TYPE @extschema@http_header AS (field varchar, value varchar); "
        "CREATE TYPE @extschema@http_response AS (status integer, content_type varchar, "
        "headers @extschema@http_header[], content varchar); "
        "CREATE TYPE @extschema@http_request AS (method @extschema@http_method, uri varchar, "
        "headers @extschema@http_header[], content_type varchar, content varchar); END IF; END $$",
        "CREATE OR REPLACE FUNCTION @extschema@http_header(field varchar, value varchar) RETURNS "
        "@extschema@http_header LANGUAGE sql IMMUTABLE AS $$ SELECT ROW($1, $2)::@extschema@http_header $$",
        "CREATE OR REPLACE FUNCTION @extschema@http(request @extschema@http_request) RETURNS @extschema@http_response "
        "LANGUAGE sql AS $$ SELECT ROW(200, NULL, ARRAY[]::@extschema@http_header[], '')::@extschema@http_response $$",
        *(f"CREATE OR REPLACE FUNCTION @extschema@http_{verb.lower()}(uri varchar{arguments}) RETURNS "
          f"@extschema@http_response LANGUAGE sql AS $$ SELECT @extschema@http(ROW('{verb}', $1, NULL, {request})"
          "::@extschema@http_request) $$"
          for verb, arguments, request in (
              ("GET", "", "NULL, NULL"), ("HEAD", "", "NULL, NULL"), ("DELETE", "", "NULL, NULL"),
              ("GET", ", data jsonb", "NULL, NULL"), ("POST", ", data jsonb", "'application/x-www-form-urlencoded', NULL"),
              *((v, ", content varchar, content_type varchar", "$3, $2") for v in ("POST", "PUT", "PATCH", "DELETE")))),
        "CREATE OR REPLACE FUNCTION @extschema@urlencode(string varchar) RETURNS text LANGUAGE sql IMMUTABLE STRICT "
        "AS $$ SELECT string_agg(CASE WHEN c ~ '[A-Za-z0-9._~-]' THEN c ELSE upper(regexp_replace(encode("
        "convert_to(c, 'UTF8'), 'hex'), '(..)', '%\\1', 'g')) END, '' ORDER BY i) FROM "
        "regexp_split_to_table($1, '') WITH ORDINALITY AS s(c, i) $$",
        "CREATE OR REPLACE FUNCTION @extschema@http_set_curlopt(curlopt varchar, value varchar) RETURNS boolean "
        "LANGUAGE sql AS $$ SELECT true $$",
        "CREATE OR REPLACE FUNCTION @extschema@http_reset_curlopt() RETURNS boolean LANGUAGE sql AS $$ SELECT true $$",
    )),
    # pgvector's type without its C code: a base type over text's input and output (and varchar's
    # type modifier, so vector(1536) keeps its dimensions in the catalog), the distance operators
    # computed in SQL, casts from and to arrays. Its index methods have no stand-in.
    StandIn("vector", "type vector kept as text (values and dimensions not checked), operators <->, <=>, <#>, "
            "l2_distance(), cosine_distance(), inner_product(), vector_dims(), casts from integer[], real[], "
            "double precision[] and numeric[] and to real[]; "
            "indexes USING hnsw or ivfflat are not built", (
        "DO $$ BEGIN IF to_regtype('@extschema@vector') IS NULL THEN "
        "CREATE TYPE @extschema@vector; "
        "CREATE FUNCTION @extschema@vector_in(cstring, oid, integer) RETURNS @extschema@vector LANGUAGE internal "
        "IMMUTABLE STRICT PARALLEL SAFE AS 'textin'; "
        "CREATE FUNCTION @extschema@vector_out(@extschema@vector) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT "
        "PARALLEL SAFE AS 'textout'; "
        "CREATE FUNCTION @extschema@vector_typmod_in(cstring[]) RETURNS integer LANGUAGE internal IMMUTABLE STRICT "
        "PARALLEL SAFE AS 'varchartypmodin'; "
        "CREATE FUNCTION @extschema@vector_typmod_out(integer) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT "
        "PARALLEL SAFE AS 'varchartypmodout'; "
        "CREATE TYPE @extschema@vector (INPUT = @extschema@vector_in, OUTPUT = @extschema@vector_out, "
        "TYPMOD_IN = @extschema@vector_typmod_in, TYPMOD_OUT = @extschema@vector_typmod_out, "
        "INTERNALLENGTH = VARIABLE, STORAGE = extended, ALIGNMENT = int4); "
        "CREATE FUNCTION @extschema@vector_to_float8(@extschema@vector) RETURNS float8[] LANGUAGE sql IMMUTABLE "
        "STRICT AS 'SELECT (''{'' || btrim($1::text, ''[] '') || ''}'')::float8[]'; "
        "CREATE FUNCTION @extschema@array_to_vector(float8[]) RETURNS @extschema@vector LANGUAGE sql IMMUTABLE "
        "STRICT AS 'SELECT (''['' || array_to_string($1, '','') || '']'')::text::@extschema@vector'; "
        "CREATE FUNCTION @extschema@array_to_vector(real[]) RETURNS @extschema@vector LANGUAGE sql IMMUTABLE "
        "STRICT AS 'SELECT @extschema@array_to_vector($1::float8[])'; "
        "CREATE FUNCTION @extschema@vector_to_float4(@extschema@vector) RETURNS real[] LANGUAGE sql IMMUTABLE "
        "STRICT AS 'SELECT @extschema@vector_to_float8($1)::real[]'; "
        "CREATE FUNCTION @extschema@array_to_vector(integer[]) RETURNS @extschema@vector LANGUAGE sql IMMUTABLE "
        "STRICT AS 'SELECT @extschema@array_to_vector($1::float8[])'; "
        "CREATE FUNCTION @extschema@array_to_vector(numeric[]) RETURNS @extschema@vector LANGUAGE sql IMMUTABLE "
        "STRICT AS 'SELECT @extschema@array_to_vector($1::float8[])'; "
        + "".join(f"CREATE CAST ({t}[] AS @extschema@vector) WITH FUNCTION @extschema@array_to_vector({t}[]) "
                  "AS ASSIGNMENT; " for t in ("float8", "real", "integer", "numeric")) +
        "CREATE CAST (@extschema@vector AS real[]) WITH FUNCTION @extschema@vector_to_float4(@extschema@vector); "
        "CREATE FUNCTION @extschema@vector_dims(@extschema@vector) RETURNS integer LANGUAGE sql IMMUTABLE STRICT "
        "AS 'SELECT cardinality(@extschema@vector_to_float8($1))'; "
        "CREATE FUNCTION @extschema@l2_distance(@extschema@vector, @extschema@vector) RETURNS float8 LANGUAGE sql "
        "IMMUTABLE STRICT AS 'SELECT sqrt(sum((a - b) ^ 2)) FROM unnest(@extschema@vector_to_float8($1), "
        "@extschema@vector_to_float8($2)) AS t(a, b)'; "
        "CREATE FUNCTION @extschema@inner_product(@extschema@vector, @extschema@vector) RETURNS float8 LANGUAGE sql "
        "IMMUTABLE STRICT AS 'SELECT sum(a * b) FROM unnest(@extschema@vector_to_float8($1), "
        "@extschema@vector_to_float8($2)) AS t(a, b)'; "
        "CREATE FUNCTION @extschema@vector_negative_inner_product(@extschema@vector, @extschema@vector) RETURNS float8 "
        "LANGUAGE sql IMMUTABLE STRICT AS 'SELECT -@extschema@inner_product($1, $2)'; "
        "CREATE FUNCTION @extschema@cosine_distance(@extschema@vector, @extschema@vector) RETURNS float8 LANGUAGE sql "
        "IMMUTABLE STRICT AS 'SELECT 1 - sum(a * b) / nullif(sqrt(sum(a * a)) * sqrt(sum(b * b)), 0) FROM "
        "unnest(@extschema@vector_to_float8($1), @extschema@vector_to_float8($2)) AS t(a, b)'; "
        "CREATE OPERATOR @extschema@<-> (LEFTARG = @extschema@vector, RIGHTARG = @extschema@vector, "
        "FUNCTION = @extschema@l2_distance, COMMUTATOR = OPERATOR(@extschema@<->)); "
        "CREATE OPERATOR @extschema@<#> (LEFTARG = @extschema@vector, RIGHTARG = @extschema@vector, "
        "FUNCTION = @extschema@vector_negative_inner_product, COMMUTATOR = OPERATOR(@extschema@<#>)); "
        "CREATE OPERATOR @extschema@<=> (LEFTARG = @extschema@vector, RIGHTARG = @extschema@vector, "
        "FUNCTION = @extschema@cosine_distance, COMMUTATOR = OPERATOR(@extschema@<=>)); "
        "END IF; END $$",
    ), access_methods=("hnsw", "ivfflat")),
)}

NAME = rf"(?P<name>{IDENT})"
CREATE_EXTENSION = re.compile(r"CREATE\s+EXTENSION\s+(?:IF\s+NOT\s+EXISTS\s+)?" + NAME + r"(?P<options>.*)", re.I | re.S)
OTHER_EXTENSION = re.compile(r"(?:ALTER|COMMENT\s+ON|DROP)\s+EXTENSION\s+(?:IF\s+EXISTS\s+)?" + NAME, re.I)
SCHEMA_OPTION = re.compile(rf"\bSCHEMA\s+(?P<schema>{IDENT})", re.I)
INDEX_USING = re.compile(rf"CREATE\s+(?:UNIQUE\s+)?INDEX\s.*?\sON\s+(?:ONLY\s+)?(?:{IDENT}\s*\.\s*)?{IDENT}\s*"
                         rf"USING\s+(?P<method>{IDENT})", re.I | re.S)
SET_PARAMETER = re.compile(r"SET\s+(?:SESSION\s+|LOCAL\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_.]*)\s*(?:=|\bTO\b)", re.I)


def statement_body(statement: str) -> str:
    """The statement without the comments and blank space before its first word."""
    for kind, start, _ in lex(statement):
        if kind == "code" and not statement[start].isspace():
            return statement[start:]
    return ""


@dataclass
class CompatLayer:
    """What this server has, and what loading a team's files skipped on it."""
    server_version: str
    available: frozenset[str]  # pg_available_extensions
    settings: frozenset[str]  # pg_settings names
    created: list[str] = field(default_factory=list)  # what apply_compat created (empty when read only)
    installed: list[str] = field(default_factory=list)  # stand-ins put in up front
    skipped: Counter = field(default_factory=Counter)  # ("extension" | "setting", name) -> statements

    def stand_in(self, extension: str) -> StandIn | None:
        return STAND_INS.get(extension) if extension not in self.available else None

    @property
    def stood_in_methods(self) -> dict[str, str]:
        """Index access method -> the extension it comes from, for extensions with a stand-in here."""
        return {m: s.extension for s in STAND_INS.values() if self.stand_in(s.extension) for m in s.access_methods}

    def rewrite(self, statement: str) -> list[str]:
        """What to run for one statement of a team's file: itself, or a stand-in's statements."""
        body = statement_body(statement)
        if match := CREATE_EXTENSION.match(body):
            extension = unquote(match["name"])
            if stand_in := self.stand_in(extension):
                self.skipped["extension", extension] += 1
                schema = SCHEMA_OPTION.search(match["options"])
                schema = unquote(schema["schema"]) if schema else None
                create = [] if schema is None or schema.startswith("pg_") else [  # pg_catalog: pg_cron's, exists
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)).as_string()]
                prefix = sql.Identifier(schema).as_string() + "." if schema else ""
                return create + [s.replace("@extschema@", prefix) for s in stand_in.statements]
        elif match := OTHER_EXTENSION.match(body):
            if self.stand_in(extension := unquote(match["name"])):
                self.skipped["extension", extension] += 1
                return []
        elif (match := INDEX_USING.match(body)) and (method := unquote(match["method"])) in self.stood_in_methods:
            self.skipped["index", method] += 1
            return []
        elif (match := SET_PARAMETER.match(body)) and "." not in match["name"]:
            if (name := match["name"].lower()) not in self.settings:
                self.skipped["setting", name] += 1
                return []
        return [statement]

    def report(self) -> list[str]:
        """One line per stand-in in effect and per kind of statement skipped."""
        lines = []
        for extension in dict.fromkeys([*self.installed, *(n for kind, n in self.skipped if kind == "extension")]):
            stand_in, count = STAND_INS[extension], self.skipped["extension", extension]
            lines.append(f"stand-in for extension {extension}: not available on this server; statements creating it "
                         f"skipped ({count} in the files loaded)" + (f"; {stand_in.detail}" if stand_in.detail else ""))
        for (kind, name), count in self.skipped.items():
            if kind == "setting":
                lines.append(f"setting {name}: not a parameter of PostgreSQL {self.server_version}; "
                             f"{count} SET statement{'s' if count > 1 else ''} skipped")
            elif kind == "index":
                lines.append(f"index method {name}: from extension {self.stood_in_methods[name]}, which has a stand-in "
                             f"here; {count} CREATE INDEX statement{'s' if count > 1 else ''} skipped")
        return lines


def read_compat(conn: psycopg.Connection) -> CompatLayer:
    """The server's extensions and settings, without changing anything."""
    return CompatLayer(
        server_version=conn.execute("SHOW server_version").fetchone()[0].split()[0],
        available=frozenset(r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")),
        settings=frozenset(r[0] for r in conn.execute("SELECT name FROM pg_settings")))


def compat_sql() -> str:
    return resources.files("fkrunbook").joinpath("sql/supabase_compat.sql").read_text()


PRESENT = """
WITH own AS (SELECT classid, objid FROM pg_depend WHERE deptype = 'e')
SELECT 'role ' || rolname FROM pg_roles WHERE rolname = ANY(%(roles)s)
UNION ALL SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = ANY(%(schemas)s)
UNION ALL SELECT 'publication ' || pubname FROM pg_publication WHERE pubname = 'supabase_realtime'
UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extname IN ('uuid-ossp', 'pgcrypto')
UNION ALL SELECT 'table ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'v')
            AND (c.tableoid, c.oid) NOT IN (SELECT classid, objid FROM own)
UNION ALL SELECT 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE n.nspname = ANY(%(schemas)s) AND (p.tableoid, p.oid) NOT IN (SELECT classid, objid FROM own)
"""


@contextlib.contextmanager
def connection(conn_or_url):
    """An autocommit psycopg connection: opened from a URL (and closed), or the caller's, switched to
    autocommit for the block and switched back (it must have no transaction open)."""
    if isinstance(conn_or_url, psycopg.Connection):
        if conn_or_url.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            raise SchemaLoadError("the connection has a transaction open; commit or roll it back before loading")
        previous, conn_or_url.autocommit = conn_or_url.autocommit, True
        try:
            yield conn_or_url
        finally:
            conn_or_url.autocommit = previous
        return
    try:
        conn = psycopg.connect(conn_or_url, autocommit=True)
    except psycopg.Error as err:
        raise SchemaLoadError(f"cannot connect to the database to load into: {str(err).splitlines()[0]}; "
                              "check that the server is up") from None
    with conn:
        yield conn


def apply_compat(conn_or_url) -> CompatLayer:
    """Create the Supabase platform objects on the database (a psycopg connection or a URL), and the
    roles on its server, where they are missing. Return the layer, with ``created`` listing what
    this call created (empty when run a second time)."""
    with connection(conn_or_url) as conn:
        return _apply(conn)


def _apply(conn: psycopg.Connection) -> CompatLayer:
    names = {"roles": list(ROLES), "schemas": list(SCHEMAS)}
    before = [r[0] for r in conn.execute(PRESENT, names)]
    for role, options in ROLES.items():
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            try:
                conn.execute(sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
            except psycopg.errors.DuplicateObject:  # created meanwhile by another database's load
                pass
    conn.execute("GRANT anon, authenticated, service_role TO authenticator")
    layer = read_compat(conn)
    with conn.transaction():
        conn.execute(compat_sql())
        for stand_in in STAND_INS.values():
            if not stand_in.preinstalled:
                continue
            if stand_in.extension in layer.available:
                if stand_in.statements:  # the real one, where Supabase puts it
                    conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA extensions").format(
                        sql.Identifier(stand_in.extension)))
                continue
            for statement in stand_in.statements:
                conn.execute(statement)
            layer.installed.append(stand_in.extension)
    conn.execute('SET search_path TO "$user", public, extensions')
    after = [r[0] for r in conn.execute(PRESENT, names)]
    layer.created = [item for item in after if item not in set(before)]
    return layer
