import pytest

from fkrunbook.blast import OrganizationNotFoundError, blast_radius
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans

from .conftest import CROSS_SCHEMA, cross_schema_spec, schema_state
from .test_migration import MIGRATIONS


def test_before_the_change_a_delete_would_leave_orphans_behind(database, spec):
    result = blast_radius(database.connect(), spec, "org-1")
    left = result.rows[result.rows["effect"] == "left behind as orphans"]
    expected = database.sql("SELECT count(*) FROM impersonation_sessions_projection WHERE target_org_id = "
                            "(SELECT id FROM organizations_projection WHERE slug = 'org-1')")[0][0]
    assert left.set_index("columns").loc["target_org_id", "rows"] == expected > 0
    assert "leave" in result.verdict.data and not result.blocked


def test_after_the_change_it_follows_cascades_transitively_and_finds_blockers(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    database.sql("CREATE TABLE session_notes (id serial PRIMARY KEY, session_id uuid REFERENCES "
                 "impersonation_sessions_projection (id) ON DELETE CASCADE)")
    database.sql("INSERT INTO session_notes (session_id) SELECT id FROM impersonation_sessions_projection "
                 "WHERE target_org_id = (SELECT id FROM organizations_projection WHERE slug = 'org-2')")
    before = schema_state(database.url)
    result = blast_radius(db, spec, "org-2")
    rows = result.rows.set_index("path")
    sessions = database.sql("SELECT count(*) FROM impersonation_sessions_projection WHERE target_org_id = "
                            "(SELECT id FROM organizations_projection WHERE slug = 'org-2')")[0][0]
    assert rows.loc["organizations_projection -> impersonation_sessions_projection", "rows"] == sessions
    assert rows.loc["organizations_projection -> impersonation_sessions_projection -> session_notes", "rows"] == sessions
    assert not result.blocked and result.results()["rows_deleted"] >= 2 * sessions
    database.sql("CREATE TABLE invoices (id serial, organization_id uuid REFERENCES organizations_projection (id) "
                 "ON DELETE RESTRICT)")
    database.sql("INSERT INTO invoices (organization_id) SELECT id FROM organizations_projection WHERE slug = 'org-2'")
    blocked = blast_radius(db, spec, "org-2")
    assert blocked.blocked and "would FAIL" in blocked.verdict.data and "public.invoices" in blocked.verdict.data
    assert schema_state(database.url)["counts"] == before["counts"]  # read-only: nothing deleted


def test_default_is_the_organization_with_most_dependents(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    busiest = database.sql(
        "SELECT o.slug FROM organizations_projection o ORDER BY "
        "(SELECT count(*) FROM impersonation_sessions_projection s WHERE s.target_org_id = o.id) + "
        "(SELECT count(*) FROM cross_tenant_access_grants_projection g WHERE g.provider_org_id = o.id) + "
        "(SELECT count(*) FROM cross_tenant_access_grants_projection g WHERE g.consultant_org_id = o.id) DESC, o.id "
        "LIMIT 1")[0][0]
    assert blast_radius(db, spec).organization["slug"] == busiest


def test_unknown_organization_is_one_clear_line(database, spec):
    with pytest.raises(OrganizationNotFoundError, match="organization 'no-such-org' is not in"):
        blast_radius(database.connect(), spec, "no-such-org")


def test_no_organization_yet_is_nothing_to_measure(database, spec, tmp_path):
    db = database.connect()
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    database.sql("TRUNCATE organizations_projection CASCADE")
    result = blast_radius(db, spec)
    assert result.organization is None and result.rows.empty and not result.blocked
    assert "Nothing to measure" in result.verdict.data and "public.organizations_projection" in result.verdict.data
    assert result.results() == {"organization": None, "blocked": False, "rows_deleted": 0}
    with pytest.raises(OrganizationNotFoundError, match="organization 'org-1' is not in"):
        blast_radius(db, spec, "org-1")  # one named explicitly stays an error


def test_blast_radius_starts_from_a_parent_in_another_schema(database):
    database.sql(CROSS_SCHEMA)
    spec = cross_schema_spec()
    result = blast_radius(database.connect(), spec)  # the account with most dependents: none has a key yet
    assert result.parent == "basejump.accounts" and result.organization["slug"] in ("acme", "globex")
    acme = blast_radius(database.connect(), spec, "acme")
    left = acme.rows.set_index("columns")
    assert left.loc["account_id", "rows"] == 2 and left.loc["account_id", "effect"] == "left behind as orphans"
    assert left.loc["subject_id", "rows"] == 1  # the activity naming acme as its subject
    database.sql("DELETE FROM public.projects WHERE name LIKE 'orphan%'")
    database.sql("ALTER TABLE public.projects ADD FOREIGN KEY (account_id) REFERENCES basejump.accounts (id) "
                 "ON DELETE CASCADE")
    after = blast_radius(database.connect(), spec, "acme").rows.set_index("path")
    assert after.loc["accounts -> projects", "rows"] == 2 and after.loc["accounts -> projects", "effect"] == "deleted"
