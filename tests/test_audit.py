"""The schema-wide audit, on the local schema and on a schema it has never seen."""
import json

from fkrunbook.audit import audit_schema, render_findings
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans

from .test_cli import invoke
from .test_migration import MIGRATIONS


def _found(findings):
    return {(f.table, f.column, f.finding, f.declared) for f in findings}


BASELINE = {
    ("public.impersonation_sessions_projection", "target_org_id", "missing_fk", False),
    ("public.cross_tenant_access_grants_projection", "provider_org_id", "missing_fk", False),
    ("public.cross_tenant_access_grants_projection", "consultant_org_id", "missing_fk", False),
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
    result = invoke("audit", "--env", "staging", "--json", cwd=project_copy, env=env)
    assert result.exit_code == 1
    findings = json.loads(result.stdout)
    assert {"table", "column", "finding", "declared", "detail"} <= set(findings[0])
    assert sum(not f["declared"] for f in findings) == 3
    human = invoke("audit", "--env", "staging", cwd=project_copy, env=env)
    assert human.exit_code == 1 and "missing_fk: 3 (3 undeclared). Fix: add a foreign key" in human.stdout
    error = invoke("audit", "--env", "nowhere", cwd=project_copy)
    assert error.exit_code == 2 and error.stderr.startswith("fkrunbook: error: environment 'nowhere'")
    url = invoke("audit", "--database-url", database.url.replace("postgres@", "postgres:Sekr1t@"), "--json",
              cwd=project_copy)
    assert url.exit_code == 1 and "Sekr1t" not in url.stdout + url.stderr
    bad = invoke("audit", "--database-url", "mysql://u:Sekr1t@h/db", cwd=project_copy)
    assert bad.exit_code == 2 and "--database-url is not a PostgreSQL URL" in bad.stderr and "Sekr1t" not in bad.stderr
