"""Local data: the baseline schema (before the change) and a generator of staging-like rows.

The generator plants the problems the runbook exists to fix: organizations hard-deleted after
their children were written (the children become orphans), orphans referencing organizations
that never existed, soft-deleted organizations (not orphans), and organization event streams
whose organization is gone. Everything is set-based SQL, so ``rows`` scales to millions.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg

from .errors import LocalServerError


def baseline_sql() -> str:
    return resources.files("fkrunbook").joinpath("sql/baseline.sql").read_text()


@dataclass(frozen=True)
class SampleData:
    """How many rows of each kind were written, and how many of them are orphans by construction."""
    organizations: int
    hard_deleted: int
    soft_deleted: int
    sessions: int
    grants: int
    events: int
    queue: int
    orphans: dict  # "table.column" -> count of rows whose organization does not exist
    orphan_streams: dict  # "table" -> count of organization-stream rows whose organization does not exist
    orphan_payloads: int = 0  # events whose event_data names an organization that does not exist


def load_baseline(conn: psycopg.Connection) -> None:
    conn.execute(baseline_sql())


def generate_data(conn: psycopg.Connection, rows: int = 2000, planted: int = 3) -> SampleData:
    """Write staging-like data into the baseline tables. ``rows`` impersonation sessions, rows/2
    grants, about rows organization and user events, rows/4 queue entries; ``planted`` extra
    orphans per foreign-key column that reference organizations that never existed.
    Deterministic: the same arguments give the same rows (ids are md5 of an index)."""
    check_rows(rows)
    orgs = max(20, rows // 100)
    hard = max(2, orgs // 20)      # organizations hard-deleted after their children were written
    soft = max(1, orgs // 10)      # organizations soft-deleted (still present: not orphans)
    grants = rows // 2
    queue = rows // 4
    user_events = rows - orgs
    p = {"orgs": orgs, "hard": hard, "soft": soft, "rows": rows, "grants": grants, "queue": queue,
         "user_events": user_events, "planted": planted}
    statements = [
        # Organizations 0..orgs-1; the last `hard` are hard-deleted below, the `soft` before them soft-deleted.
        """INSERT INTO organizations_projection (id, name, slug, type, is_active, created_at, metadata, tags)
           SELECT md5('org-' || i)::uuid, 'Organization ' || i, 'org-' || i,
                  (ARRAY['platform_owner','provider','provider_partner'])[1 + least(i, 1) + (i %% 2)],
                  true, now() - make_interval(days => i), jsonb_build_object('seq', i), ARRAY['sample']
           FROM generate_series(0, %(orgs)s - 1) AS i""",
        """UPDATE organizations_projection SET is_active = false, deleted_at = now(),
                  deletion_reason = 'sample soft delete'
           WHERE slug IN (SELECT 'org-' || i FROM generate_series(%(orgs)s - %(hard)s - %(soft)s,
                                                                  %(orgs)s - %(hard)s - 1) AS i)""",
        """INSERT INTO impersonation_sessions_projection (id, session_id, super_admin_user_id, target_user_id,
                  target_org_id, super_admin_email, target_email, justification_reason, status, started_at, expires_at)
           SELECT md5('session-' || i)::uuid, 'sess-' || i, md5('admin-' || (i %% 7))::uuid, md5('user-' || i)::uuid,
                  md5('org-' || (i %% %(orgs)s))::uuid, 'admin' || (i %% 7) || '@example.test', 'user' || i || '@example.test',
                  'support ticket ' || i, (ARRAY['active','ended','expired'])[1 + i %% 3],
                  now() - make_interval(hours => i %% 1000), now() + interval '1 hour'
           FROM generate_series(0, %(rows)s - 1) AS i""",
        """INSERT INTO cross_tenant_access_grants_projection (id, consultant_org_id, consultant_user_id, provider_org_id,
                  scope, scope_id, authorization_type, granted_by, permissions, status)
           SELECT md5('grant-' || i)::uuid, md5('org-' || (i %% %(orgs)s))::uuid, md5('user-' || i)::uuid,
                  md5('org-' || ((i * 7 + 3) %% %(orgs)s))::uuid,
                  (ARRAY['organization_unit','client_specific'])[1 + i %% 2], md5('scope-' || i)::uuid,
                  'consulting_agreement', md5('admin-' || (i %% 7))::uuid, '["read"]'::jsonb,
                  (ARRAY['active','revoked','expired','suspended'])[1 + i %% 4]
           FROM generate_series(0, %(grants)s - 1) AS i""",
        # One 'organization.created' event per organization, then user events.
        """INSERT INTO domain_events (id, stream_id, stream_type, stream_version, event_type, event_data, processed_at)
           SELECT md5('org-event-' || i)::uuid, md5('org-' || i)::uuid, 'organization', 1, 'organization.created',
                  jsonb_build_object('organization_id', md5('org-' || i)::uuid, 'slug', 'org-' || i),
                  CASE WHEN i %% 5 = 0 THEN NULL ELSE now() END
           FROM generate_series(0, %(orgs)s - 1) AS i""",
        """INSERT INTO domain_events (id, stream_id, stream_type, stream_version, event_type, event_data, processed_at)
           SELECT md5('user-event-' || i)::uuid, md5('user-' || i)::uuid, 'user', 1, 'user.created',
                  jsonb_build_object('organization_id', md5('org-' || (i %% %(orgs)s))::uuid), now()
           FROM generate_series(0, %(user_events)s - 1) AS i""",
        # Queue: every organization event (so deleted organizations leave queue entries), then user events.
        """INSERT INTO workflow_queue_projection (event_id, event_type, event_data, stream_id, stream_type, status)
           SELECT id, event_type, event_data, stream_id, stream_type, 'pending' FROM domain_events
           WHERE stream_type = 'organization'""",
        """INSERT INTO workflow_queue_projection (event_id, event_type, event_data, stream_id, stream_type, status)
           SELECT id, event_type, event_data, stream_id, stream_type, 'completed' FROM domain_events
           WHERE stream_type = 'user' ORDER BY sequence_number
           LIMIT greatest(%(queue)s - %(orgs)s, 0)""",
        # Hard-delete the last `hard` organizations: their children and event streams are left behind.
        """DELETE FROM organizations_projection
           WHERE slug IN (SELECT 'org-' || i FROM generate_series(%(orgs)s - %(hard)s, %(orgs)s - 1) AS i)""",
        # Orphans referencing organizations that never existed.
        """INSERT INTO impersonation_sessions_projection (session_id, super_admin_user_id, target_user_id,
                  target_org_id, status, expires_at, justification_reason)
           SELECT 'planted-' || i, md5('admin-0')::uuid, md5('planted-user-' || i)::uuid,
                  md5('missing-org-' || i)::uuid, 'ended', now(), 'planted orphan'
           FROM generate_series(1, %(planted)s) AS i""",
        """INSERT INTO cross_tenant_access_grants_projection (consultant_org_id, provider_org_id, scope,
                  authorization_type, status)
           SELECT md5('missing-org-c' || i)::uuid, md5('org-0')::uuid, 'organization_unit', 'planted orphan', 'revoked'
           FROM generate_series(1, %(planted)s) AS i""",
        """INSERT INTO cross_tenant_access_grants_projection (consultant_org_id, provider_org_id, scope,
                  authorization_type, status)
           SELECT md5('org-0')::uuid, md5('missing-org-p' || i)::uuid, 'client_specific', 'planted orphan', 'revoked'
           FROM generate_series(1, %(planted)s) AS i""",
    ]
    with conn.transaction():
        for statement in statements:
            conn.execute(statement, p)
    gone = set(range(orgs - hard, orgs))
    return SampleData(
        organizations=orgs - hard, hard_deleted=hard, soft_deleted=soft, sessions=rows + planted,
        grants=grants + 2 * planted, events=orgs + user_events, queue=max(queue, orgs),
        orphans={
            "impersonation_sessions_projection.target_org_id": _count_mod(rows, orgs, gone) + planted,
            "cross_tenant_access_grants_projection.provider_org_id":
                sum(1 for i in range(grants) if (i * 7 + 3) % orgs in gone) + planted,
            "cross_tenant_access_grants_projection.consultant_org_id": _count_mod(grants, orgs, gone) + planted,
        },
        orphan_streams={"domain_events": hard, "workflow_queue_projection": hard,
                        "unprocessed_events": sum(1 for i in gone if i % 5 == 0)},
        orphan_payloads=hard + _count_mod(user_events, orgs, gone),  # organization events + user events
    )


def _count_mod(n: int, m: int, residues: set[int]) -> int:
    """How many i in [0, n) have i %% m in residues."""
    full, rest = divmod(n, m)
    return sum(full + (1 if r < rest else 0) for r in residues)


def check_rows(rows: int) -> None:
    if rows < 10:
        raise LocalServerError(f"--rows {rows} is too few: the sample needs at least 10 rows")


def reset_local(env, rows: int = 2000) -> SampleData:
    """The local environment's database recreated with fresh sample data (its server started if it
    is not running). A bad ``rows`` is refused before anything starts."""
    from .server import ensure_server

    check_rows(rows)
    return ensure_local_database(ensure_server(env.data_dir, env.bin_dir), env.database, rows=rows, reset=True)


def ensure_local_database(server, database: str, rows: int = 2000, reset: bool = False) -> SampleData | None:
    """Create the local database on ``server`` (a :class:`fkrunbook.server.LocalServer`) with the
    baseline schema and sample data if it does not exist, or, with ``reset``, drop and recreate it.
    It is built under a temporary name and swapped in when complete
    (:func:`fkrunbook.server.rebuild_database`), so an interrupted build never leaves a half-loaded
    database behind. Return what was generated, or None if it already existed."""
    from .server import rebuild_database

    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    if exists and not reset:
        return None

    def build(url: str) -> SampleData:
        try:
            with psycopg.connect(url) as conn:
                load_baseline(conn)
                return generate_data(conn, rows=rows)
        except psycopg.Error as err:
            raise LocalServerError(f"could not load sample data into the local database: {err}") from None

    return rebuild_database(server, database, build)


def seed_demo_docs(config) -> list:
    """What a team's docs look like before the runbook, written into the demo's docs layout: a table
    doc with the team's own wording (including a line the new key makes stale) and the two org
    clean-up procedures, so the demo shows the docs phase updating docs in place."""
    layout = config.docs
    table = layout.table_doc("impersonation_sessions_projection")
    written = [table]
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text("---\nstatus: current\n---\n\n# impersonation_sessions_projection\n\n"
                     "Super-admin impersonation sessions, one row per session.\n\n## Relationships\n\n"
                     "- **organizations_projection** → `target_org_id`\n  - Implicit foreign key (not enforced)\n")
    folder = layout.new / "procedures"
    folder.mkdir(parents=True, exist_ok=True)
    for name, title in (("org-cleanup.md", "Organization clean-up"), ("org-cleanup-dryrun.md",
                                                                      "Organization clean-up, dry run")):
        (folder / name).write_text(f"# {title}\n\nThe team's own steps come first.\n")
        written.append(folder / name)
    return written
