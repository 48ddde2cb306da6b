"""The HTML reports open complete in a real browser with the network cut off, and ask nothing of it."""
import shutil

import pytest

from fkrunbook.runbook import run_phases

from .conftest import project_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: install Debian's chromium "
                                                          "(.ci/run does)")


def test_report_renders_the_phase_results_offline_with_no_external_request(project_copy, database, sample):
    from playwright.sync_api import sync_playwright

    result = run_phases(project_config(project_copy, database.environments), "test",
                        ["orphan_check", "migration_preview"])
    for report, expected in (("01_orphan_check.html", ["orphan rows", "impersonation_sessions_projection.target_org_id",
                                                       str(sample.orphans["impersonation_sessions_projection.target_org_id"])]),
                             ("03_migration_preview.html", ["blocks writes", "VALIDATE CONSTRAINT",
                                                            result.manifest["plan_hash"]])):
        url = (result.run_dir / report).as_uri()
        requests = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            context = browser.new_context(offline=True)
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                          else route.abort())
            page.goto(url, wait_until="load")
            tables = page.locator("table.dataframe").count()
            text = page.inner_text("body")
            browser.close()
        assert requests == [url], f"{report} asked for: {[r for r in requests if r != url]}"
        assert tables >= 2, report
        for needle in expected:
            assert needle in text, (report, needle)
