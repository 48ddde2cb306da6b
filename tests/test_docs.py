import pytest

from fkrunbook.docs import BEGIN, END, update_docs
from fkrunbook.executor import apply_plan
from fkrunbook.orphans import clean_up_orphans

from .test_migration import MIGRATIONS


def test_docs_diff_by_default_writes_nothing(database, spec, tmp_path):
    docs = tmp_path / "docs"
    change = update_docs(database.connect(), spec, docs)
    assert change.changed == 11 and not change.files["written"].any()
    assert "+++ b/tables/impersonation_sessions_projection.md" in change.diff
    assert not docs.exists()


def test_docs_write_then_second_run_changes_nothing(database, spec, tmp_path):
    db = database.connect()
    docs = tmp_path / "docs"
    docs.mkdir()
    update_docs(db, spec, docs, write=True)
    again = update_docs(db, spec, docs, write=True)
    assert again.changed == 0 and again.diff == "" and not again.files["written"].any()
    text = (docs / "tables" / "domain_events.md").read_text()
    assert "### Intentionally missing foreign keys" in text and "polymorphic reference" in text


def test_docs_show_drift_then_the_keys_after_apply(database, spec, tmp_path):
    db = database.connect()
    docs = tmp_path / "docs"
    docs.mkdir()
    update_docs(db, spec, docs, write=True)
    page = docs / "tables" / "cross_tenant_access_grants_projection.md"
    assert page.read_text().count("**Drift:**") == 2
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    change = update_docs(db, spec, docs, write=True)
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
    update_docs(db, spec, docs, write=True)
    text = page.read_text()
    assert text.startswith("# Domain events\n\nHand-written intro.\n\n" + BEGIN)
    assert text.endswith(END + "\n\n## Notes\n\nKeep me.\n") and "stale" not in text
    assert update_docs(db, spec, docs).changed == 0


def test_docs_graph_methodology_procedures_and_agent_index(database, spec, tmp_path):
    docs = tmp_path / "team-docs"
    (docs / "skills" / "org-cleanup").mkdir(parents=True)
    (docs / "skills" / "org-cleanup" / "SKILL.md").write_text("# Org cleanup\n\nThe team's own steps.\n")
    (docs / "AGENT-INDEX.md").write_text("# Index\n\n| Keyword | Document | Topics |\n|---|---|---|\n"
                                         "| `billing` | billing.md | money |\n| `domain_events` | old.md | stale |\n"
                                         "\nFooter kept.\n")
    db = database.connect()
    files = set(update_docs(db, spec, docs, write=True).files["file"])
    assert {"organization-fk-graph.md", "orphan-detection.md", "skills/org-cleanup/SKILL.md",
            "skills/org-cleanup-dryrun.md", "AGENT-INDEX.md"} <= files
    graph = (docs / "organization-fk-graph.md").read_text()
    assert "```mermaid\nerDiagram" in graph and graph.count("planned, not in the database yet") == 3
    method = (docs / "orphan-detection.md").read_text()
    assert "NOT EXISTS" in method and "'organization'" in method and "event_data" in method
    skill = (docs / "skills" / "org-cleanup" / "SKILL.md").read_text()
    assert skill.startswith("# Org cleanup\n\nThe team's own steps.\n") and "--confirm" in skill
    assert "nothing changes" in (docs / "skills" / "org-cleanup-dryrun.md").read_text()
    index = (docs / "AGENT-INDEX.md").read_text()
    assert "| `billing` | billing.md | money |" in index and "old.md" not in index
    assert index.count("| `domain_events` |") == 1 and index.endswith("\nFooter kept.\n")
    assert update_docs(db, spec, docs, write=True).changed == 0
    clean_up_orphans(db, spec, tmp_path, "clean", confirm=True)
    apply_plan(db, spec, MIGRATIONS, {})
    update_docs(db, spec, docs, write=True)
    graph = (docs / "organization-fk-graph.md").read_text()
    assert "planned" not in graph and graph.count("||--o{") == 3 and "ON DELETE CASCADE" in graph
    assert "`cross_tenant_access_grants_projection_provider_org_id_idx`" in \
        (docs / "tables" / "cross_tenant_access_grants_projection.md").read_text()


def test_docs_folder_that_does_not_exist_is_an_error(database, spec, tmp_path):
    from fkrunbook.errors import FkrunbookError

    with pytest.raises(FkrunbookError, match="docs folder .* does not exist"):
        update_docs(database.connect(), spec, tmp_path / "typo", write=True)
    assert not (tmp_path / "typo").exists()
