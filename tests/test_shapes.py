"""The whole rehearsal on schemas shaped like real Supabase projects' (tests/team_schemas), each
with its own spec, on the three majors Supabase teams run (15, 17) or fkrunbook embeds (18):
the schema loaded from the team's migrations through the compatibility layer, with sample data and
planted orphans, then every phase."""
import pytest

from .majors import MAJORS, missing
from .rehearse import rehearse, team_repository

CASCADE, SET_NULL = "CASCADE", "SET NULL"
SHAPES = {
    # shape -> the tenant keys its spec adds, with their ON DELETE action
    "event_store": {"impersonation_sessions_projection.target_org_id": CASCADE, "user_roles_projection.org_id": CASCADE},
    "accounts": {"projects.account_id": CASCADE, "project_members.account_id": CASCADE,
                 "invoices.account_id": CASCADE, "activity_log.account_id": CASCADE},
    "cycles": {"memberships.organization_id": CASCADE, "invitations.organization_id": CASCADE,
               "documents.organization_id": CASCADE, "webhooks.organization_id": CASCADE,
               "billing_customers.organization_id": CASCADE, "notifications.organization_id": CASCADE,
               "profiles.current_organization_id": SET_NULL},
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
    for key, action in SHAPES[shape].items():
        assert done.keys[key] == (True, action), key
    assert len(done.results["apply"]["files_recorded"]) == 3  # indexes, keys NOT VALID, VALIDATE
    assert done.results["cascade_validation"]["passed"]
    done.check_orphans()  # found what the sample data planted, and cleaned up
