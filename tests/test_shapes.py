"""The whole rehearsal on schemas shaped like real Supabase projects' (tests/team_schemas), each
with its own spec, on the three majors Supabase teams run (15, 17) or fkrunbook embeds (18):
the schema loaded from the team's migrations through the compatibility layer, then every phase."""
import pytest

from .majors import MAJORS, missing
from .rehearse import rehearse, team_repository

SHAPES = {
    # shape -> the tenant keys its spec adds
    "event_store": ["impersonation_sessions_projection.target_org_id", "user_roles_projection.org_id"],
    "accounts": ["projects.account_id", "project_members.account_id", "invoices.account_id",
                 "activity_log.account_id"],
    "cycles": ["memberships.organization_id", "invitations.organization_id", "documents.organization_id",
               "webhooks.organization_id", "billing_customers.organization_id", "notifications.organization_id"],
}


@pytest.mark.parametrize("major", MAJORS)
@pytest.mark.parametrize("shape", SHAPES)
def test_whole_rehearsal_on_a_real_shaped_schema(shape, major, tmp_path):
    if missing(major):
        pytest.skip(missing(major))
    root = team_repository(shape, major, tmp_path / "team")
    done = rehearse(root)
    assert done.load.stdout.splitlines()[0].startswith("loaded ")
    assert f"(PostgreSQL {major}." in done.load.stdout.splitlines()[0]
    for key in SHAPES[shape]:
        assert done.keys[key] == (True, "CASCADE"), key
    assert len(done.results["apply"]["files_recorded"]) == 3  # indexes, keys NOT VALID, VALIDATE
    assert done.results["cascade_validation"]["passed"]
