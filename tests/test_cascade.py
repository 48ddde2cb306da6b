import threading
from dataclasses import replace

import psycopg
import pytest

from fkrunbook.cascade import validate_cascade
from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.errors import CascadeValidationError
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans

from .conftest import CROSS_SCHEMA, cross_schema_spec, schema_state
from .test_migration import MIGRATIONS


def _apply(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    return db


def test_cascade_removes_each_child_and_leaves_no_row_behind(database, spec, tmp_path):
    db = _apply(database, spec, tmp_path)
    before = schema_state(database.url)
    result = validate_cascade(db, spec)
    assert result.passed and result.counts_match
    assert list(result.checks["column"]) == [fk.label for fk in spec.foreign_keys]
    assert result.checks["cascaded"].all() and result.checks["organization_deleted"].all()
    assert schema_state(database.url) == before


def test_cascade_refuses_before_the_keys_exist(database, spec):
    with pytest.raises(CascadeValidationError, match="no foreign key on impersonation_sessions_projection.target_org_id"
                                                     " yet: run the apply phase first"):
        validate_cascade(database.connect(), spec)


def test_cascade_detects_a_key_that_does_not_cascade(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    for fk in spec.foreign_keys:
        on_delete = "SET NULL" if fk.column == "consultant_org_id" else "CASCADE"
        database.sql(f"ALTER TABLE {fk.table} ALTER COLUMN {fk.column} DROP NOT NULL")
        database.sql(f"ALTER TABLE {fk.table} ADD CONSTRAINT {fk.constraint} FOREIGN KEY ({fk.column}) "
                     f"REFERENCES organizations_projection (id) ON DELETE {on_delete}")
    before = schema_state(database.url)
    with pytest.raises(CascadeValidationError, match="left rows behind in cross_tenant_access_grants_projection.consultant"):
        validate_cascade(db, spec)
    assert schema_state(database.url) == before


def _with_set_null(spec):
    return replace(spec, foreign_keys=tuple(replace(fk, on_delete="set null") if fk.column == "consultant_org_id"
                                            else fk for fk in spec.foreign_keys))


@pytest.mark.parametrize("in_database, passes", [("SET NULL", True), ("CASCADE", False)])
def test_a_set_null_key_keeps_its_row_and_clears_the_column(database, spec, tmp_path, in_database, passes):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    spec = _with_set_null(spec)
    database.sql("ALTER TABLE cross_tenant_access_grants_projection ALTER COLUMN consultant_org_id DROP NOT NULL")
    for fk in spec.foreign_keys:
        action = in_database if fk.on_delete == "set null" else "CASCADE"
        database.sql(f"ALTER TABLE {fk.table} ADD CONSTRAINT {fk.constraint} FOREIGN KEY ({fk.column}) "
                     f"REFERENCES organizations_projection (id) ON DELETE {action}")
    before = schema_state(database.url)
    if passes:
        result = validate_cascade(db, spec)
        checks = result.checks.set_index("column")
        assert result.passed and checks.loc["cross_tenant_access_grants_projection.consultant_org_id", "on_delete"] \
            == "set null"
    else:  # the row went with the organization instead
        with pytest.raises(CascadeValidationError, match=r"did not clear cross_tenant_access_grants_projection\."
                                                         r"consultant_org_id \(ON DELETE SET NULL\) in its row"):
            validate_cascade(db, spec)
    assert schema_state(database.url) == before


def test_a_deferred_key_that_the_delete_breaks_fails_the_test(database, spec, tmp_path):
    db = _apply(database, spec, tmp_path)
    database.sql("""
        CREATE TABLE org_notes (org_id uuid NOT NULL REFERENCES organizations_projection DEFERRABLE INITIALLY DEFERRED);
        CREATE FUNCTION note_org() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO org_notes VALUES (NEW.id); RETURN NEW; END $$;
        CREATE TRIGGER note_org AFTER INSERT ON organizations_projection FOR EACH ROW EXECUTE FUNCTION note_org();
    """)  # a real delete of an organization fails at its commit: the rolled-back test must say so
    before = schema_state(database.url)
    with pytest.raises(CascadeValidationError) as caught:
        validate_cascade(db, spec)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(
        "deleting the test organization breaks the deferred foreign key org_notes_org_id_fkey on public.org_notes "
        "(checked at commit)")
    assert schema_state(database.url) == before


# The team's real tables require more than the local fixture: extension types, enums, domains,
# CHECKs with literal lists and ranges, UNIQUE texts, and foreign keys to other tables.
RICHER_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE session_channel AS ENUM ('web', 'cli', 'api');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE TABLE users (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), email citext NOT NULL UNIQUE,
                    role text NOT NULL CHECK (role IN ('super_admin', 'member')));
ALTER TABLE organizations_projection
    ADD COLUMN billing_email text NOT NULL DEFAULT 'billing@example.test' CHECK (billing_email LIKE '%@%'),
    ADD COLUMN region citext NOT NULL DEFAULT 'eu' CHECK (region IN ('eu', 'us')),
    ADD COLUMN seats positive_int NOT NULL DEFAULT 1;
ALTER TABLE organizations_projection ALTER COLUMN billing_email DROP DEFAULT,
    ALTER COLUMN region DROP DEFAULT, ALTER COLUMN seats DROP DEFAULT;
ALTER TABLE impersonation_sessions_projection
    ADD COLUMN channel session_channel NOT NULL DEFAULT 'web',
    ADD COLUMN ticket_ref varchar(24) NOT NULL DEFAULT 'legacy' ,
    ADD COLUMN risk_score integer NOT NULL DEFAULT 5 CHECK (risk_score BETWEEN 3 AND 7),
    ADD COLUMN approved_by uuid;
UPDATE impersonation_sessions_projection SET ticket_ref = left(session_id, 24), approved_by = NULL,
    ended_at = CASE WHEN status = 'ended' THEN started_at END;
ALTER TABLE impersonation_sessions_projection ALTER COLUMN channel DROP DEFAULT,
    ALTER COLUMN ticket_ref DROP DEFAULT, ALTER COLUMN risk_score DROP DEFAULT,
    ADD CONSTRAINT impersonation_ticket_unique UNIQUE (ticket_ref),
    ADD CONSTRAINT impersonation_ended_needs_time CHECK (status <> 'ended' OR ended_at IS NOT NULL);
ALTER TABLE cross_tenant_access_grants_projection
    ADD COLUMN approver_id uuid REFERENCES users (id),
    ADD COLUMN contract_no text NOT NULL DEFAULT 'c-0' CHECK (contract_no ~ '^c-[0-9]+$');
UPDATE cross_tenant_access_grants_projection SET approver_id = NULL;
ALTER TABLE cross_tenant_access_grants_projection ALTER COLUMN contract_no DROP DEFAULT,
    ALTER COLUMN approver_id SET NOT NULL;
"""


def test_cascade_makes_rows_that_a_stricter_real_schema_accepts(database, spec, tmp_path):
    database.sql("DELETE FROM cross_tenant_access_grants_projection")  # approver_id becomes NOT NULL below
    database.sql(RICHER_SCHEMA)
    db = _apply(database, spec, tmp_path)
    before = schema_state(database.url)
    users_before = database.sql("SELECT count(*) FROM users")[0][0]
    result = validate_cascade(db, spec)
    assert result.passed and result.counts_match
    assert schema_state(database.url) == before
    assert database.sql("SELECT count(*) FROM users")[0][0] == users_before == 0


def test_cascade_on_an_environment_without_organizations(database, spec, tmp_path):
    db = _apply(database, spec, tmp_path)
    database.sql("TRUNCATE organizations_projection CASCADE")  # and every table referencing it
    before = schema_state(database.url)
    result = validate_cascade(db, spec)
    assert result.passed and result.counts_match and (result.counts["before"] == 0).all()
    assert len(result.checks) == len(spec.foreign_keys) and result.checks["organization_deleted"].all()
    assert schema_state(database.url) == before


@pytest.fixture
def owner(database, spec, monkeypatch):
    """The database as a role that owns the spec's tables but is neither superuser nor BYPASSRLS:
    FORCE ROW LEVEL SECURITY applies to it."""
    role = f"owner_{database.name}"
    database.sql(f'CREATE ROLE "{role}" LOGIN')
    for table in [spec.parent.table] + spec.child_tables:
        database.sql(f'ALTER TABLE {table} OWNER TO "{role}"')
    url = database.url.replace("postgres@", f"{role}@")
    monkeypatch.setenv("FKRUNBOOK_OWNER_URL", url)
    yield Database(Environment("owner", "url", url_env="FKRUNBOOK_OWNER_URL"), url)
    database.sql(f'REASSIGN OWNED BY "{role}" TO postgres; DROP OWNED BY "{role}"; DROP ROLE "{role}"')


def test_cascade_is_not_fooled_by_row_level_security_hiding_a_survivor(database, spec, tmp_path, owner):
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    for fk in spec.foreign_keys:  # target_org_id: SET NULL, so its row survives the delete
        on_delete = "SET NULL" if fk.column == "target_org_id" else "CASCADE"
        database.sql(f"ALTER TABLE {fk.table} ALTER COLUMN {fk.column} DROP NOT NULL")
        database.sql(f"ALTER TABLE {fk.table} ADD CONSTRAINT {fk.constraint} FOREIGN KEY ({fk.column}) "
                     f"REFERENCES organizations_projection (id) ON DELETE {on_delete}")
    database.sql("ALTER TABLE impersonation_sessions_projection ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
    database.sql("CREATE POLICY live_orgs ON impersonation_sessions_projection "
                 "USING (target_org_id IN (SELECT id FROM organizations_projection))")  # hides it once the org goes
    with pytest.raises(CascadeValidationError, match="left rows behind in impersonation_sessions_projection.target_org_id"):
        validate_cascade(owner, spec)


def test_cascade_under_forced_row_level_security_on_the_owner(database, spec, tmp_path, owner):
    _apply(database, spec, tmp_path)
    for table in spec.child_tables + [spec.parent.table]:
        database.sql(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
        database.sql(f"CREATE POLICY everyone ON {table} USING (true)")
    before = schema_state(database.url)
    result = validate_cascade(owner, spec)
    assert result.passed and result.checks["cascaded"].all()
    assert schema_state(database.url) == before


def test_an_environment_failure_stops_the_test_in_one_line(database, spec, tmp_path):
    db = _apply(database, spec, tmp_path)
    spec = replace(spec, migration=replace(spec.migration, lock_timeout="100ms"))
    holding, done = threading.Event(), threading.Event()

    def hold_lock():  # another session blocks writes to one child table
        with psycopg.connect(database.url) as conn:
            conn.execute("LOCK TABLE impersonation_sessions_projection IN SHARE MODE")
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    holding.wait(10)
    before = schema_state(database.url)
    try:
        with pytest.raises(CascadeValidationError) as caught:
            validate_cascade(db, spec)
    finally:
        done.set()
        holder.join()
    message = str(caught.value)
    assert "\n" not in message and "the cascade test stopped: canceling statement due to lock timeout (SQLSTATE 55P03)" \
        in message and "nothing was kept" in message
    assert schema_state(database.url) == before


def test_cascade_through_a_parent_in_another_schema(database):
    database.sql(CROSS_SCHEMA)
    database.sql("DELETE FROM public.projects WHERE name LIKE 'orphan%'")
    database.sql("ALTER TABLE public.projects ADD CONSTRAINT projects_account_id_fkey FOREIGN KEY (account_id) "
                 "REFERENCES basejump.accounts (id) ON DELETE CASCADE")
    spec = cross_schema_spec()
    before = schema_state(database.url)
    result = validate_cascade(database.connect(), spec)
    assert result.passed and result.counts_match
    assert list(result.counts["table"]) == ["basejump.accounts", "projects"]
    assert list(result.counts["before"]) == [2, 3]
    assert schema_state(database.url) == before
