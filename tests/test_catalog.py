import pytest

from fkrunbook.catalog import check_spec, foreign_key_states
from fkrunbook.errors import SpecMismatchError
from fkrunbook.spec import parse_spec

from .conftest import CROSS_SCHEMA, cross_schema_spec
from .test_spec import _raw


def _check(database, spec):
    with database.connect().read_only() as conn:
        return check_spec(conn, spec, "test")


def test_check_spec_passes_on_the_baseline(database, spec):
    frame = _check(database, spec)
    assert list(frame["status"]) == ["ok"] * 7
    assert frame.set_index("column").loc["unprocessed_events.stream_id", "relation"] == "view"


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r["foreign_keys"][0].update(table="impersonation_sessions"),
     "table public.impersonation_sessions (foreign key impersonation_sessions.target_org_id) does not exist"),
    (lambda r: r["foreign_keys"][0].update(column="target_organization_id"),
     "column impersonation_sessions_projection.target_organization_id does not exist"),
    (lambda r: (r["foreign_keys"][0].update(table="unprocessed_events", column="stream_id"),
                r["intentional_exceptions"].pop()),
     "public.unprocessed_events is a view: a foreign key needs a table"),
    (lambda r: r["foreign_keys"][0].update(column="session_id"),
     "column impersonation_sessions_projection.session_id is text but organizations_projection.id is uuid"),
    (lambda r: r["parent"].update(table="organizations"), "parent table public.organizations does not exist"),
    (lambda r: r["parent"].update(column="slug_missing"), "parent column organizations_projection.slug_missing"),
    (lambda r: r["parent"].update(column="name"), "is not a primary key or unique"),
    (lambda r: r["intentional_exceptions"][0].update(column="stream_uuid"),
     "column domain_events.stream_uuid (intentional exception"),
])
def test_check_spec_mismatch_is_one_clear_line(database, mutate, expected):
    raw = _raw()
    mutate(raw)
    with pytest.raises(SpecMismatchError) as info:
        _check(database, parse_spec(raw, "spec.yaml"))
    assert expected in str(info.value)
    assert "in environment 'test'; fix the spec" in str(info.value)


def test_exception_table_absent_is_reported_not_fatal(database, spec):
    database.sql("DROP VIEW unprocessed_events")
    frame = _check(database, spec).set_index("column")
    assert frame.loc["unprocessed_events.stream_id", "relation"] == "absent"


def test_foreign_key_state_finds_a_differently_named_key(database, spec):
    database.sql("DELETE FROM impersonation_sessions_projection s WHERE NOT EXISTS "
                 "(SELECT 1 FROM organizations_projection o WHERE o.id = s.target_org_id)")
    database.sql("ALTER TABLE impersonation_sessions_projection ADD CONSTRAINT legacy_org_fk "
                 "FOREIGN KEY (target_org_id) REFERENCES organizations_projection (id) NOT VALID")
    with database.connect().read_only() as conn:
        state = foreign_key_states(conn, spec)[0]
    assert state.exists and state.name == "legacy_org_fk" and not state.validated
    assert state.on_delete == "no action" and not state.matches


def test_check_spec_finds_the_parent_in_its_own_schema(database):
    database.sql(CROSS_SCHEMA)
    frame = _check(database, cross_schema_spec()).set_index("column")
    assert frame.loc["basejump.accounts.id", "role"] == "parent key"
    assert list(frame["status"]) == ["ok"] * 3


def test_an_unknown_parent_schema_is_one_clear_line(database):
    database.sql(CROSS_SCHEMA)
    with pytest.raises(SpecMismatchError) as info:
        _check(database, cross_schema_spec(schema="basejmp"))
    message = str(info.value)
    assert message.startswith("parent schema 'basejmp' (parent table basejmp.accounts) does not exist; schemas there: ")
    assert "basejump" in message and "pg_catalog" not in message and "\n" not in message
    assert message.endswith("in environment 'test'; fix the spec (cross_schema.yaml) or the database")
    with pytest.raises(SpecMismatchError, match="parent column basejump.accounts.name does not exist"):
        _check(database, cross_schema_spec(column="name"))


def test_foreign_key_state_looks_for_keys_to_the_parent_in_its_schema(database):
    database.sql(CROSS_SCHEMA)
    database.sql("DELETE FROM public.projects WHERE name LIKE 'orphan%'")
    database.sql("ALTER TABLE public.projects ADD CONSTRAINT projects_decoy_fk FOREIGN KEY (account_id) "
                 "REFERENCES public.accounts (id) NOT VALID")
    spec = cross_schema_spec()
    with database.connect().read_only() as conn:
        assert not foreign_key_states(conn, spec)[0].exists  # a key to public.accounts is not the one
    database.sql("ALTER TABLE public.projects ADD CONSTRAINT projects_account_fk FOREIGN KEY (account_id) "
                 "REFERENCES basejump.accounts (id) ON DELETE CASCADE")
    with database.connect().read_only() as conn:
        state = foreign_key_states(conn, spec)[0]
    assert state.exists and state.name == "projects_account_fk" and state.matches
