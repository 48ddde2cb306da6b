"""Finding an index that already covers a foreign-key column: in the team's earlier migration files,
and in the live catalog (composite indexes it leads, partial ones that hold every row with a value)."""
import psycopg
import pytest

from fkrunbook.catalog import covering_index
from fkrunbook.covering import covering_in_files, indexes_in_files, parse_create_index, strip_comments
from fkrunbook.history import list_local

T = "cross_tenant_access_grants_projection"


@pytest.mark.parametrize("statement, name, leading, partial", [
    (f"CREATE INDEX idx_a ON public.{T} (provider_org_id)", "idx_a", "provider_org_id", False),
    (f"create index concurrently if not exists idx_b on {T} using btree (provider_org_id)", "idx_b",
     "provider_org_id", False),
    (f'CREATE UNIQUE INDEX "Idx C" ON ONLY "public"."{T}" USING btree ("provider_org_id" DESC NULLS LAST, status) '
     "INCLUDE (granted_at)", "Idx C", "provider_org_id", False),
    (f"CREATE INDEX idx_d ON {T}\n  (provider_org_id COLLATE \"C\" text_pattern_ops)\n  WITH (fillfactor = 90)",
     "idx_d", "provider_org_id", False),
    (f"CREATE INDEX idx_e ON {T} (provider_org_id) WHERE status = 'active'", "idx_e", "provider_org_id", True),
    (f"CREATE INDEX idx_f ON {T} USING btree (lower(status))", "idx_f", None, False),
    (f"CREATE INDEX idx_g ON {T} ((provider_org_id))", "idx_g", None, False),
    (f"CREATE INDEX idx_h ON {T} (status, provider_org_id)", "idx_h", "status", False),
    (f"CREATE INDEX idx_i ON {T} (provider_org_id) TABLESPACE \"where\"", "idx_i", "provider_org_id", False),
])
def test_create_index_statements_are_read(statement, name, leading, partial):
    created = parse_create_index(statement)
    assert (created.name, created.table, created.leading_column, created.partial) == (name, T, leading, partial)


@pytest.mark.parametrize("where, not_null", [
    ("WHERE provider_org_id IS NOT NULL", "provider_org_id"),
    ("where ((provider_org_id is not null));", "provider_org_id"),
    ('TABLESPACE "where" WHERE "provider_org_id" IS NOT NULL', "provider_org_id"),
    ("WHERE provider_org_id IS NOT NULL AND status = 'active'", None),
    ("WHERE (provider_org_id IS NOT NULL) OR (status IS NOT NULL)", None),
    ("WHERE status IS NOT NULL", "status"),
    ("WHERE provider_org_id IS NULL", None),
])
def test_a_partial_index_on_is_not_null_is_read(where, not_null):
    created = parse_create_index(f"CREATE INDEX idx ON {T} (provider_org_id) {where}")
    assert created.partial and created.not_null == not_null
    assert created.covers("public", T, "provider_org_id") == (not_null == "provider_org_id")


def test_statements_that_create_no_index_are_ignored():
    assert parse_create_index(f"ALTER TABLE {T} ADD COLUMN note text") is None
    assert parse_create_index("SELECT 'CREATE INDEX x ON t (c)'") is None


def test_comments_are_removed_but_quoted_text_is_kept():
    sql = f"CREATE INDEX /* nested /* twice */ */ idx_c -- note\nON {T} (provider_org_id) -- WHERE x\n"
    assert parse_create_index(strip_comments(sql)).partial is False
    assert strip_comments("SELECT '--not a comment', $$ /* nor this */ $$") == \
        "SELECT '--not a comment', $$ /* nor this */ $$"


def _folder(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return list_local(tmp_path)


def test_the_folder_is_read_in_order_following_drops_and_renames(tmp_path):
    files = _folder(tmp_path, {
        "20250101000000_baseline.sql":
            f"-- CREATE INDEX commented_out ON {T} (consultant_org_id);\n"
            f"CREATE INDEX wide ON public.{T} (consultant_org_id, status);\n"
            f"CREATE INDEX old_name ON {T} (provider_org_id);\n"
            f"CREATE INDEX active_only ON {T} (scope_id) WHERE status = 'active';\n"
            f"DO $$ BEGIN EXECUTE 'CREATE INDEX in_do ON {T} (scope_id)'; END $$;\n",
        "20250201000000_tidy.sql":
            "ALTER INDEX public.old_name RENAME TO idx_access_grants_provider_org;\n"
            f"CREATE INDEX narrow ON {T} (consultant_org_id);\n"
            "DROP INDEX CONCURRENTLY IF EXISTS public.narrow, other CASCADE;\n",
    })
    indexes = indexes_in_files(files)
    assert "commented_out" not in indexes and "in_do" not in indexes and "narrow" not in indexes
    assert covering_in_files(indexes, "public", T, "provider_org_id") == "idx_access_grants_provider_org"
    assert covering_in_files(indexes, "public", T, "consultant_org_id") == "wide"
    assert covering_in_files(indexes, "public", T, "scope_id") is None  # only partial
    assert covering_in_files(indexes, "audit", T, "consultant_org_id") is None  # qualified with another schema


def test_the_narrowest_index_is_preferred(tmp_path):
    files = _folder(tmp_path, {"20250101000000_a.sql": f"CREATE INDEX two ON {T} (provider_org_id, status);\n"
                                                       f"CREATE INDEX one ON {T} (provider_org_id);\n"})
    assert covering_in_files(indexes_in_files(files), "public", T, "provider_org_id") == "one"


def test_a_partial_index_covers_only_when_it_keeps_every_row_with_a_value(tmp_path):
    files = _folder(tmp_path, {"20250101000000_a.sql":
        f"CREATE UNIQUE INDEX open_per_email ON {T} (provider_org_id, status) WHERE accepted_at IS NULL;\n"
        f"CREATE INDEX feed ON {T} (consultant_org_id) WHERE consultant_org_id IS NOT NULL;\n"
        f"CREATE INDEX feed_wide ON {T} (consultant_org_id, status);\n"
        f"CREATE INDEX scope_set ON {T} (scope_id) WHERE scope_id IS NOT NULL;\n"})
    indexes = indexes_in_files(files)
    assert covering_in_files(indexes, "public", T, "provider_org_id") is None  # leaves accepted rows out
    assert covering_in_files(indexes, "public", T, "consultant_org_id") == "feed_wide"  # without WHERE first
    assert covering_in_files(indexes, "public", T, "scope_id") == "scope_set"


LIVE = """
CREATE TABLE public.cov (a uuid, b uuid, c uuid, d uuid, e uuid, f uuid, created_at timestamptz, accepted_at timestamptz);
CREATE INDEX ON public.cov (a, created_at DESC);                                  -- composite, a leads
CREATE INDEX cov_b_open ON public.cov (b) WHERE accepted_at IS NULL;              -- partial: not every row
CREATE INDEX cov_c_set ON public.cov (c) WHERE c IS NOT NULL;                     -- every row with a value
CREATE INDEX cov_d_second ON public.cov (created_at, d);                          -- d does not lead
CREATE INDEX cov_e_set ON public.cov (e) WHERE (e IS NOT NULL) AND accepted_at IS NULL;
CREATE INDEX cov_f_set ON public.cov (f) WHERE f IS NOT NULL;
CREATE INDEX cov_f_full ON public.cov (f, created_at);
"""


def test_live_covering_index_composite_and_partial(database):
    database.sql(LIVE)
    with database.connect().read_only() as conn:
        found = {c: covering_index(conn, "public", "cov", c) for c in "abcdef"}
    assert found == {"a": "cov_a_created_at_idx", "b": None, "c": "cov_c_set", "d": None, "e": None,
                     "f": "cov_f_full"}
    with psycopg.connect(database.url) as conn:  # the generic plan of the key check's lookup uses it
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute("PREPARE lookup(uuid) AS SELECT 1 FROM ONLY public.cov x WHERE c = $1 FOR KEY SHARE OF x")
        plan = [line for (line,) in conn.execute("EXPLAIN (COSTS OFF) EXECUTE lookup(NULL)")]
    assert any("cov_c_set" in line for line in plan), plan


# Indexes PostgreSQL names itself (unnamed CREATE INDEX, primary keys, unique constraints), and the
# constraints' indexes: the files are read into the names the server gives them.
NAMED_BY_POSTGRES = """
CREATE TABLE public.members (
    organization_id uuid NOT NULL,
    profile_id      uuid NOT NULL,
    email           text NOT NULL UNIQUE CHECK (email <> 'unique primary key'),
    note            text DEFAULT 'primary key',
    PRIMARY KEY (organization_id, profile_id)
);
CREATE TABLE public.customers (organization_id uuid PRIMARY KEY, ref text CONSTRAINT customer_ref UNIQUE,
                               code text, UNIQUE NULLS NOT DISTINCT (code, ref) INCLUDE (organization_id));
CREATE INDEX ON public.members (organization_id, email DESC);
CREATE INDEX ON public.members (organization_id, email);
CREATE INDEX ON public.members (lower(email)) INCLUDE (note);
CREATE TABLE public.a_table_name_that_is_long_enough_to_be_cut_by_postgresql_here (
    an_organization_column_with_a_long_name_too uuid, other uuid);
CREATE INDEX ON public.a_table_name_that_is_long_enough_to_be_cut_by_postgresql_here
    (an_organization_column_with_a_long_name_too, other);
CREATE TABLE public.grants (id bigint, organization_id uuid, token text);
ALTER TABLE ONLY public.grants ADD CONSTRAINT grants_pkey PRIMARY KEY (id), ADD UNIQUE (organization_id, token);
CREATE UNIQUE INDEX grants_token ON public.grants (token);
ALTER TABLE public.grants ADD CONSTRAINT grants_token_unique UNIQUE USING INDEX grants_token;
CREATE TABLE public.gone (id int PRIMARY KEY, org uuid UNIQUE);
ALTER TABLE public.gone DROP CONSTRAINT gone_org_key;
"""


def test_indexes_are_named_as_postgresql_names_them(database, tmp_path):
    database.sql(NAMED_BY_POSTGRES)
    tables = ["members", "customers", "a_table_name_that_is_long_enough_to_be_cut_by_postgresql_here", "grants",
              "gone"]
    live = {(name, table, leading) for name, table, leading in database.sql(
        "SELECT ic.relname::text, c.relname::text, a.attname::text FROM pg_index i "
        "JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid "
        "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0] "
        "WHERE c.relname = ANY(%s)", (tables,))}
    read = indexes_in_files(_folder(tmp_path, {"20250101000000_a.sql": NAMED_BY_POSTGRES}))
    assert {(i.name, i.table, i.leading_column) for i in read.values()} == live
    assert covering_in_files(read, "public", "members", "organization_id") == "members_pkey"  # the composite key
    assert covering_in_files(read, "public", "customers", "organization_id") == "customers_pkey"
