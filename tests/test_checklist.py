from fkrunbook.audit import FIX

from .conftest import PROJECT


def test_the_checklist_links_every_audit_finding():
    text = (PROJECT / "docs" / "schema-review-checklist.md").read_text()
    for finding in FIX:
        assert f"**`{finding}`**" in text, finding
