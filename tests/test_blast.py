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
    assert result.results() == {"organization": None, "blocked": False, "rows_deleted": 0, "rows_left_behind": 0,
                                "rows_kept_as_history": 0}
    with pytest.raises(OrganizationNotFoundError, match="organization 'org-1' is not in"):
        blast_radius(db, spec, "org-1")  # one named explicitly stays an error


def test_blast_radius_starts_from_a_parent_in_another_schema(database):
    database.sql(CROSS_SCHEMA)
    spec = cross_schema_spec()
    result = blast_radius(database.connect(), spec)  # the account with most dependents: none has a key yet
    assert result.parent == "basejump.accounts" and result.organization["slug"] in ("acme", "globex")
    acme = blast_radius(database.connect(), spec, "acme")
    left = acme.rows.set_index(["table", "columns"])
    for table in ("public.projects", "public.activity_log"):  # the spec's column, and one named like it
        assert left.loc[(table, "account_id"), "rows"] == 2
        assert left.loc[(table, "account_id"), "effect"] == "left behind as orphans"
    assert left.loc[("public.activity_log", "subject_id"), "rows"] == 1  # the activity naming acme as its subject
    database.sql("DELETE FROM public.projects WHERE name LIKE 'orphan%'")
    database.sql("ALTER TABLE public.projects ADD FOREIGN KEY (account_id) REFERENCES basejump.accounts (id) "
                 "ON DELETE CASCADE")
    after = blast_radius(database.connect(), spec, "acme").rows.set_index("path")
    assert after.loc["accounts -> projects", "rows"] == 2 and after.loc["accounts -> projects", "effect"] == "deleted"


# One organization's rows, reached two ways (project_members through its own organization_id and
# through projects), and referenced by columns without a key (users.current_organization_id,
# user_notification_preferences.organization_id, and project_notes.org_id, whose rows a cascade
# deletes anyway unless their project belongs to another organization).
TWO_WAYS = """
CREATE TABLE projects (id uuid PRIMARY KEY, organization_id uuid NOT NULL REFERENCES organizations_projection
    ON DELETE CASCADE);
CREATE TABLE project_members (id serial PRIMARY KEY, organization_id uuid NOT NULL REFERENCES organizations_projection
    ON DELETE CASCADE, project_id uuid NOT NULL REFERENCES projects ON DELETE CASCADE);
CREATE TABLE users (id uuid PRIMARY KEY, current_organization_id uuid);
CREATE TABLE user_notification_preferences (id serial PRIMARY KEY, user_id uuid, organization_id uuid);
CREATE TABLE project_notes (id serial PRIMARY KEY, project_id uuid REFERENCES projects ON DELETE CASCADE, org_id uuid);
INSERT INTO projects SELECT md5('p' || i)::uuid, md5('org-' || (i % 2 + 2))::uuid FROM generate_series(1, 4) i;
INSERT INTO project_members (organization_id, project_id)
    SELECT p.organization_id, p.id FROM projects p, generate_series(1, 2) WHERE p.organization_id = md5('org-2')::uuid;
INSERT INTO project_members (organization_id, project_id) SELECT md5('org-3')::uuid, md5('p1')::uuid;
INSERT INTO users SELECT md5('u' || i)::uuid, md5('org-' || (i % 3 + 2))::uuid FROM generate_series(1, 9) i;
INSERT INTO user_notification_preferences (user_id, organization_id)
    SELECT md5('u' || i)::uuid, md5('org-' || (i % 4 + 2))::uuid FROM generate_series(1, 8) i;
INSERT INTO project_notes (project_id, org_id)
    SELECT id, md5('org-2')::uuid FROM projects UNION ALL SELECT md5('p1')::uuid, md5('org-2')::uuid;
"""


def _really_deleted_and_left(database, org: str, columns) -> tuple[dict, dict]:
    """Delete the organization for real in a transaction rolled back: the rows each table lost, and
    the rows of each no-key column that still name it afterwards."""
    import psycopg

    tables = ["projects", "project_members", "project_notes", "users", "user_notification_preferences",
              "impersonation_sessions_projection", "cross_tenant_access_grants_projection"]
    with psycopg.connect(database.url) as conn:
        count = lambda t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: E731
        before = {t: count(t) for t in tables}
        org_id = conn.execute("SELECT id FROM organizations_projection WHERE slug = %s", (org,)).fetchone()[0]
        conn.execute("DELETE FROM organizations_projection WHERE id = %s", (org_id,))
        lost = {t: before[t] - count(t) for t in tables if before[t] != count(t)}
        left = {f"{t}.{c}": conn.execute(f"SELECT count(*) FROM {t} WHERE {c} = %s", (org_id,)).fetchone()[0]
                for t, c in columns}
        conn.rollback()
    return lost, left


def test_every_reference_is_counted_and_a_table_reached_two_ways_once(database, spec):
    database.sql(TWO_WAYS)
    before = schema_state(database.url)
    result = blast_radius(database.connect(), spec, "org-2")
    loose = [("users", "current_organization_id"), ("user_notification_preferences", "organization_id"),
             ("project_notes", "org_id"), ("impersonation_sessions_projection", "target_org_id")]
    lost, left = _really_deleted_and_left(database, "org-2", loose)
    rows = result.rows.set_index("path")
    members = ["organizations_projection -> project_members", "organizations_projection -> projects -> project_members"]
    assert [rows.loc[p, "rows"] for p in members] == [4, 4]  # each path alone sees all four
    tables = result.tables.set_index(["table", "effect"])["rows"]
    assert tables[("public.project_members", "deleted")] == lost["project_members"] == 4  # not 8
    assert result.tables.set_index(["table", "effect"]).loc[("public.project_members", "deleted"), "paths"] == 2
    assert result.results()["rows_deleted"] == sum(lost.values()) == 2 + 4 + 2  # projects, members, notes
    by_column = result.rows[result.rows["effect"] == "left behind as orphans"].set_index(["table", "columns"])["rows"]
    for table, column in loose:
        assert by_column[(f"public.{table}", column)] == left[f"{table}.{column}"], (table, column)
    assert left["users.current_organization_id"] == 3 and left["user_notification_preferences.organization_id"] == 2
    assert left["project_notes.org_id"] == 3  # the notes of org-3's projects; org-2's go with their project
    verdict = result.verdict.data
    assert "(each row counted once, however many paths reach it)" in verdict
    assert ("2 public.user_notification_preferences.organization_id and 3 public.users.current_organization_id "
            "row(s) also point at it without a key: the delete would leave them behind as orphans") in verdict
    grants = database.sql("SELECT count(*) FROM cross_tenant_access_grants_projection WHERE (SELECT id FROM "
                          "organizations_projection WHERE slug = 'org-2') IN (provider_org_id, consultant_org_id)")[0][0]
    assert tables[("public.cross_tenant_access_grants_projection", "left behind as orphans")] == grants > 0
    assert result.results()["rows_left_behind"] == sum(left.values()) + grants  # each row once per table
    assert schema_state(database.url) == before  # read-only


def test_a_polymorphic_reference_is_counted_by_its_discriminator(database, spec):
    database.sql("UPDATE workflow_queue_projection SET stream_type = 'workflow_queue'")  # a filter that misses
    result = blast_radius(database.connect(), spec, "org-2")
    queue = result.rows.set_index(["table", "columns"]).loc[("public.workflow_queue_projection", "stream_id")]
    assert queue["rows"] == 1 and queue["detail"] == "polymorphic, by stream_type: workflow_queue 1"
    assert queue["effect"] == "left behind: kept as history"  # declared in the spec
    payload = result.rows.set_index(["table", "columns"]).loc[("public.domain_events", "event_data->organization_id")]
    named = database.sql("SELECT count(*) FROM domain_events WHERE event_data->>'organization_id' = "
                         "(SELECT id::text FROM organizations_projection WHERE slug = 'org-2')")[0][0]
    assert payload["rows"] == named > 1
    history = result.tables.set_index(["table", "effect"])["rows"]
    assert history[("public.domain_events", "left behind: kept as history")] == named  # its stream event too: once
