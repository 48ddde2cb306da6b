"""Reading the team's earlier migration files for an index that already covers a foreign-key column."""
import pytest

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


def test_statements_that_create_no_named_index_are_ignored():
    assert parse_create_index(f"CREATE INDEX ON {T} (provider_org_id)") is None  # PostgreSQL picks the name
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
