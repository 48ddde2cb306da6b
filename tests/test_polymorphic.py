"""Polymorphic references seen through their data: the discriminator's values (and a filter that
matches no row), and the payload keys that hold organization ids (and a key the spec misses)."""
from dataclasses import replace

from fkrunbook.audit import audit_schema
from fkrunbook.orphans import find_orphans
from fkrunbook.polymorphic import scan_payload
from fkrunbook.spec import Payload

QUEUE = "workflow_queue_projection"
GONE = "md5('org-' || i)::uuid"  # the sample hard-deletes its last organizations: their ids name no row


def _with_keys(spec, *keys):
    """The spec with the event store's payload listing ``keys``."""
    events = spec.exceptions[0]
    assert events.table == "domain_events"
    return replace(spec, exceptions=(replace(events, payload=Payload("event_data", keys)),) + spec.exceptions[1:])


def test_a_filter_that_matches_no_row_is_warned_naming_the_values_found(database, spec):
    # the real case: the team's triggers write every queue row with stream_type 'workflow_queue'
    database.sql(f"UPDATE {QUEUE} SET stream_type = 'workflow_queue'")
    rows = database.sql(f"SELECT count(*) FROM {QUEUE}")[0][0]
    report = find_orphans(database.connect(), spec)
    assert report.summary.set_index("column").loc[f"{QUEUE}.stream_id", "orphan_rows"] == 0  # what the filter misses
    expected = (f"stream_type = 'organization' matches no row of {QUEUE} ({rows} rows: workflow_queue {rows}); "
                "the spec's filter may be wrong")
    assert report.warnings == [expected]
    assert report.results()["warnings"] == [expected] and f"**Warning:** {expected}" in report.conclude().data
    seen = report.results()["discriminator_values"][f"{QUEUE}.stream_id"]
    assert seen == {"column": "stream_type", "rows": rows, "filter": "organization", "matched": 0,
                    "values": {"workflow_queue": rows}, "other_rows": 0}
    values = report.seen.values.set_index(["table", "value"])
    assert values.loc[(QUEUE, "workflow_queue"), "rows"] == rows and not values.loc[(QUEUE, "workflow_queue"),
                                                                                    "spec_filter"]
    polymorphic = {f.table: f for f in audit_schema(database.connect(), spec) if f.finding == "polymorphic"}
    assert polymorphic[f"public.{QUEUE}"].warning == expected and polymorphic[f"public.{QUEUE}"].declared
    assert f"stream_type values: workflow_queue {rows}" in polymorphic[f"public.{QUEUE}"].detail
    assert polymorphic["public.domain_events"].warning == ""


def test_a_filter_that_matches_is_not_warned_and_its_values_are_counted(database, spec):
    report = find_orphans(database.connect(), spec)
    assert report.warnings == []
    counts = dict(database.sql("SELECT stream_type, count(*) FROM domain_events GROUP BY 1"))
    seen = report.results()["discriminator_values"]["domain_events.stream_id"]
    assert seen["values"] == counts and seen["matched"] == counts["organization"] > 0
    assert seen["rows"] == sum(counts.values())
    frame = report.seen.values
    assert frame[frame["spec_filter"]]["value"].tolist() == ["organization"] * 3  # the spec's value, in each table
    detail = next(f.detail for f in audit_schema(database.connect(), spec) if f.table == "public.domain_events")
    assert f"stream_type values: organization {counts['organization']}, user {counts['user']}" in detail


def _plant_second_key(database):
    """Events that name their organization under org_id too (as a real team's did), 19 of them naming
    organizations that are gone, and a nested tenant.id; returns the orphans under org_id."""
    database.sql("UPDATE domain_events SET event_data = event_data || jsonb_build_object('org_id', "
                 "event_data->'organization_id', 'tenant', jsonb_build_object('id', event_data->'organization_id')) "
                 "WHERE sequence_number % 4 = 0")
    database.sql("INSERT INTO domain_events (stream_id, stream_type, stream_version, event_type, event_data) "
                 "SELECT md5('planted-' || i)::uuid, 'user', 1, 'user.moved', jsonb_build_object('org_id', "
                 "md5('never-an-org-' || i)::uuid) FROM generate_series(1, 19) AS i")
    return database.sql("SELECT count(*) FROM domain_events e WHERE NOT EXISTS (SELECT 1 FROM organizations_projection "
                        "o WHERE o.id::text = e.event_data->>'org_id') AND e.event_data ? 'org_id'")[0][0]


def test_a_payload_key_the_spec_does_not_list_is_warned(database, spec):
    orphans_under_org_id = _plant_second_key(database)
    report = find_orphans(database.connect(), spec)  # the spec lists organization_id only
    keys = report.seen.keys.set_index("key")
    sampled = database.sql("SELECT count(*) FROM domain_events")[0][0]
    naming = database.sql("SELECT count(*) FROM domain_events e JOIN organizations_projection o "
                          "ON o.id::text = e.event_data->>'org_id'")[0][0]
    assert keys.loc["org_id", "rows_naming_an_organization"] == naming > 0 and not keys.loc["org_id", "in_spec"]
    assert keys.loc["org_id", "rows_sampled"] == sampled  # a small table: every row read
    assert keys.loc["tenant.id", "rows_naming_an_organization"] == naming  # one level nested is found too
    assert keys.loc["organization_id", "in_spec"] and "slug" not in keys.index  # not a uuid
    assert (f"domain_events.event_data->org_id holds organization ids ({naming} of {sampled} sampled rows name an "
            "existing organization) but the spec's payload does not list 'org_id': its orphans are not checked; add "
            "it to the payload's keys") in report.warnings
    assert any(w.startswith("domain_events.event_data->tenant->id holds organization ids") for w in report.warnings)
    assert "domain_events.event_data->org_id" not in set(report.summary["column"])  # not checked: the spec's keys only
    assert orphans_under_org_id >= 19
    events = next(f for f in audit_schema(database.connect(), spec) if f.table == "public.domain_events")
    assert f"organization ids in event_data under: organization_id, org_id, tenant.id ({sampled} rows sampled)" in \
        events.detail
    assert "domain_events.event_data->org_id holds organization ids" in events.warning and events.declared


def test_every_listed_payload_key_is_checked_and_its_orphans_found(database, spec, sample):
    orphans_under_org_id = _plant_second_key(database)
    both = _with_keys(spec, "organization_id", "org_id", "tenant.id")
    report = find_orphans(database.connect(), both)
    summary = report.summary.set_index("column")["orphan_rows"]
    assert summary["domain_events.event_data->organization_id"] == sample.orphan_payloads
    assert summary["domain_events.event_data->org_id"] == orphans_under_org_id
    nested = database.sql("SELECT count(*) FROM domain_events e WHERE e.event_data #>> '{tenant,id}' IS NOT NULL "
                          "AND NOT EXISTS (SELECT 1 FROM organizations_projection o "
                          "WHERE o.id::text = e.event_data #>> '{tenant,id}')")[0][0]
    assert summary["domain_events.event_data->tenant->id"] == nested > 0
    assert report.warnings == []
    assert set(report.results()["orphan_streams"]) >= {"domain_events.event_data->org_id",
                                                       "domain_events.event_data->tenant->id"}


def test_a_listed_key_that_names_no_organization_is_warned(database, spec):
    report = find_orphans(database.connect(), _with_keys(spec, "organization_id", "organisation_id"))
    sampled = database.sql("SELECT count(*) FROM domain_events")[0][0]
    assert report.warnings == [f"domain_events.event_data->organisation_id is listed in the spec, but none of {sampled} "
                               "sampled rows names an existing organization under 'organisation_id'; check the key"]


def test_payload_sampling_is_bounded_on_a_large_table(database, spec):
    _plant_second_key(database)
    database.sql("ANALYZE domain_events")
    with database.connect().read_only() as conn:
        scan = scan_payload(conn, spec, "public", "domain_events", "event_data", ("organization_id",), sample_rows=60)
    assert scan.method.startswith("TABLESAMPLE SYSTEM") and 0 < scan.sampled <= 60
    assert scan.found[0] == "organization_id" and 0 < scan.keys[0].organizations <= scan.keys[0].with_uuid <= 60
    with database.connect().read_only() as conn:  # the same pages again: a report that does not move between runs
        assert scan_payload(conn, spec, "public", "domain_events", "event_data", ("organization_id",),
                            sample_rows=60) == scan


def test_a_key_only_newer_rows_carry_is_sampled_from_all_over_the_table(database, spec):
    # 15,000 older rows name their organization under organization_id; the 5,000 newest (a later
    # version of the app) under org_id as well: they sit in the table's last pages
    database.sql("CREATE TABLE events_log (id serial PRIMARY KEY, payload jsonb NOT NULL)")
    org = "md5('org-' || i % 10)::uuid"  # organizations the sample keeps
    database.sql(f"INSERT INTO events_log (payload) SELECT jsonb_build_object('organization_id', {org}, 'n', i) "
                 "FROM generate_series(1, 15000) i")
    database.sql(f"INSERT INTO events_log (payload) SELECT jsonb_build_object('organization_id', {org}, 'org_id', "
                 f"{org}) FROM generate_series(1, 5000) i")
    database.sql("ANALYZE events_log")
    with database.connect().read_only() as conn:
        scan = scan_payload(conn, spec, "public", "events_log", "payload", ("organization_id",), sample_rows=1000)
    assert scan.method.startswith("TABLESAMPLE SYSTEM") and scan.sampled == 1000
    keys = {k.key: k for k in scan.keys}
    assert keys["organization_id"].organizations == 1000
    assert 0.1 < keys["org_id"].organizations / scan.sampled < 0.4  # about a quarter, as in the table
    assert scan.warnings[0].startswith("events_log.payload->org_id holds organization ids")
