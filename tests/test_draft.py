"""The next FK change in one command: `fkrunbook spec new NAME --from-audit` drafts a spec from
the audit's undeclared missing_fk findings, the runbook refuses it until each reason is written,
and the same six phases then carry it out."""
import re

import pytest
import yaml

from fkrunbook.draft import suggest_on_delete
from fkrunbook.server import stop_server

from .rehearse import foreign_keys, local_bin_dir, team_repository
from .test_cli import invoke

FOURTH = """-- Notification preferences per user and organization: the key to the organization was forgotten.
create table public.user_notification_preferences (
    user_id         uuid not null references auth.users (id) on delete cascade,
    organization_id uuid not null,
    email_digest    boolean not null default true,
    primary key (user_id, organization_id)
);
create index idx_notification_preferences_org on public.user_notification_preferences (organization_id);
"""


def test_draft_write_the_reason_run_and_the_fourth_key_is_validated_and_documented(tmp_path):
    root = team_repository("event_store", "18", tmp_path / "team")
    env = ["--env", "local"]
    try:
        assert invoke("local", "reset", "--from-migrations", cwd=root).exit_code == 0
        first = invoke("run", *env, "--confirm", cwd=root)
        assert first.exit_code == 0, first.output  # the first spec's keys, and their files in the folder
        (root / "supabase" / "migrations" / "29990101000000_notification_preferences.sql").write_text(FOURTH)
        assert invoke("local", "reset", "--from-migrations", cwd=root).exit_code == 0

        drafted = invoke("spec", "new", "add_notification_org_fk", "--from-audit", *env, cwd=root)
        assert drafted.exit_code == 0, drafted.output
        lines = drafted.stdout.splitlines()
        assert lines[0].startswith("user_notification_preferences.organization_id: on_delete cascade (NOT NULL "
                                   "column (SET NULL cannot apply); the schema's NOT NULL keys to "
                                   "organizations_projection: 2 CASCADE); index idx_notification_preferences_org")
        path = root / "fkrunbook" / "add_notification_org_fk.yaml"
        spec = yaml.safe_load(path.read_text())
        assert [(k["table"], k["column"], k.get("index"), k["on_delete"]) for k in spec["foreign_keys"]] == [
            ("user_notification_preferences", "organization_id", "idx_notification_preferences_org", "cascade")]
        assert spec["migration"]["version"] > "29990101000000"  # newer than every file of the folder
        assert '"fkrunbook/add_notification_org_fk.yaml"' in (root / "fkrunbook.toml").read_text()

        refused = invoke("run", *env, "--spec", "add_notification_org_fk", "--confirm", cwd=root)
        assert refused.exit_code == 1
        assert refused.stderr.strip().endswith(
            "foreign_keys[0].reason for user_notification_preferences.organization_id is not written yet (it still "
            "starts with TODO); write why the key is needed, then run again"), refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1

        path.write_text(re.sub(r'reason: "TODO:[^"]*"', "reason: Preferences of an organization that no longer "
                               "exists notify nobody.", path.read_text()))
        second = invoke("run", *env, "--spec", "add_notification_org_fk", "--confirm", "--write-docs", cwd=root)
        assert second.exit_code == 0, second.output
        keys = foreign_keys(invoke_url(root))
        assert keys["user_notification_preferences.organization_id"] == (True, "CASCADE")
        gate = invoke("audit", *env, cwd=root)  # both specs count: nothing missing any more
        assert gate.exit_code == 0, gate.output
        nothing = invoke("spec", "new", "another_one", "--from-audit", *env, cwd=root)
        assert nothing.exit_code == 1 and "the audit finds no undeclared missing_fk in schema 'public': nothing to " \
            "draft" in nothing.stderr
    finally:
        stop_server(root / ".fkrunbook" / "local", local_bin_dir(root))
    doc = next(root.rglob("user_notification_preferences.md")).read_text()
    assert "user_notification_preferences_organization_id_fkey" in doc and "<!-- fkrunbook:begin" in doc
    assert not (root / "fkrunbook" / "another_one.yaml").exists()


def invoke_url(root):
    from fkrunbook.server import ensure_server

    return ensure_server(root / ".fkrunbook" / "local", local_bin_dir(root)).url("fkrunbook")


@pytest.mark.parametrize("nullable, existing, expected", [
    (False, [("n", False)], "cascade"),                            # NOT NULL: SET NULL cannot apply
    (True, [("n", False), ("n", False), ("c", False)], "set null"),  # what the other nullable keys do
    (True, [("c", False), ("c", False), ("n", False), ("n", True)], "cascade"),
    (True, [], "cascade"),
])
def test_on_delete_suggestion_follows_nullability_and_the_schemas_other_keys(nullable, existing, expected):
    assert suggest_on_delete(nullable, existing, "orgs")[0] == expected
