"""The schema-wide audit, on the local schema and on a schema it has never seen."""
import json
import uuid

import psycopg
import pytest
from psycopg import sql

from fkrunbook.audit import audit_schema, render_findings
from fkrunbook.database import Database
from fkrunbook.environment import Environment
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.sample import load_baseline

from .conftest import CROSS_SCHEMA, cross_schema_spec
from .majors import MAJORS
from .test_cli import invoke
from .test_migration import MIGRATIONS


def _found(findings):
    return {(f.table, f.column, f.finding, f.declared) for f in findings}


BASELINE = {  # the three keys the spec adds are planned, not missing
    ("public.impersonation_sessions_projection", "target_org_id", "planned", False),
    ("public.cross_tenant_access_grants_projection", "provider_org_id", "planned", False),
    ("public.cross_tenant_access_grants_projection", "consultant_org_id", "planned", False),
    ("public.domain_events", "stream_id", "polymorphic", True),
    ("public.workflow_queue_projection", "stream_id", "polymorphic", True),
}


def test_audit_finds_the_three_before_the_change_and_none_after(database, spec, tmp_path):
    db = database.connect()
    assert _found(audit_schema(db, spec)) == BASELINE
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    after = audit_schema(db, spec)
    assert all(f.declared for f in after) and {f.finding for f in after} == {"polymorphic"}
    assert "0 undeclared" in render_findings(after)


NEVER_SEEN = """
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id bigint PRIMARY KEY, organization_id uuid NOT NULL
    REFERENCES public.organizations_projection (id));
CREATE TABLE billing.invoice_lines (invoice_id bigint REFERENCES billing.invoices (id) ON DELETE CASCADE,
    line_no int, org_id uuid, PRIMARY KEY (invoice_id, line_no));
CREATE TABLE billing.line_notes (id serial PRIMARY KEY, invoice_id bigint, line_no int, note text,
    FOREIGN KEY (invoice_id, line_no) REFERENCES billing.invoice_lines ON DELETE CASCADE);
CREATE INDEX ON billing.line_notes (line_no, invoice_id);
CREATE TABLE billing.payments (id serial PRIMARY KEY, invoice_id bigint, line_no int,
    FOREIGN KEY (invoice_id, line_no) REFERENCES billing.invoice_lines);
CREATE TABLE public.memberships (id uuid PRIMARY KEY, organization_id uuid REFERENCES organizations_projection
    ON DELETE CASCADE, active boolean, team_org_id uuid);
CREATE INDEX memberships_active ON public.memberships (organization_id) WHERE active;
CREATE TABLE billing.credits (id serial PRIMARY KEY, organization_id uuid REFERENCES organizations_projection
    ON DELETE CASCADE);
CREATE INDEX credits_org ON billing.credits (organization_id) WHERE organization_id IS NOT NULL;
ALTER TABLE public.memberships ADD CONSTRAINT memberships_team_org_fk FOREIGN KEY (team_org_id)
    REFERENCES organizations_projection (id) ON DELETE SET NULL NOT VALID;
CREATE INDEX ON public.memberships (team_org_id);
CREATE TABLE public.audit_log (id bigint, org_id uuid, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
CREATE TABLE public.audit_log_2026 PARTITION OF public.audit_log FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE public.attachments (id uuid PRIMARY KEY, owner_id uuid NOT NULL, owner_type text NOT NULL);
CREATE TABLE public.tenant_settings (organization_id text);
CREATE VIEW public.org_overview AS SELECT id AS organization_id FROM public.organizations_projection;
"""


def test_audit_on_a_schema_it_has_never_seen(database, spec):
    database.sql(NEVER_SEEN)
    findings = audit_schema(database.connect(), spec, ["public", "billing"])
    found = _found(findings) - BASELINE  # what the never-seen objects add
    assert found == {
        ("billing.invoices", "organization_id", "unindexed_fk", False),
        ("billing.invoices", "organization_id", "blocking_delete", False),
        ("billing.invoice_lines", "org_id", "missing_fk", False),        # a second schema
        ("billing.payments", "invoice_id, line_no", "unindexed_fk", False),  # composite, no index
        ("public.memberships", "organization_id", "unindexed_fk", False),  # only a partial index
        ("public.memberships", "team_org_id", "not_valid", False),
        ("public.audit_log", "org_id", "missing_fk", False),              # partitioned: once, not per partition
        ("public.attachments", "owner_id", "polymorphic", False),
    }
    # not reported: line_notes' composite key (covered, columns in another order), invoice_lines' key (its
    # primary key leads with invoice_id), credits' key (its index leaves out only NULLs), the view, the
    # text-typed tenant_settings.organization_id
    tables = {f.table for f in findings}
    assert "billing.line_notes" not in tables and "public.org_overview" not in tables
    assert "billing.credits" not in tables
    assert "public.audit_log_2026" not in tables and "public.tenant_settings" not in tables


def test_audit_patterns_are_configurable(database, spec):
    database.sql("CREATE TABLE public.tenants_owned (owning_tenant uuid)")
    findings = audit_schema(database.connect(), spec, patterns=["owning_*"])
    assert {(f.table, f.column) for f in findings if f.finding == "missing_fk"} == {("public.tenants_owned",
                                                                                     "owning_tenant")}


def test_audit_cli_exit_codes_and_json(project_copy, database):
    env = {"STAGING_DATABASE_URL": database.url}
    planned_only = invoke("audit", "--env", "staging", cwd=project_copy, env=env)
    assert planned_only.exit_code == 0, planned_only.output  # the spec's three keys are planned: no gate
    assert "planned: 3 (not failing the gate)" in planned_only.stdout
    database.sql("CREATE TABLE public.invoices (id uuid PRIMARY KEY, org_id uuid NOT NULL)")
    result = invoke("audit", "--env", "staging", "--json", cwd=project_copy, env=env)
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert {"table", "column", "finding", "declared", "detail"} <= set(findings[0])
    assert [(f["table"], f["column"]) for f in findings if f["finding"] == "missing_fk"] == [("public.invoices", "org_id")]
    human = invoke("audit", "--env", "staging", cwd=project_copy, env=env)
    assert human.exit_code == 1 and "missing_fk: 1 (1 undeclared). Fix: add a foreign key" in human.stdout
    error = invoke("audit", "--env", "nowhere", cwd=project_copy)
    assert error.exit_code == 2 and error.stderr.startswith("fkrunbook: error: environment 'nowhere'")
    url = invoke("audit", "--database-url", database.url.replace("postgres@", "postgres:Sekr1t@"), "--json",
              cwd=project_copy)
    assert url.exit_code == 1 and "Sekr1t" not in url.stdout + url.stderr
    bad = invoke("audit", "--database-url", "mysql://u:Sekr1t@h/db", cwd=project_copy)
    assert bad.exit_code == 2 and "--database-url is not a PostgreSQL URL" in bad.stderr and "Sekr1t" not in bad.stderr


def test_an_accepted_finding_is_declared_until_its_expiry_then_fails_the_gate_again(database, spec):
    from dataclasses import replace
    from datetime import date

    from fkrunbook.spec import AcceptedFinding

    database.sql("CREATE TABLE public.billing_accounts (id uuid PRIMARY KEY, organization_id uuid NOT NULL "
                 "REFERENCES public.organizations_projection (id))")  # NO ACTION, and no index
    accepted = replace(spec, accepted=(AcceptedFinding("billing_accounts", "organization_id", "blocking_delete",
                                                       "Invoices outlive nothing: delete the account first.",
                                                       date(2027, 1, 31)),))
    findings = {f.finding: f for f in audit_schema(database.connect(), accepted, today=date(2027, 1, 31))
                if f.table == "public.billing_accounts"}
    assert (findings["blocking_delete"].declared, findings["blocking_delete"].expires) == (True, "2027-01-31")
    assert not findings["unindexed_fk"].declared  # accepting one finding of a column accepts no other
    text = render_findings(list(findings.values()))
    assert "[accepted until 2027-01-31] public.billing_accounts.organization_id" in text
    assert "(reason: Invoices outlive nothing: delete the account first.)" in text
    expired = {f.finding: f for f in audit_schema(database.connect(), accepted, today=date(2027, 2, 1))
               if f.table == "public.billing_accounts"}
    assert not expired["blocking_delete"].declared
    assert "[UNDECLARED: accepted until 2027-01-31, expired] public.billing_accounts" in render_findings(
        list(expired.values()))


PRECISION_SCHEMA = """
CREATE TABLE public.user_orgs (user_id uuid, org_id uuid NOT NULL REFERENCES public.organizations_projection
    ON DELETE CASCADE, PRIMARY KEY (user_id, org_id));
CREATE INDEX ON public.user_orgs (org_id);
CREATE TABLE public.user_org_phones (id uuid PRIMARY KEY, user_id uuid NOT NULL, org_id uuid NOT NULL,
    UNIQUE (id, user_id, org_id),
    FOREIGN KEY (user_id, org_id) REFERENCES public.user_orgs (user_id, org_id) ON DELETE CASCADE);
CREATE INDEX ON public.user_org_phones (user_id, org_id);
CREATE TABLE public.user_org_phone_notes (id uuid PRIMARY KEY, phone uuid, user_id uuid, org_id uuid,
    FOREIGN KEY (phone, user_id, org_id) REFERENCES public.user_org_phones (id, user_id, org_id) ON DELETE CASCADE);
CREATE INDEX ON public.user_org_phone_notes (phone, user_id, org_id);
CREATE TABLE public.teams (id uuid, org_id uuid, PRIMARY KEY (id, org_id));
CREATE TABLE public.team_labels (id uuid PRIMARY KEY, team_id uuid, org_id uuid,
    FOREIGN KEY (team_id, org_id) REFERENCES public.teams (id, org_id));
CREATE INDEX ON public.team_labels (team_id, org_id);
CREATE TABLE public.invitations (id uuid PRIMARY KEY, organization_id uuid
    REFERENCES public.organizations_projection ON DELETE CASCADE);
CREATE INDEX invitations_org ON public.invitations (organization_id) WHERE organization_id IS NOT NULL;
CREATE TABLE public.archived_docs (id uuid PRIMARY KEY, organization_id uuid
    REFERENCES public.organizations_projection ON DELETE CASCADE, archived_at timestamptz);
CREATE INDEX archived_docs_live ON public.archived_docs (organization_id) WHERE archived_at IS NULL;
CREATE TABLE public.bare (id uuid PRIMARY KEY, organization_id uuid
    REFERENCES public.organizations_projection ON DELETE CASCADE);
"""


@pytest.mark.parametrize("major", MAJORS)
def test_audit_precision_every_rule_both_ways(pg_servers, major, spec, monkeypatch):
    """Each rule meets a case it must report and one it must not, on every major (the partial
    index rule asks the planner, whose behaviour is the server's)."""
    srv = pg_servers(major)
    name = f"a_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(srv.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(srv.url(name)) as conn:
            load_baseline(conn)
            conn.execute(PRECISION_SCHEMA)
        monkeypatch.setenv("FKRUNBOOK_AUDIT_URL", srv.url(name))
        db = Database(Environment("audit", "url", url_env="FKRUNBOOK_AUDIT_URL"), srv.url(name))
        findings = {(f.table.split(".")[1], f.column, f.finding): f for f in audit_schema(db, spec)}
    finally:
        with psycopg.connect(srv.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    kinds = {key[:2]: key[2] for key in findings}
    # covered indirectly: a composite key to user_orgs, whose org_id has a key to the organizations
    indirect = findings[("user_org_phones", "org_id", "covered_indirectly")]
    assert not indirect.gates and "user_org_phones_user_id_org_id_fkey (user_id, org_id) -> public.user_orgs" \
        "(user_id, org_id), whose org_id has user_orgs_org_id_fkey to public.organizations_projection" in indirect.detail
    assert "is covered in turn" in findings[("user_org_phone_notes", "org_id", "covered_indirectly")].detail
    # ... but not through a composite key to a table whose column has no organization key
    assert kinds[("team_labels", "org_id")] == "missing_fk"
    # a partial index the key check uses covers; one it cannot use does not, and the finding names it
    assert ("invitations", "organization_id") not in kinds
    archived = findings[("archived_docs", "organization_id", "unindexed_fk")]
    assert archived.gates and "cannot use the partial index archived_docs_live (WHERE (archived_at IS NULL))" \
        in archived.detail
    assert "no index leads with (organization_id)" in findings[("bare", "organization_id", "unindexed_fk")].detail
    # the spec's three keys are planned, and say so
    planned = findings[("impersonation_sessions_projection", "target_org_id", "planned")]
    assert not planned.gates and "the spec 'add_missing_org_fk_constraints' adds" in planned.detail


def test_audit_of_a_parent_in_another_schema(database):
    database.sql(CROSS_SCHEMA)
    database.sql("CREATE TABLE basejump.members (account_id uuid REFERENCES basejump.accounts (id), user_id uuid)")
    database.sql("CREATE TABLE public.notes (account_id uuid REFERENCES public.accounts (id))")  # the decoy parent
    findings = audit_schema(database.connect(), cross_schema_spec())
    mine = {(f.table, f.column, f.finding, f.declared) for f in findings
            if f.table.split(".")[1] in ("projects", "activity_log", "members", "notes")}
    assert mine == {
        ("public.projects", "account_id", "planned", False),         # the spec's column: the spec adds its key
        ("public.activity_log", "account_id", "missing_fk", False),
        ("public.notes", "account_id", "missing_fk", False),         # a key to public.accounts is not one to the parent
        ("public.notes", "account_id", "unindexed_fk", False),
        ("public.activity_log", "subject_id", "polymorphic", True),
        ("basejump.members", "account_id", "unindexed_fk", False),   # the parent's schema is audited too
        ("basejump.members", "account_id", "blocking_delete", False),
    }
    detail = next(f.detail for f in findings if f.table == "public.activity_log" and f.finding == "missing_fk")
    assert detail.startswith("uuid organization reference with no foreign key to basejump.accounts")
