import re
from pathlib import Path

import pytest

from fkrunbook.config import DocsLayout
from fkrunbook.docs import BEGIN, END, merge_block, planned_docs, update_docs
from fkrunbook.keywords import IndexEntry, merge_keyword_rows
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans

from .conftest import CROSS_SCHEMA, cross_schema_spec
from .test_migration import MIGRATIONS

TABLES = "documentation/infrastructure/reference/database/tables"
STALE = "- `target_org_id` – Implicit foreign key (not enforced)"
INDEX = """# Agent index

Start here.

| Keywords | Document | Description | Owner |
|----------|----------|-------------|-------|
| organizations, tenants | [organizations_projection.md](infrastructure/reference/database/tables/organizations_projection.md) | Organizations read model | platform |
| deploy | [deploy.md](infrastructure/guides/deploy.md) | How to deploy | ops |

See also the README.
"""
CLEANUP = """# /org-cleanup

Delete a test organization and everything that belongs to it.

1. Delete its impersonation sessions by `target_org_id` first: there is no foreign key, nothing cascades.
2. Delete the organization.
"""


def folder_layout(folder: Path) -> DocsLayout:
    """The single-folder layout fkrunbook had before its configuration file."""
    return DocsLayout(root=folder, table="tables/{table}.md", new=folder, index=folder / "AGENT-INDEX.md",
                      procedures=("**/org-cleanup*.md",))


def team_doc(table: str, columns: str) -> str:
    return (f"---\ntitle: {table}\ncategory: database\n---\n\n# {table}\n\n> **TL;DR**: the {table} read model.\n\n"
            f"## Columns\n\n- `id` – primary key\n{columns}")


@pytest.fixture
def team(tmp_path) -> DocsLayout:
    """A repository kept the way a real team keeps it: nested table docs with front matter, the
    index one level up, the procedures in a dot-folder. No doc for workflow_queue_projection."""
    root = tmp_path / "repo"
    (root / TABLES).mkdir(parents=True)
    docs = {"organizations_projection": "- `slug` – unique\n",
            "impersonation_sessions_projection": STALE + "\n- `target_user_id` – the impersonated user\n",
            "cross_tenant_access_grants_projection": "- `provider_org_id` – the provider\n",
            "domain_events": "- `stream_id` – polymorphic, no foreign key\n",
            "unprocessed_events": "- `stream_id` – see domain_events\n"}
    for table, columns in docs.items():
        (root / TABLES / f"{table}.md").write_text(team_doc(table, columns))
    (root / "documentation/infrastructure/guides").mkdir(parents=True)
    (root / "documentation/infrastructure/guides/deploy.md").write_text("# Deploy\n")
    (root / "documentation/AGENT-INDEX.md").write_text(INDEX)
    (root / ".claude/commands").mkdir(parents=True)
    (root / ".claude/commands/org-cleanup.md").write_text(CLEANUP)
    (root / ".claude/commands/org-cleanup-dryrun.md").write_text("# /org-cleanup-dryrun\n\nShow what would go.\n")
    return DocsLayout(root=root, table=TABLES + "/{table}.md",
                      new=root / "documentation/infrastructure/reference/database/organization-keys",
                      index=root / "documentation/AGENT-INDEX.md", procedures=("**/org-cleanup*.md",))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def apply_keys(db, spec, tmp_path):
    clean_up_orphans(db, spec, tmp_path / "evidence", "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})


def test_docs_diff_by_default_writes_nothing(database, spec, tmp_path):
    docs = tmp_path / "docs"
    change = update_docs(database.connect(), spec, folder_layout(docs))
    assert change.changed == 9 and not change.files["written"].any()
    assert "+++ b/tables/impersonation_sessions_projection.md" in change.diff
    assert not docs.exists()


def test_docs_write_then_second_run_changes_nothing(database, spec, tmp_path):
    db = database.connect()
    docs = tmp_path / "docs"
    docs.mkdir()
    update_docs(db, spec, folder_layout(docs), write=True)
    again = update_docs(db, spec, folder_layout(docs), write=True)
    assert again.changed == 0 and again.diff == "" and not again.files["written"].any()
    text = (docs / "tables" / "domain_events.md").read_text()
    assert "### Intentionally missing foreign keys" in text and "polymorphic reference" in text


def test_docs_show_drift_then_the_keys_after_apply(database, spec, tmp_path):
    db = database.connect()
    docs = tmp_path / "docs"
    docs.mkdir()
    update_docs(db, spec, folder_layout(docs), write=True)
    page = docs / "tables" / "cross_tenant_access_grants_projection.md"
    assert page.read_text().count("**Drift:**") == 2
    apply_keys(db, spec, tmp_path)
    change = update_docs(db, spec, folder_layout(docs), write=True)
    assert set(change.files.loc[change.files["state"] == "changed", "file"]) == {
        "organization-fk-graph.md", "tables/organizations_projection.md", "tables/impersonation_sessions_projection.md",
        "tables/cross_tenant_access_grants_projection.md"}
    text = page.read_text()
    assert "**Drift:**" not in text
    assert "| provider_org_id | organizations_projection(id) | CASCADE |" in text
    parent = (docs / "tables" / "organizations_projection.md").read_text()
    assert "| impersonation_sessions_projection | target_org_id | CASCADE |" in parent


def test_docs_keep_hand_written_text_outside_the_markers(database, spec, tmp_path):
    db = database.connect()
    docs = tmp_path / "docs"
    page = docs / "tables" / "domain_events.md"
    page.parent.mkdir(parents=True)
    page.write_text("# Domain events\n\nHand-written intro.\n\n" + BEGIN + "\nstale\n" + END + "\n\n## Notes\n\nKeep me.\n")
    update_docs(db, spec, folder_layout(docs), write=True)
    text = page.read_text()
    assert text.startswith("# Domain events\n\nHand-written intro.\n\n" + BEGIN)
    assert text.endswith(END + "\n\n## Notes\n\nKeep me.\n") and "stale" not in text
    assert update_docs(db, spec, folder_layout(docs)).changed == 0


def test_docs_graph_methodology_procedures_and_agent_index(database, spec, tmp_path):
    docs = tmp_path / "team-docs"
    (docs / "procedures").mkdir(parents=True)
    (docs / "procedures" / "org-cleanup.md").write_text("# Org cleanup\n\nThe team's own steps.\n")
    (docs / "procedures" / "org-cleanup-dry-run.md").write_text("# Org cleanup, dry run\n")
    (docs / "AGENT-INDEX.md").write_text("# Index\n\n| Keyword | Document | Topics |\n|---|---|---|\n"
                                         "| `billing` | billing.md | money |\n| `domain_events` | old.md | stale |\n"
                                         "\nFooter kept.\n")
    db = database.connect()
    files = set(update_docs(db, spec, folder_layout(docs), write=True).files["file"])
    assert {"organization-fk-graph.md", "orphan-detection.md", "procedures/org-cleanup.md",
            "procedures/org-cleanup-dry-run.md", "AGENT-INDEX.md"} <= files
    graph = (docs / "organization-fk-graph.md").read_text()
    assert "```mermaid\nerDiagram" in graph and graph.count("planned, not in the database yet") == 3
    method = (docs / "orphan-detection.md").read_text()
    assert "NOT EXISTS" in method and "'organization'" in method and "event_data" in method
    confirmed = (docs / "procedures" / "org-cleanup.md").read_text()
    assert confirmed.startswith("# Org cleanup\n\nThe team's own steps.\n") and "--confirm" in confirmed
    dry_run = (docs / "procedures" / "org-cleanup-dry-run.md").read_text()
    assert "nothing changes" in dry_run and "--confirm" not in dry_run
    assert "[orphan-detection.md](../orphan-detection.md)" in confirmed
    index = (docs / "AGENT-INDEX.md").read_text()
    assert "| `billing` | billing.md | money |" in index and "old.md" not in index
    assert "| `domain_events` | tables/domain_events.md |" in index  # the index's own style: bare paths
    assert index.count("| `domain_events` |") == 1 and index.endswith("\nFooter kept.\n")
    assert update_docs(db, spec, folder_layout(docs), write=True).changed == 0
    apply_keys(db, spec, tmp_path)
    update_docs(db, spec, folder_layout(docs), write=True)
    graph = (docs / "organization-fk-graph.md").read_text()
    assert "planned" not in graph and graph.count("||--o{") == 3 and "ON DELETE CASCADE" in graph
    assert "`cross_tenant_access_grants_projection_provider_org_id_idx`" in \
        (docs / "tables" / "cross_tenant_access_grants_projection.md").read_text()


def test_docs_folder_that_does_not_exist_is_an_error(database, spec, tmp_path):
    from fkrunbook.errors import FkrunbookError

    with pytest.raises(FkrunbookError, match="docs folder .* does not exist"):
        update_docs(database.connect(), spec, folder_layout(tmp_path / "typo"), write=True)
    assert not (tmp_path / "typo").exists()


def test_docs_team_layout_updates_exactly_the_team_docs(database, spec, team, tmp_path):
    db = database.connect()
    apply_keys(db, spec, tmp_path)
    before = snapshot(team.root)
    change = update_docs(db, spec, team, write=True)
    after = snapshot(team.root)
    touched = {f for f in after if before.get(f) != after[f]}
    new = "documentation/infrastructure/reference/database/organization-keys"
    assert touched == {f"{TABLES}/{t}.md" for t in ("organizations_projection", "impersonation_sessions_projection",
                                                    "cross_tenant_access_grants_projection", "domain_events",
                                                    "unprocessed_events")} | {
        f"{new}/organization-fk-graph.md", f"{new}/orphan-detection.md", "documentation/AGENT-INDEX.md",
        ".claude/commands/org-cleanup.md", ".claude/commands/org-cleanup-dryrun.md"}
    assert set(before) - set(after) == set() and {f for f in after if f not in before} == {
        f"{new}/organization-fk-graph.md", f"{new}/orphan-detection.md"}
    assert set(change.files.loc[change.files["state"].isin(["new", "changed"]), "file"]) == touched
    assert not any("skills" in f for f in after)


def test_docs_team_layout_keeps_front_matter_and_appends_the_block(database, spec, team):
    page = team.table_doc("impersonation_sessions_projection")
    original = page.read_bytes()
    update_docs(database.connect(), spec, team, write=True)
    text = page.read_bytes()
    assert text.startswith(original + b"\n" + BEGIN.encode()) and text.endswith(END.encode() + b"\n")
    steps = (team.root / ".claude/commands/org-cleanup.md").read_text()
    assert steps.startswith(CLEANUP) and "--confirm" in steps
    assert "(../../documentation/infrastructure/reference/database/organization-keys/orphan-detection.md)" in steps
    dry_run = (team.root / ".claude/commands/org-cleanup-dryrun.md").read_text()
    assert "nothing changes" in dry_run and "--confirm" not in dry_run


def test_docs_team_layout_index_rows_are_relative_links_in_its_columns(database, spec, team):
    update_docs(database.connect(), spec, team, write=True)
    index = team.index.read_text()
    assert index.startswith(INDEX.split("\n\nSee also")[0]) and index.endswith("\n\nSee also the README.\n")
    ours = index.splitlines()[8:-2]  # after the team's two rows, before the text that follows the table
    assert [line.split("|")[1].strip() for line in ours] == [  # keywords plain, as the team writes them
        "impersonation_sessions_projection", "cross_tenant_access_grants_projection", "domain_events",
        "unprocessed_events", "orphan detection", "organization foreign keys"]
    for line in ours:
        assert line.count("|") == 5  # four columns, as the header has
        text, target = re.search(r"\[([^\]]+)\]\(([^)]+)\)", line).groups()
        assert (team.index.parent / target).is_file() and not target.startswith("/") and text == Path(target).name
    assert "(infrastructure/reference/database/tables/domain_events.md)" in index
    assert index.count("organizations_projection.md") == 2  # the team's own row, not a second one


def test_docs_stale_line_listed_after_apply_not_before(database, spec, team, tmp_path):
    db = database.connect()
    before = update_docs(db, spec, team, write=True)
    assert len(before.stale) == 0 and before.results()["stale_lines"] == 0
    apply_keys(db, spec, tmp_path)
    change = update_docs(db, spec, team, write=True)
    doc = f"{TABLES}/impersonation_sessions_projection.md"
    lines = (team.root / doc).read_text().splitlines()
    procedure = (team.root / ".claude/commands/org-cleanup.md").read_text().splitlines()
    assert set(zip(change.stale["file"], change.stale["line"])) == {
        (doc, lines.index(STALE) + 1), (".claude/commands/org-cleanup.md", procedure.index(CLEANUP.splitlines()[4]) + 1)}
    assert set(change.stale["column"]) == {"impersonation_sessions_projection.target_org_id"}
    assert change.results()["stale_lines"] == 2 and STALE in lines  # listed, not edited
    shown = change._repr_markdown_()
    assert "Stale text to review" in shown and f"| {doc} | {lines.index(STALE) + 1} |" in shown


def test_docs_missing_table_doc_outside_new_is_skipped(database, spec, team):
    change = update_docs(database.connect(), spec, team, write=True)
    row = change.files.set_index("file").loc[f"{TABLES}/workflow_queue_projection.md"]
    assert row["state"] == "skipped" and not row["written"] and "organization-keys/" in row["reason"]
    assert not team.table_doc("workflow_queue_projection").exists() and change.results()["skipped"] == 1
    assert team.table_doc("workflow_queue_projection") not in planned_docs(database.connect(), spec, team)


def test_docs_team_layout_second_run_changes_nothing(database, spec, team):
    db = database.connect()
    update_docs(db, spec, team, write=True)
    before = snapshot(team.root)
    again = update_docs(db, spec, team, write=True)
    assert again.changed == 0 and again.diff == "" and snapshot(team.root) == before


def test_docs_index_missing_outside_new_is_skipped(database, spec, team):
    team.index.unlink()
    change = update_docs(database.connect(), spec, team, write=True)
    states = dict(zip(change.files["file"], change.files["state"]))
    assert states["documentation/AGENT-INDEX.md"] == "skipped" and not team.index.exists()


def test_docs_no_procedure_matched_creates_nothing(database, spec, team):
    for path in team.procedure_files():
        path.unlink()
    before = snapshot(team.root)
    change = update_docs(database.connect(), spec, team, write=True)
    skipped = change.files[change.files["state"] == "skipped"]
    assert "**/org-cleanup*.md" in set(skipped["file"]) and change.results()["skipped"] == 2
    created = set(snapshot(team.root)) - set(before)
    assert created and all(f.startswith(team.rel(team.new) + "/") for f in created)


def test_docs_index_header_and_link_style_are_the_index_own(tmp_path):
    index = ("| Keyword | Doc | Topics | Since |\n|:--|:--|:--|:--|\n"
             "| `a` | `[`a.md`](./ref/a.md)` | x | 1 |\n")
    merged = merge_keyword_rows(index, [IndexEntry("b", tmp_path / "ref" / "b.md", "B", "y")], tmp_path)
    assert merged == index + "| `b` | `[`b.md`](./ref/b.md)` | y |  |\n"


def test_docs_merge_block_keeps_crlf_and_trailing_text():
    team = "---\r\ntitle: t\r\n---\r\n\r\nText"
    merged = merge_block(team, BEGIN + "\ngenerated\n" + END + "\n", "t")
    assert merged == team + "\r\n\r\n" + BEGIN + "\r\ngenerated\r\n" + END + "\r\n"
    assert merge_block(merged, BEGIN + "\ngenerated\n" + END + "\n", "t") == merged


def test_docs_stale_line_not_listed_while_the_key_is_not_validated(database, spec, team):
    database.sql("ALTER TABLE impersonation_sessions_projection ADD CONSTRAINT t FOREIGN KEY (target_org_id) "
                 "REFERENCES organizations_projection (id) NOT VALID")
    change = update_docs(database.connect(), spec, team)
    assert "| target_org_id | organizations_projection(id) | NO ACTION | t | NO |" in change.diff  # in, not validated
    assert len(change.stale) == 0


def test_docs_stale_text_follows_the_list_item_and_heading_that_name_the_column():
    from fkrunbook.docs import stale_lines

    columns = {"consultant_org_id": ["cross_tenant_access_grants_projection"],
               "provider_org_id": ["cross_tenant_access_grants_projection"]}
    doc = ("## Relationships\n\n- **organizations_projection** → `consultant_org_id`\n"
           "  - Implicit foreign key (not enforced)\n- **users** → `consultant_user_id`\n"
           "  - Implicit foreign key (not enforced)\n\n#### provider_org_id\n\n"
           "- **Foreign Key**: References `organizations_projection(id)`, no foreign key in the database\n"
           "\n## Other\n\nNothing here is implicit foreign key about any column.\n")
    found = stale_lines(doc, columns)
    assert [(n, c) for n, c, _ in found] == [(4, "cross_tenant_access_grants_projection.consultant_org_id"),
                                              (10, "cross_tenant_access_grants_projection.provider_org_id")]


def test_docs_of_a_parent_in_another_schema(database, tmp_path):
    database.sql(CROSS_SCHEMA)
    database.sql("DELETE FROM public.projects WHERE name LIKE 'orphan%'")
    database.sql("CREATE TABLE basejump.account_user (account_id uuid REFERENCES basejump.accounts ON DELETE CASCADE)")
    spec = cross_schema_spec()
    docs = tmp_path / "docs"
    docs.mkdir()
    update_docs(database.connect(), spec, folder_layout(docs), write=True)
    graph = (docs / "organization-fk-graph.md").read_text()
    assert 'accounts ||..o{ projects : "account_id planned, not in the database yet"' in graph
    database.sql("ALTER TABLE public.projects ADD CONSTRAINT projects_account_id_fkey FOREIGN KEY (account_id) "
                 "REFERENCES basejump.accounts (id) ON DELETE CASCADE")
    change = update_docs(database.connect(), spec, folder_layout(docs), write=True)
    assert change.skipped == 1  # only the clean-up procedures: there are none here
    parent = (docs / "tables" / "accounts.md").read_text()
    assert "_Table `basejump.accounts`._" in parent
    assert "| basejump.account_user | account_id | CASCADE |" in parent
    assert "| projects | account_id | CASCADE | projects_account_id_fkey | yes |" in parent
    child = (docs / "tables" / "projects.md").read_text()
    assert "| account_id | basejump.accounts(id) | CASCADE | projects_account_id_fkey | yes |" in child
    assert "Foreign key to basejump.accounts.id (oversight)" in child
    graph = (docs / "organization-fk-graph.md").read_text()
    assert 'accounts ||--o{ projects : "account_id ON DELETE CASCADE"' in graph
    assert 'accounts ||--o{ account_user : "account_id ON DELETE CASCADE"' in graph
    assert '"basejump"."accounts" p WHERE p."id" = c."account_id"' in (docs / "orphan-detection.md").read_text()


def test_docs_methodology_uses_the_discriminator_values_and_payload_keys_found(database, spec, tmp_path):
    from .test_polymorphic import _plant_second_key, _with_keys

    docs = tmp_path / "team-docs"
    (docs / "procedures").mkdir(parents=True)
    (docs / "procedures" / "org-cleanup.md").write_text("# Org cleanup\n")
    db = database.connect()
    update_docs(db, spec, folder_layout(docs), write=True)
    method = (docs / "orphan-detection.md").read_text()
    assert "Values of `stream_type` in the database when this was generated: `organization`, `user`." in method
    assert "**Warning:**" not in method
    database.sql("UPDATE workflow_queue_projection SET stream_type = 'workflow_queue'")  # a real team's triggers
    _plant_second_key(database)
    update_docs(db, spec, folder_layout(docs), write=True)
    method = (docs / "orphan-detection.md").read_text()
    queue = method[method.index("`workflow_queue_projection.stream_id`"):method.index("`unprocessed_events")]
    assert "Values of `stream_type` in the database when this was generated: `workflow_queue`." in queue
    assert ("**Warning:** `stream_type = 'organization'` matches no row of `workflow_queue_projection`, so this query "
            "finds no orphan there whatever the data; the spec's filter may be wrong") in queue
    assert ("**Warning:** a sample of `domain_events.event_data` also found organization ids under "
            "`domain_events.event_data->>'org_id'`, `domain_events.event_data #>> '{tenant,id}'`, which the spec's "
            "payload keys do not list") in method
    steps = (docs / "procedures" / "org-cleanup.md").read_text()
    assert ("`workflow_queue_projection.stream_id` with `stream_type = 'organization'`: **this filter matches no row "
            "here** (values found: `workflow_queue`)") in steps
    assert "not checked: `domain_events.event_data->>'org_id'` also holds organization ids" in steps
    assert update_docs(db, spec, folder_layout(docs), write=True).changed == 0  # values, not counts: stable
    both = _with_keys(spec, "organization_id", "org_id", "tenant.id")
    update_docs(db, both, folder_layout(docs), write=True)
    method = (docs / "orphan-detection.md").read_text()
    for key, ref in (("org_id", "->> 'org_id'"), ("tenant.id", "#>> '{tenant,id}'")):
        assert f'(e."event_data" {ref}) ~ ' in method, key  # each listed key has its query
    assert "also found organization ids" not in method
    steps = (docs / "procedures" / "org-cleanup.md").read_text()
    assert "`domain_events.event_data->>'org_id'`" in steps and "not checked" not in steps
