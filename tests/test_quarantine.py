"""Nothing lost: the clean-up's quarantine lists and restores exactly the rows it removed (or whose
column it cleared, for a SET NULL key)."""
from dataclasses import replace

import pytest

from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans, find_orphans
from fkrunbook.quarantine import QuarantineError, list_quarantine, restore_quarantine

from .test_cli import invoke
from .test_migration import MIGRATIONS
from .test_orphans import BOTH_GONE, GRANTS

EVERY_ROW = ("SELECT 'sessions', to_jsonb(s) FROM impersonation_sessions_projection s UNION ALL "
             "SELECT 'grants', to_jsonb(g) FROM cross_tenant_access_grants_projection g")


def _rows(database):
    return sorted((kind, str(sorted(row.items()))) for kind, row in database.sql(EVERY_ROW))


def test_restore_puts_back_exactly_the_rows_removed(database, spec, tmp_path):
    database.sql("UPDATE cross_tenant_access_grants_projection SET permissions = '[\"read\", {\"scope\": [1, 2]}]' "
                 "WHERE authorization_type = 'planted orphan'")  # jsonb with nesting must survive the trip
    before = _rows(database)
    db = database.connect()
    removed = clean_up_orphans(db, spec, tmp_path, "run-q", confirm=True)
    assert _rows(database) != before and find_orphans(db, spec).clean
    listed = list_quarantine(db, "run-q")
    assert int(listed["rows"].sum()) == removed.total and int(listed["restored"].sum()) == 0
    restored = restore_quarantine(db, "run-q")
    assert int(restored["rows_restored"].sum()) == removed.total
    assert _rows(database) == before  # column by column, jsonb and arrays included
    assert int(list_quarantine(db, "run-q")["restored"].sum()) == removed.total
    again = restore_quarantine(db, "run-q")
    assert again.empty  # nothing left to restore: nothing inserted twice
    assert _rows(database) == before


def test_restore_after_the_key_exists_refuses_and_restores_nothing(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "run-q", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    after_apply = _rows(database)
    with pytest.raises(QuarantineError, match="nothing was restored .* their organization is gone"):
        restore_quarantine(db, "run-q")
    assert _rows(database) == after_apply


def test_restore_of_an_unknown_run_is_one_clear_line(database):
    with pytest.raises(QuarantineError, match="run 'nope' has nothing in quarantine"):
        restore_quarantine(database.connect(), "nope")


def test_quarantine_invoke(project_copy, database, spec, tmp_path):
    clean_up_orphans(database.connect(), spec, tmp_path, "run-cli", confirm=True)
    env = {"STAGING_DATABASE_URL": database.url}
    listed = invoke("quarantine", "list", "--env", "staging", cwd=project_copy, env=env)
    assert listed.exit_code == 0 and "run-cli" in listed.stdout
    restored = invoke("quarantine", "restore", "run-cli", "--env", "staging", cwd=project_copy, env=env)
    assert restored.exit_code == 0 and "restored" in restored.stdout.splitlines()[-1]
    assert not find_orphans(database.connect(), spec).clean  # the orphans are back, as they were


def _clearing(spec, columns):
    return replace(spec, foreign_keys=tuple(replace(fk, on_delete="set null") if fk.column in columns else fk
                                            for fk in spec.foreign_keys))


@pytest.mark.parametrize("cleared", [("consultant_org_id",), ("provider_org_id", "consultant_org_id")],
                         ids=["one column", "two columns of one row"])
def test_restore_gives_a_cleared_column_its_value_back(database, spec, tmp_path, cleared):
    for column in cleared:
        database.sql(f"ALTER TABLE {GRANTS} ALTER COLUMN {column} DROP NOT NULL")
    database.sql(BOTH_GONE)
    spec = _clearing(spec, cleared)
    before = _rows(database)
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "run-s", confirm=True)
    assert find_orphans(db, spec).clean
    both = database.sql(f"SELECT consultant_org_id, provider_org_id FROM {GRANTS} WHERE authorization_type = 'both gone'")
    assert both == ([(None, None)] if len(cleared) == 2 else [])  # cleared twice, or deleted by the provider key
    restore_quarantine(db, "run-s")
    assert _rows(database) == before
    assert restore_quarantine(db, "run-s").empty and _rows(database) == before


def test_restore_of_a_cleared_column_without_a_primary_key_refuses_and_restores_nothing(database, spec, tmp_path):
    database.sql(f"ALTER TABLE {GRANTS} ALTER COLUMN consultant_org_id DROP NOT NULL")
    db = database.connect()
    clean_up_orphans(db, _clearing(spec, ("consultant_org_id",)), tmp_path, "run-s", confirm=True)
    database.sql(f"ALTER TABLE {GRANTS} DROP CONSTRAINT {GRANTS}_pkey")
    after = _rows(database)
    with pytest.raises(QuarantineError, match=f'cannot restore "public"."{GRANTS}".consultant_org_id: the table has '
                                              "no primary key to find its rows by; nothing was restored"):
        restore_quarantine(db, "run-s")
    assert _rows(database) == after
