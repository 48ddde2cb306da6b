import json
import os
from dataclasses import replace

import pytest

from fkrunbook.errors import OrphanCleanupError, OrphansPresentError, ProtectedEnvironmentError
from fkrunbook.orphans import clean_up_orphans, find_orphans

from .conftest import CROSS_SCHEMA, cross_schema_spec, schema_state


def test_find_orphans_counts_exactly_the_planted_ones(database, spec, sample):
    report = find_orphans(database.connect(), spec)
    assert report.fk_orphans == sample.orphans
    streams = report.summary.set_index("column")["orphan_rows"]
    for table, count in sample.orphan_streams.items():
        assert streams[f"{table}.stream_id"] == count
    assert streams["domain_events.event_data->organization_id"] == sample.orphan_payloads > 0
    assert not report.clean and report.verdict.startswith("NO-GO")
    assert all(len(report.samples[label]) == 5 for label in sample.orphans)
    gone = report.samples["domain_events.stream_id"]
    assert len(gone) == sample.hard_deleted and list(gone.columns) == ["stream_id", "rows"]
    assert database.sql("SELECT count(*) FROM organizations_projection WHERE id = ANY(%s)",
                        ([str(i) for i in gone["stream_id"]],))[0][0] == 0


def test_soft_deleted_organizations_are_not_orphans(database, spec, sample):
    soft = database.sql("SELECT count(*) FROM organizations_projection WHERE deleted_at IS NOT NULL")[0][0]
    assert soft == sample.soft_deleted > 0
    database.sql("DELETE FROM organizations_projection WHERE deleted_at IS NOT NULL")
    after = find_orphans(database.connect(), spec).fk_orphans
    assert sum(after.values()) > sum(sample.orphans.values())  # their children only become orphans when hard-deleted


def test_null_in_a_nullable_column_is_not_an_orphan(database, spec, sample):
    database.sql("ALTER TABLE impersonation_sessions_projection ALTER COLUMN target_org_id DROP NOT NULL")
    database.sql("UPDATE impersonation_sessions_projection SET target_org_id = NULL WHERE session_id = 'sess-1'")
    counts = find_orphans(database.connect(), spec).fk_orphans
    assert counts["impersonation_sessions_projection.target_org_id"] == \
        sample.orphans["impersonation_sessions_projection.target_org_id"]


def test_conclude_fails_on_orphans_only_when_asked(database, spec):
    report = find_orphans(database.connect(), spec)
    assert "NO-GO" in report.conclude().data
    with pytest.raises(OrphansPresentError, match="run the orphan_check and orphan_cleanup phases first"):
        report.conclude(fail=True)


def test_cleanup_dry_run_changes_nothing(database, spec, sample, tmp_path):
    before = schema_state(database.url)
    result = clean_up_orphans(database.connect(), spec, tmp_path, "run-1", confirm=False)
    assert dict(zip(result.summary["column"], result.summary["rows"])) == sample.orphans
    assert schema_state(database.url) == before
    assert not (tmp_path / "quarantine").exists()


def test_cleanup_keeps_an_exact_copy_of_every_deleted_row(database, spec, sample, tmp_path):
    orphan_rows = {}
    for fk in spec.foreign_keys:
        orphan_rows[fk.label] = {r[0]["id"]: r[0] for r in database.sql(
            f"SELECT to_jsonb(c) FROM {fk.table} c WHERE NOT EXISTS "
            f"(SELECT 1 FROM organizations_projection o WHERE o.id = c.{fk.column})")}
    result = clean_up_orphans(database.connect(), spec, tmp_path, "run-1", confirm=True)
    assert find_orphans(database.connect(), spec).clean
    quarantined = {row[0]["id"]: row[0] for row in database.sql(
        "SELECT row_data FROM fkrunbook_quarantine.orphan_rows WHERE run_id = 'run-1'")}
    on_disk = {}
    for name in os.listdir(tmp_path / "quarantine"):
        for line in (tmp_path / "quarantine" / name).read_text().splitlines():
            row = json.loads(line)
            on_disk[row["id"]] = row
    every_orphan = {k: v for rows in orphan_rows.values() for k, v in rows.items()}
    assert result.total == len(every_orphan)  # a row orphaned in two columns is deleted (and kept) once
    assert quarantined == every_orphan == on_disk  # jsonb, arrays and timestamps exactly as they were
    restore = database.sql("SELECT count(*) FROM fkrunbook_quarantine.orphan_rows q, "
                           "jsonb_populate_record(NULL::impersonation_sessions_projection, q.row_data) r "
                           "WHERE q.table_name = 'impersonation_sessions_projection'")[0][0]
    assert restore == sample.orphans["impersonation_sessions_projection.target_org_id"]


def test_cleanup_on_a_protected_environment_needs_an_approval_of_exactly_these_rows(database, spec, tmp_path):
    guarded = database.connect("guarded")
    before = schema_state(database.url)
    with pytest.raises(ProtectedEnvironmentError) as info:
        clean_up_orphans(guarded, spec, tmp_path, "run-1", confirm=True)
    assert "orphan clean-up needs --approve PLAN_HASH" in str(info.value)
    assert "`fkrunbook run --env guarded --phase orphan_cleanup`" in str(info.value)
    dry = clean_up_orphans(guarded, spec, tmp_path, "run-1")
    assert dry.plan_hash == clean_up_orphans(guarded, spec, tmp_path, "run-1").plan_hash  # stable
    database.sql("DELETE FROM impersonation_sessions_projection WHERE session_id = 'planted-1'")
    changed = schema_state(database.url)
    with pytest.raises(ProtectedEnvironmentError, match="plan changed since it was approved"):
        clean_up_orphans(guarded, spec, tmp_path, "run-1", confirm=True, approve=dry.plan_hash)
    assert schema_state(database.url) == changed != before
    fresh = clean_up_orphans(guarded, spec, tmp_path, "run-1").plan_hash
    done = clean_up_orphans(guarded, spec, tmp_path, "run-1", confirm=True, approve=fresh)
    assert done.confirmed and done.plan_hash == fresh and find_orphans(guarded, spec).clean


def test_cleanup_deletes_nothing_when_its_copy_cannot_be_written(database, spec, tmp_path):
    before = schema_state(database.url)
    blocked = tmp_path / "evidence"
    blocked.mkdir()
    (blocked / "quarantine").mkdir()
    (blocked / "quarantine" / f"{spec.foreign_keys[1].table}.{spec.foreign_keys[1].column}.jsonl").mkdir()
    from fkrunbook.errors import EvidenceUnwritableError

    with pytest.raises(EvidenceUnwritableError, match="cannot write the quarantine copy .* nothing was deleted"):
        clean_up_orphans(database.connect(), spec, blocked, "run-1", confirm=True)
    assert schema_state(database.url) == before
    assert database.sql("SELECT to_regclass('fkrunbook_quarantine.orphan_rows')")[0][0] is None


def test_orphans_are_found_against_a_parent_in_another_schema(database, tmp_path):
    database.sql(CROSS_SCHEMA)
    spec = cross_schema_spec()
    report = find_orphans(database.connect(), spec)
    assert report.fk_orphans == {"projects.account_id": 2}  # the decoy public.accounts holds their ids
    assert set(report.samples["projects.account_id"]["name"]) == {"orphan 1", "orphan 2"}
    streams = report.summary.set_index("column")
    assert streams.loc["activity_log.subject_id", "orphan_rows"] == 1  # only subject_type 'account' is compared
    result = clean_up_orphans(database.connect(), spec, tmp_path, "run-1", confirm=True)
    assert result.total == 2 and find_orphans(database.connect(), spec).clean
    assert database.sql("SELECT name FROM public.projects ORDER BY name") == [("a1",), ("a2",), ("b1",)]
    assert database.sql("SELECT schema_name, table_name, count(*) FROM fkrunbook_quarantine.orphan_rows "
                        "GROUP BY 1, 2") == [("public", "projects", 2)]


GRANTS = "cross_tenant_access_grants_projection"
BOTH_GONE = (f"INSERT INTO {GRANTS} (consultant_org_id, provider_org_id, scope, authorization_type, status) "
             "VALUES (md5('gone-c')::uuid, md5('gone-p')::uuid, 'organization_unit', 'both gone', 'revoked')")


def _orphaned(database, column):
    return {row["id"]: row for (row,) in database.sql(
        f"SELECT to_jsonb(c) FROM {GRANTS} c WHERE NOT EXISTS "
        f"(SELECT 1 FROM organizations_projection o WHERE o.id = c.{column})")}


def test_cleanup_of_a_set_null_key_clears_the_column_and_keeps_the_row(database, spec, tmp_path):
    database.sql(f"ALTER TABLE {GRANTS} ALTER COLUMN consultant_org_id DROP NOT NULL")
    database.sql(BOTH_GONE)
    spec = replace(spec, foreign_keys=tuple(replace(fk, on_delete="set null") if fk.column == "consultant_org_id"
                                            else fk for fk in spec.foreign_keys))
    consultant, provider = _orphaned(database, "consultant_org_id"), _orphaned(database, "provider_org_id")
    cleared = {i: row for i, row in consultant.items() if i not in provider}  # a row the provider key deletes goes
    result = clean_up_orphans(database.connect(), spec, tmp_path, "run-n", confirm=True)
    assert find_orphans(database.connect(), spec).clean
    summary = result.summary.set_index("column")
    assert summary.loc[f"{GRANTS}.consultant_org_id", "action"] == "set null"
    assert summary.loc[f"{GRANTS}.consultant_org_id", "rows"] == len(cleared) > 0
    assert summary.loc[f"{GRANTS}.provider_org_id", "action"] == "delete"
    now = {row["id"]: row for (row,) in database.sql(f"SELECT to_jsonb(c) FROM {GRANTS} c WHERE id = ANY(%s)",
                                                      (list(cleared) + list(provider),))}
    assert set(now) == set(cleared)  # kept, and only their column cleared
    assert all(now[i] == {**cleared[i], "consultant_org_id": None} for i in cleared)
    kept = {row["id"]: (action, row) for action, row in database.sql(
        "SELECT action, row_data FROM fkrunbook_quarantine.orphan_rows WHERE run_id = 'run-n' "
        "AND column_name = 'consultant_org_id'")}
    assert kept == {i: ("set null", row) for i, row in cleared.items()}  # as it was before the clean-up
    on_disk = [json.loads(line) for line in (tmp_path / "quarantine" / f"{GRANTS}.consultant_org_id.jsonl")
               .read_text().splitlines()]
    assert sorted(r["id"] for r in on_disk) == sorted(cleared)


@pytest.mark.parametrize("deferred", ["", "DEFERRABLE INITIALLY DEFERRED"], ids=["immediate", "deferred"])
def test_cleanup_of_rows_another_table_still_needs_is_one_line_and_changes_nothing(database, spec, tmp_path,
                                                                                  deferred):
    planted = next(iter(_orphaned(database, "provider_org_id")))
    database.sql(f"CREATE TABLE grant_reviews (grant_id uuid NOT NULL REFERENCES {GRANTS} {deferred}); "
                 f"INSERT INTO grant_reviews VALUES ('{planted}')")
    before = schema_state(database.url)
    with pytest.raises(OrphanCleanupError) as caught:
        clean_up_orphans(database.connect(), spec, tmp_path, "run-r", confirm=True)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(
        f'the database refused the clean-up: update or delete on table "{GRANTS}" violates foreign key constraint '
        '"grant_reviews_grant_id_fkey"') and "nothing was deleted and no quarantine file was written" in message
    assert caught.value.constraint == "grant_reviews_grant_id_fkey"
    assert schema_state(database.url) == before
    assert not (tmp_path / "quarantine").exists()
