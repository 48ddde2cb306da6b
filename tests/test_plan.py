import pytest

from fkrunbook.errors import MigrationError
from fkrunbook.executor import apply_plan
from fkrunbook.lint import lint_files, lint_plan
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.plan import plan_migration

from .test_migration import MIGRATIONS


def _actions(db, spec):
    frame = plan_migration(db, spec, MIGRATIONS).statements
    return list(zip(frame["statement"].str.split().str[0:2].str.join(" "), frame["action"]))


def test_plan_lists_every_statement_in_file_order(database, spec):
    plan = plan_migration(database.connect(), spec, MIGRATIONS)
    frame = plan.statements
    assert list(frame["action"]) == ["skip"] + ["run"] * 8  # the team's index covers target_org_id
    assert frame["reason"].iloc[0] == "covered by valid index idx_impersonation_sessions_target_org"
    assert frame["statement"].iloc[1].startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS")
    assert frame["statement"].iloc[3].endswith("ON DELETE CASCADE NOT VALID")
    assert "VALIDATE CONSTRAINT" in frame["statement"].iloc[6]
    assert list(frame["transaction"][:3]) == ["none (CONCURRENTLY)"] * 3
    assert list(frame["blocks_writes"][3:6]) == ["for an instant, at most 150 ms per attempt"] * 3
    assert set(frame["blocks_writes"][6:]) == {"no"} and list(plan.files["state"]) == ["pending"] * 3


def test_every_step_is_skipped_when_already_in_place(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    database.sql("CREATE INDEX team_grants_provider ON cross_tenant_access_grants_projection (provider_org_id, status)")
    database.sql("ALTER TABLE cross_tenant_access_grants_projection ADD CONSTRAINT team_grants_consultant_fk "
                 "FOREIGN KEY (consultant_org_id) REFERENCES organizations_projection (id) ON DELETE CASCADE NOT VALID")
    frame = plan_migration(db, spec, MIGRATIONS).statements
    assert list(frame["action"]) == ["skip", "skip", "run", "run", "run", "skip", "run", "run", "run"]
    assert frame["reason"].iloc[1] == "covered by valid index team_grants_provider"
    assert frame["reason"].iloc[5] == "constraint team_grants_consultant_fk already exists"
    assert frame["statement"].iloc[8].endswith('VALIDATE CONSTRAINT "team_grants_consultant_fk"')
    apply_plan(db, spec, MIGRATIONS, {})
    assert set(plan_migration(db, spec, MIGRATIONS).statements["action"]) == {"skip"}


def test_a_partial_or_non_leading_index_does_not_cover(database, spec):
    database.sql("CREATE INDEX partial_provider ON cross_tenant_access_grants_projection (provider_org_id) "
                 "WHERE status = 'active'")
    database.sql("CREATE INDEX second_column ON cross_tenant_access_grants_projection (status, consultant_org_id)")
    frame = plan_migration(database.connect(), spec, MIGRATIONS).statements
    assert list(frame["action"][:3]) == ["skip", "run", "run"]


def test_an_invalid_leftover_index_is_dropped_and_rebuilt(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    name = spec.foreign_keys[1].index
    failed = database.sql  # a UNIQUE build on a column with duplicates fails and leaves an INVALID index
    with pytest.raises(Exception, match="could not create unique index"):
        failed(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON cross_tenant_access_grants_projection (provider_org_id)")
    assert database.sql(f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{name}'::regclass") == [(False,)]
    frame = plan_migration(db, spec, MIGRATIONS).statements
    assert frame["statement"].iloc[1] == f'DROP INDEX CONCURRENTLY IF EXISTS "public"."{name}"'
    assert frame["reason"].iloc[2] == "rebuild after dropping the INVALID leftover"
    apply_plan(db, spec, MIGRATIONS, {})
    assert database.sql(f"SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = '{name}'::regclass") == \
        [(True, False)]


def test_plan_hash_is_stable_and_changes_with_the_database(database, spec, tmp_path):
    db = database.connect()
    first, second = plan_migration(db, spec, MIGRATIONS), plan_migration(db, spec, MIGRATIONS)
    assert first.hash == second.hash and len(first.hash) == 64
    assert plan_migration(database.connect("guarded"), spec, MIGRATIONS).hash != first.hash  # another environment
    database.sql(f"CREATE INDEX {spec.foreign_keys[1].index} ON cross_tenant_access_grants_projection (provider_org_id)")
    assert plan_migration(db, spec, MIGRATIONS).hash != first.hash


def test_apply_refuses_a_plan_that_changed_since_the_preview(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    previewed = plan_migration(db, spec, MIGRATIONS).hash
    database.sql(f"CREATE INDEX {spec.foreign_keys[2].index} ON cross_tenant_access_grants_projection (consultant_org_id)")
    with pytest.raises(MigrationError, match="the apply plan changed since it was previewed"):
        apply_plan(db, spec, MIGRATIONS, {}, expected_hash=previewed)
    result = apply_plan(db, spec, MIGRATIONS, {}, expected_hash=plan_migration(db, spec, MIGRATIONS).hash)
    assert result.plan_hash != previewed


def test_plan_refuses_a_hand_edited_migration_file(database, spec, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    for path in MIGRATIONS.glob("*.sql"):
        (folder / path.name).write_text(path.read_text())
    edited = sorted(folder.glob("*.sql"))[1]
    edited.write_text(edited.read_text().replace("NOT VALID;", ";"))
    with pytest.raises(MigrationError, match="differs from what the spec generates"):
        plan_migration(database.connect(), spec, folder)


def test_squawk_finds_nothing_in_the_planned_statements_but_is_blind_to_do_blocks(database, spec):
    plan = plan_migration(database.connect(), spec, MIGRATIONS)
    assert lint_plan(plan, "18").empty
    assert lint_files(plan, "18").empty  # the DO blocks hide the ALTERs from squawk


def test_squawk_objects_to_the_naive_statement(tmp_path):
    from fkrunbook.lint import _squawk

    naive = ("ALTER TABLE impersonation_sessions_projection ADD CONSTRAINT fk FOREIGN KEY (target_org_id) "
             "REFERENCES organizations_projection (id) ON DELETE CASCADE;")
    rules = {f["rule_name"] for f in _squawk(naive, True, "18")}
    assert "adding-foreign-key-constraint" in rules and "require-lock-timeout" in rules
