import pytest
import yaml

from fkrunbook.errors import SpecError
from fkrunbook.spec import load_spec, parse_spec

from .conftest import SPEC


def test_spec_lists_the_three_foreign_keys_and_three_exceptions(spec):
    assert [fk.label for fk in spec.foreign_keys] == [
        "impersonation_sessions_projection.target_org_id",
        "cross_tenant_access_grants_projection.provider_org_id",
        "cross_tenant_access_grants_projection.consultant_org_id",
    ]
    assert {fk.classification for fk in spec.foreign_keys} == {"oversight", "recommended"}
    assert all(fk.on_delete == "cascade" and fk.reason for fk in spec.foreign_keys)
    assert [e.label for e in spec.exceptions] == [
        "domain_events.stream_id", "workflow_queue_projection.stream_id", "unprocessed_events.stream_id"]
    assert all(e.discriminator and e.discriminator.column == "stream_type" for e in spec.exceptions)
    assert spec.parent.table == "organizations_projection" and spec.parent.column == "id"
    assert len(spec.sha256) == 64


def test_spec_without_version_or_index_names_leaves_them_to_the_migrations_folder():
    raw = _raw()
    raw["migration"].pop("version")
    spec = parse_spec(raw)
    assert spec.migration.version is None
    assert [fk.index_given for fk in spec.foreign_keys] == [True, False, False]
    assert spec.foreign_keys[1].index == "cross_tenant_access_grants_projection_provider_org_id_idx"


def test_the_parent_is_in_the_specs_schema_unless_it_names_its_own(spec):
    assert spec.parent.schema == spec.schema == "public"
    assert spec.parent_name == "organizations_projection"  # messages and docs name it as they always have
    raw = _raw()
    raw["parent"]["schema"] = "basejump"
    other = parse_spec(raw)
    assert (other.schema, other.parent.schema, other.parent.table) == ("public", "basejump", "organizations_projection")
    assert other.parent_name == "basejump.organizations_projection"


def test_a_payload_names_one_key_or_several(spec):
    events = spec.exceptions[0]
    assert events.payload.column == "event_data" and events.payload.keys == ("organization_id",)  # `key:` as ever
    raw = _raw()
    raw["intentional_exceptions"][0]["payload"] = {"column": "event_data",
                                                   "keys": ["organization_id", "org_id", "organization.id", "orgId"]}
    payload = parse_spec(raw).exceptions[0].payload
    assert payload.keys == ("organization_id", "org_id", "organization.id", "orgId")
    assert payload.path("organization.id") == ("organization", "id")
    assert payload.label("domain_events", "organization.id") == "domain_events.event_data->organization->id"


def _raw():
    return yaml.safe_load(SPEC.read_text())


def _error(raw) -> str:
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_spec_missing_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(SpecError, match="does not exist; pass --spec"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_invalid_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nforeign_keys: [\n")
    with pytest.raises(SpecError, match="not valid YAML at line"):
        load_spec(bad)


def test_spec_rejects_identifier_with_semicolon():
    raw = _raw()
    raw["foreign_keys"][0]["table"] = "x; drop table y"
    assert "foreign_keys[0].table 'x; drop table y' is not a plain PostgreSQL identifier" in _error(raw)


def test_spec_rejects_identifier_with_quote():
    raw = _raw()
    raw["parent"]["column"] = 'id"--'
    assert "parent.column" in _error(raw)


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r.pop("parent"), "has no 'parent'"),
    (lambda r: r["parent"].update(schema="Base Jump"), "parent.schema 'Base Jump' is not a plain PostgreSQL identifier"),
    (lambda r: r["parent"].update(schema=""), "parent has no 'schema'; add it"),
    (lambda r: r["foreign_keys"][0].update(on_delete="explode"), "on_delete 'explode' is not one of"),
    (lambda r: r["foreign_keys"][0].update(classification="maybe"), "classification 'maybe'"),
    (lambda r: r["foreign_keys"][0].pop("reason"), "has no 'reason'"),
    (lambda r: r.update(foreign_keys=[]), "foreign_keys is empty"),
    (lambda r: r.update(foreign_keys={"a": 1}), "foreign_keys must be a list"),
    (lambda r: r["migration"].update(version="2026"), "must be 14 digits"),
    (lambda r: r["migration"].update(version="20261131120000"), "is not a date and time YYYYMMDDHHMMSS"),
    (lambda r: r["migration"].update(lock_timeout="soon"), "must be a PostgreSQL duration"),
    (lambda r: r["foreign_keys"].append(dict(r["foreign_keys"][0])), "is listed twice"),
    (lambda r: r["intentional_exceptions"][0].update(column="target_org_id", table="impersonation_sessions_projection"),
     "is listed twice"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data", "keys": []}),
     "intentional_exceptions[0].payload.keys is empty; list at least one key that holds an organization id"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data", "keys": ["org_id", "org-id"]}),
     "intentional_exceptions[0].payload.keys[1] 'org-id' is not a plain JSON key"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data", "key": "x'; drop table y"}),
     "intentional_exceptions[0].payload.key \"x'; drop table y\" is not a plain JSON key"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data", "keys": ["a.b.c"]}),
     "'a.b.c' is not a plain JSON key (letters, digits and _, not starting with a digit; one level nested"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data", "keys": "org_id"}),
     "intentional_exceptions[0].payload.keys must be a list, not str"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data", "key": "a", "keys": ["b"]}),
     "intentional_exceptions[0].payload has both 'key' and 'keys'"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data"}),
     "intentional_exceptions[0].payload has no 'keys'; add keys: [organization_id] (or key: organization_id)"),
    (lambda r: r["intentional_exceptions"][0].update(payload={"column": "event_data", "keys": ["org_id", "org_id"]}),
     "intentional_exceptions[0].payload.keys lists 'org_id' twice"),
])
def test_spec_malformed_gets_one_clear_line(mutate, expected):
    raw = _raw()
    mutate(raw)
    assert expected in _error(raw)


def test_spec_document_not_a_mapping():
    assert "the document must be a mapping" in _error(["a", "list"])
