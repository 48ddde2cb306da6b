"""The catalogue of bad input: each case gets one clear line naming the problem and the fix, a
non-zero exit, and leaves the database and the project's files untouched. The README's
troubleshooting table lists the same cases.

Every case fails before any notebook runs, so each is run in-process with click's CliRunner
(tests/test_cli.py runs the console script itself, where the process boundary is the point)."""
import hashlib
import shutil
import socket
from pathlib import Path

import psycopg
import pytest

from fkrunbook.server import ensure_server, stop_server

from .conftest import schema_state
from .test_cli import invoke

SPEC = "runbooks/add_missing_org_fk_constraints.yaml"
ENVS = "runbooks/environments.yaml"
CONFIG = "fkrunbook.toml"
TEAM_MIGRATIONS = Path(__file__).parent / "team_schemas" / "event_store" / "supabase" / "migrations"


def edit(path, old, new, count=1):
    def apply(project, database):
        file = project / path
        text = file.read_text()
        assert old in text, (path, old)
        file.write_text(text.replace(old, new, count))
    return apply


def write(path, text):
    def apply(project, database):
        (project / path).write_text(text)
    return apply


def append(path, text):
    def apply(project, database):
        with open(project / path, "a") as file:
            file.write(text)
    return apply


ACCEPTED = """
accepted_findings:
  - table: organizations_projection
    column: parent_org_id
    finding: {finding}
    reason: Deleting a parent organization first is refused on purpose.
    expires: {expires}
"""


def run_once(run_id):
    def apply(project, database):
        result = invoke("run", "--env", "staging", "--phase", "orphan_check", "--run-id", run_id, cwd=project,
                        env={"STAGING_DATABASE_URL": database.url})
        assert result.exit_code == 0, result.stderr
    return apply


def local_team_schema(folder):
    """The local database already built from a team's migrations (the event-store shape, copied to
    ``folder`` in the project, no rows): the case must leave it as it was."""
    def apply(project, database):
        shutil.copytree(TEAM_MIGRATIONS, project / folder)
        result = invoke("local", "reset", "--from-migrations", folder, "--rows", "0", cwd=project)
        assert result.exit_code == 0, result.output
    return apply
def busy_port(project, database):
    """A port something already listens on (until the test ends)."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    database.held_socket = held
    return {"busy_port": str(held.getsockname()[1])}


CASES = [
    # (id, arguments, environment variables, setup, expected text, exit status)
    ("unknown-environment", ["run", "--env", "stagng"], {}, None,
     "environment 'stagng' is not defined; known: local, staging, production", 1),
    ("unknown-phase", ["run", "--env", "staging", "--phase", "orphan_chek"], {}, None,
     "phase 'orphan_chek' does not exist; known, in order:", 1),
    ("url-variable-unset", ["run", "--env", "staging"], {"STAGING_DATABASE_URL": ""}, None,
     "environment variable STAGING_DATABASE_URL is not set; export it", 1),
    ("url-not-postgres", ["run", "--env", "staging"], {"STAGING_DATABASE_URL": "mysql://u:pw@h/db"}, None,
     "STAGING_DATABASE_URL is not a PostgreSQL URL; it must start with postgresql://", 1),
    ("url-malformed", ["run", "--env", "staging"], {"STAGING_DATABASE_URL": "postgresql://u:pw@h:port/db?x=1=2"}, None,
     "STAGING_DATABASE_URL is not a valid PostgreSQL URL", 1),
    ("host-unreachable", ["run", "--env", "staging"],
     {"STAGING_DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/db?sslmode=disable"}, None,
     "cannot connect to environment 'staging'", 1),
    ("wrong-password", ["run", "--env", "staging"], {"STAGING_DATABASE_URL": "{url_wrong_password}"}, None,
     'password authentication failed for user "fk_pw_user"', 1),
    ("database-missing", ["run", "--env", "staging"], {"STAGING_DATABASE_URL": "{url_no_db}"}, None,
     "cannot connect to environment 'staging'", 1),
    ("role-missing", ["run", "--env", "staging"], {"STAGING_DATABASE_URL": "{url_bad_role}"}, None,
     "cannot connect to environment 'staging'", 1),
    ("spec-missing", ["run", "--env", "staging", "--spec", "runbooks/nope.yaml"], {}, None,
     "spec file 'runbooks/nope.yaml' does not exist; pass --spec", 1),
    ("spec-not-yaml", ["run", "--env", "staging"], {}, write(SPEC, "name: [unclosed\n"),
     "is not valid YAML at line", 1),
    ("spec-not-a-mapping", ["run", "--env", "staging"], {}, write(SPEC, "- a\n- b\n"),
     "the document must be a mapping", 1),
    ("spec-no-parent", ["run", "--env", "staging"], {}, edit(SPEC, "parent:\n", "parents:\n"),
     "the document has no 'parent'; add it", 1),
    ("spec-bad-on-delete", ["run", "--env", "staging"], {}, edit(SPEC, "on_delete: cascade", "on_delete: explode"),
     "on_delete 'explode' is not one of", 1),
    ("spec-identifier-semicolon", ["run", "--env", "staging"], {},
     edit(SPEC, "column: target_org_id", "column: target_org_id; drop table y"), "is not a plain PostgreSQL identifier", 1),
    ("spec-identifier-quote", ["run", "--env", "staging"], {},
     edit(SPEC, "table: organizations_projection", 'table: organizations_projection"--'),
     "is not a plain PostgreSQL identifier", 1),
    ("spec-table-absent", ["run", "--env", "staging"], {},
     edit(SPEC, "table: impersonation_sessions_projection", "table: impersonation_sessions"),
     "table public.impersonation_sessions (foreign key impersonation_sessions.target_org_id) does not exist", 1),
    ("spec-column-absent", ["run", "--env", "staging"], {},
     edit(SPEC, "column: target_org_id", "column: target_organization_id"),
     "column impersonation_sessions_projection.target_organization_id does not exist", 1),
    ("spec-view-as-table", ["run", "--env", "staging"], {},
     edit(SPEC, "table: cross_tenant_access_grants_projection\n    column: provider_org_id",
          "table: unprocessed_events\n    column: processing_error"),
     "public.unprocessed_events is a view: a foreign key needs a table", 1),
    ("spec-type-mismatch", ["run", "--env", "staging"], {},
     edit(SPEC, "column: target_org_id", "column: session_id"),
     "column impersonation_sessions_projection.session_id is text but organizations_projection.id is uuid", 1),
    ("spec-parent-schema-absent", ["run", "--env", "staging"], {},
     edit(SPEC, "  table: organizations_projection\n", "  schema: basejmp\n  table: organizations_projection\n"),
     "parent schema 'basejmp' (parent table basejmp.organizations_projection) does not exist; schemas there: ", 1),
    ("spec-parent-not-unique", ["run", "--env", "staging"], {}, edit(SPEC, "  column: id", "  column: name"),
     "parent column organizations_projection.name is not a primary key or unique", 1),
    ("spec-column-twice", ["run", "--env", "staging"], {},
     edit(SPEC, "column: consultant_org_id", "column: provider_org_id"), "is listed twice", 1),
    ("spec-bad-version", ["run", "--env", "staging"], {}, edit(SPEC, '"20261126120000"', '"2026"'),
     "migration.version '2026' must be 14 digits", 1),
    ("spec-bad-timeout", ["run", "--env", "staging"], {}, edit(SPEC, "lock_timeout: 1s", "lock_timeout: soon"),
     "migration.lock_timeout 'soon' must be a PostgreSQL duration", 1),
    ("spec-bad-retries", ["run", "--env", "staging"], {}, edit(SPEC, "[[100ms, 50ms], [100ms, 100ms]", "[[100ms], [100ms, 100ms]"),
     "migration.lock_retries.schedule[0] ['100ms'] must be a pair [lock_timeout, pause], e.g. [100ms, 1s]", 1),
    ("environment-bad-retries", ["run", "--env", "staging"], {}, edit(ENVS, "lock_timeout_max: 150ms", "lock_timeout_max: 50ms"),
     "environment 'production': lock_retries.lock_timeout_max 50ms is shorter than lock_timeout 100ms; raise it", 1),
    ("spec-payload-keys-empty", ["run", "--env", "staging"], {},
     edit(SPEC, "payload: {column: event_data, key: organization_id}", "payload: {column: event_data, keys: []}"),
     "intentional_exceptions[0].payload.keys is empty; list at least one key that holds an organization id", 1),
    ("spec-payload-key-not-plain", ["run", "--env", "staging"], {},
     edit(SPEC, "payload: {column: event_data, key: organization_id}",
          "payload: {column: event_data, keys: [organization_id, org-id]}"),
     "intentional_exceptions[0].payload.keys[1] 'org-id' is not a plain JSON key", 1),
    ("spec-payload-not-jsonb", ["run", "--env", "staging"], {},
     edit(SPEC, "payload: {column: event_data, key: organization_id}", "payload: {column: stream_type, key: org_id}"),
     "payload column domain_events.stream_type is text, not jsonb: name the jsonb column that carries the organization "
     "ids", 1),
    ("spec-accepted-unknown-finding", ["audit", "--env", "staging"], {}, append(SPEC, ACCEPTED.format(
        finding="missing_key", expires="2027-01-31")),
     "accepted_findings[0].finding 'missing_key' is not one of the audit's findings: missing_fk, unindexed_fk", 2),
    ("spec-accepted-bad-expiry", ["audit", "--env", "staging"], {}, append(SPEC, ACCEPTED.format(
        finding="blocking_delete", expires="next spring")),
     "accepted_findings[0].expires 'next spring' is not a date YYYY-MM-DD; write when the finding must be looked "
     "at again", 2),
    ("spec-reason-unwritten", ["run", "--env", "staging"], {}, edit(SPEC, "reason: >-", "reason: >-\n      TODO:"),
     "foreign_keys[0].reason for impersonation_sessions_projection.target_org_id is not written yet (it still starts "
     "with TODO); write why the key is needed, then run again", 1),
    ("spec-new-without-source", ["spec", "new", "next_keys", "--env", "staging"], {}, None,
     "spec new drafts from the audit: pass --from-audit (with --env ENV)", 1),
    ("spec-new-bad-name", ["spec", "new", "Next-Keys", "--from-audit", "--env", "staging"], {}, None,
     "spec name 'Next-Keys' is not a lower-case identifier (letters, digits, _); e.g. add_notification_org_fk", 1),
    ("spec-new-nothing-to-draft", ["spec", "new", "next_keys", "--from-audit", "--env", "staging"], {}, None,
     "the audit finds no undeclared missing_fk in schema 'public': nothing to draft", 1),
    ("environments-missing", ["run", "--env", "staging"], {},
     edit(CONFIG, 'environments = "runbooks/environments.yaml"', 'environments = "runbooks/none.yaml"'),
     "runbooks/none.yaml' does not exist; fix [runbook] environments in fkrunbook.toml", 1),
    ("config-unknown-key", ["run", "--env", "staging"], {}, edit(CONFIG, "evidence = ", "evidnce = "),
     "unknown key 'evidnce' in [runbook]", 1),
    ("config-table-without-placeholder", ["run", "--env", "staging"], {},
     edit(CONFIG, 'table = "docs/schema/tables/{table}.md"', 'table = "docs/schema/tables.md"'),
     "must contain {table}", 1),
    ("config-not-toml", ["run", "--env", "staging"], {}, edit(CONFIG, "[docs]", "[docs"), "is not valid TOML", 1),
    ("init-would-overwrite", ["init"], {}, None, "fkrunbook.toml already exist(s); nothing was written: pass --force",
     1),
    ("environments-with-url", ["run", "--env", "staging"], {},
     edit(ENVS, "    url_env: STAGING_DATABASE_URL", "    url: postgresql://u:pw@h/db"),
     "never write URLs in a file", 1),
    ("environments-bad-kind", ["run", "--env", "staging"], {}, edit(ENVS, "kind: url", "kind: ftp"),
     "needs kind: one of embedded, url", 1),
    ("run-id-exists", ["run", "--env", "staging", "--phase", "orphan_check", "--run-id", "r1"], {}, run_once("r1"),
     "run id 'r1' already exists", 1),
    ("flag-for-another-phase", ["run", "--env", "staging", "--phase", "orphan_check", "--confirm"], {}, None,
     "--confirm applies to the orphan_cleanup phase, which this run does not include", 1),
    ("approve-without-apply", ["run", "--env", "staging", "--phase", "orphan_check", "--approve", "abc"], {}, None,
     "--approve applies to the apply or orphan_cleanup phase", 1),
    ("audit-env-and-url", ["audit", "--env", "staging", "--database-url", "postgresql://x@h/db"], {}, None,
     "give exactly one of --env ENV or --database-url URL", 2),
    ("audit-url-malformed", ["audit", "--database-url", "http://u:pw@h/db"], {}, None,
     "--database-url is not a PostgreSQL URL", 2),
    ("blast-unknown-organization", ["blast-radius", "--env", "staging", "--org", "no-such-org"], {}, None,
     "organization 'no-such-org' is not in", 1),
    ("quarantine-unknown-run", ["quarantine", "restore", "nope", "--env", "staging"], {}, None,
     "run 'nope' has nothing in quarantine", 1),
    ("archive-unknown-run", ["archive", "show", "nope"], {}, None, "run 'nope' is not in the archive", 1),
    ("archive-unknown-target", ["archive", "verify", "nope"], {}, None,
     "'nope' is neither a run nor an environment in the archive", 1),
    ("store-unknown-scheme", ["archive", "list"], {},
     append(CONFIG, '\n[evidence]\nstore = "ftp://evidence.example.com/audit"\n'),
     "evidence store 'ftp://evidence.example.com/audit' has an unknown scheme 'ftp'; use a folder, "
     "git+<url>#branch=<name>, or s3://bucket/prefix", 1),
    ("store-credentials-in-file", ["run", "--env", "staging"], {},
     append(CONFIG, '\n[evidence]\nstore = "git+https://bot:pw@github.com/org/evidence.git"\n'),
     "carries credentials; never write them in fkrunbook.toml", 1),
    ("store-unreachable", ["archive", "publish"],
     {"FKRUNBOOK_STORE": "git+http://bot:Wr0ng-pw@127.0.0.1:9/org/evidence.git#branch=evidence"}, run_once("r1"),
     "cannot reach the evidence store git+http://127.0.0.1:9/org/evidence.git#branch=evidence: ", 1),
    ("store-no-credentials", ["archive", "publish"],
     {"FKRUNBOOK_STORE": "s3://fk-evidence/team", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
      "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
      "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"},
     run_once("r1"), "no credentials for the evidence store s3://fk-evidence/team: export AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY", 1),
    ("local-too-few-rows", ["local", "reset", "--rows", "5"], {}, None, "--rows 5 is too few", 1),
    ("local-team-rows-negative", ["local", "reset", "--from-migrations", "--rows", "-1"], {}, None,
     "--rows -1 is negative; give 0 for the schema only (as a new environment is)", 1),
    ("local-team-spec-table-absent", ["local", "reset", "--from-migrations", "team/migrations", "--rows", "20"], {},
     local_team_schema("team/migrations"),
     "table public.cross_tenant_access_grants_projection (foreign key cross_tenant_access_grants_projection.", 1),
    ("local-spec-without-team-schema", ["local", "reset", "--spec", SPEC], {}, None,
     "--spec applies with --from-migrations or --from-dump", 1),
    ("demo-team-rows-negative", ["demo", "--from-migrations", "--rows", "-1"], {}, None, "--rows -1 is negative", 1),
    ("lab-unknown-environment", ["lab", "--env", "stagng"], {}, None,
     "environment 'stagng' is not defined; known: local, staging, production", 1),
    ("lab-port-in-use", ["lab", "--port", "{busy_port}"], {}, busy_port,
     "is in use on 127.0.0.1; choose another with --port, or leave --port out for a free one", 1),
    ("lab-token-too-short", ["lab", "--no-browser"], {"FKRUNBOOK_LAB_TOKEN": "abc"}, None,
     "the JupyterLab token is 3 characters long; use at least 16", 1),
]


@pytest.fixture(scope="module")
def password_role(server):
    """A role that must give its password (scram), on the otherwise trusting test server."""
    import psycopg

    hba = server.data_dir / "pgdata" / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all fk_pw_user 127.0.0.1/32 scram-sha-256\n" + original)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE fk_pw_user LOGIN PASSWORD 'the-right-one'")
        conn.execute("SELECT pg_reload_conf()")
    yield "fk_pw_user"
    hba.write_text(original)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("DROP ROLE fk_pw_user")


def _files(project, local_kept=False):
    """The project's files (a local database a case's setup built is compared by local_state instead)."""
    return {str(p.relative_to(project)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(project.rglob("*")) if p.is_file() and "audit" not in p.relative_to(project).parts
            and not (local_kept and ".fkrunbook" in p.relative_to(project).parts)}


def local_state(data_dir):
    """The local database a case's setup built (its databases, tables and rows), or None when none was."""
    if not (data_dir / "pgdata").exists():
        return None
    server = ensure_server(data_dir)
    with psycopg.connect(server.url("postgres")) as conn:
        databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database ORDER BY 1")]
    with psycopg.connect(server.url("fkrunbook")) as conn:
        tables = conn.execute("SELECT format('%I.%I', relnamespace::regnamespace, relname) FROM pg_class "
                              "WHERE relkind = 'r' AND relnamespace::regnamespace::text NOT IN "
                              "('pg_catalog', 'information_schema') ORDER BY 1").fetchall()
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for (t,) in tables}
    return databases, rows


@pytest.fixture
def local_data_dir(project_copy):
    """The copied project's local environment: whatever server a case might start there is stopped
    at teardown, whether the case passed or failed (and the file check sees it as a change)."""
    data_dir = project_copy / ".fkrunbook" / "local"
    try:
        yield data_dir
    finally:
        stop_server(data_dir)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, project_copy, database, tmp_path, password_role, local_data_dir):
    name, args, env, setup, expected, status = case
    extra = setup(project_copy, database) if setup else None
    fill = {"url_no_db": database.url.replace(f"/{database.name}?", "/no_such_database?"),
            "url_bad_role": database.url.replace("postgres@", "no_such_role:pw@"),
            "url_wrong_password": database.url.replace("postgres@", f"{password_role}:Wr0ng-pw@"), **(extra or {})}
    env = {"STAGING_DATABASE_URL": database.url, **{k: v.format(**fill) for k, v in env.items()}}
    args = [a.format(**fill) for a in args]
    runs_before = sorted((project_copy / "audit").rglob("manifest.json")) if (project_copy / "audit").exists() else []
    local_before = local_state(local_data_dir)
    db_before, files_before = schema_state(database.url), _files(project_copy, local_before is not None)
    result = invoke(*args, cwd=project_copy, env=env)
    assert result.exit_code == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fkrunbook: error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert "pw@" not in result.stderr and database.url not in result.stderr and "Wr0ng-pw" not in result.stderr
    assert schema_state(database.url) == db_before
    assert _files(project_copy, local_before is not None) == files_before
    assert local_state(local_data_dir) == local_before
    runs_after = sorted((project_copy / "audit").rglob("manifest.json")) if (project_copy / "audit").exists() else []
    assert runs_after == runs_before  # nothing ran


def test_the_catalogue_has_at_least_30_cases_and_the_readme_lists_them():
    from .conftest import PROJECT

    assert len(CASES) >= 30
    readme = (PROJECT / "README.md").read_text()
    missing = [c[0] for c in CASES if f"`{c[0]}`" not in readme]
    assert not missing, f"README troubleshooting table lacks: {missing}"
