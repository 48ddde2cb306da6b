"""The HTML reports and audit/index.html, opened in a real browser (headless Chromium) with the
network cut off: they ask nothing of it, each report opens with its run header, and the index
names every run. Screenshots go to the test's folder (printed; ``pytest -s`` shows the paths)."""
import getpass
import importlib.util
import os
import re
import secrets
import shutil
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from fkrunbook.config import load_config
from fkrunbook.evidence import load_runs, open_run_folder, write_index, write_manifest
from fkrunbook.runbook import run_phases

from .conftest import project_config, write_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine: install Debian's chromium "
                                                          "(.ci/run does)")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@contextmanager
def offline_browser(viewport=(1280, 900)):
    """A headless Chromium context that may load file: URLs only; yields (context, requests seen)."""
    from playwright.sync_api import sync_playwright

    requests = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": viewport[0], "height": viewport[1]})
            context.on("request", lambda request: requests.append(request.url))
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                          else route.abort())
            yield context, requests
        finally:
            browser.close()


def test_report_renders_the_phase_results_offline_with_no_external_request(project_copy, database, sample):
    result = run_phases(project_config(project_copy, database.environments), "test",
                        ["orphan_check", "migration_preview"])
    for report, expected in (("01_orphan_check.html", ["orphan rows", "impersonation_sessions_projection.target_org_id",
                                                       str(sample.orphans["impersonation_sessions_projection.target_org_id"])]),
                             ("03_migration_preview.html", ["blocks writes", "VALIDATE CONSTRAINT",
                                                            result.manifest["plan_hash"]])):
        url = (result.run_dir / report).as_uri()
        with offline_browser() as (context, requests):
            page = context.new_page()
            page.goto(url, wait_until="load")
            tables = page.locator("table.dataframe").count()
            text = page.inner_text("body")
        assert requests == [url], f"{report} asked for: {[r for r in requests if r != url]}"
        assert tables >= 2, report
        for needle in expected:
            assert needle in text, (report, needle)


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_report_headers_and_the_index_name_every_run_in_chromium(project_copy, database, sample, tmp_path):
    """Four runs in the test environment's evidence: a CLI run on a clean commit (#1), a notebook
    run as JupyterLab runs it after fkrunbook.toml was edited (#2, dirty), a CLI run of the
    orphan check and the preview (#3, dirty), and a run killed before sealing (incomplete)."""
    from .test_walkthrough import execute

    from fkrunbook.lab import prepare_walkthrough

    shots = tmp_path / "screenshots"
    shots.mkdir()
    _git(project_copy, "init", "-q")
    _git(project_copy, "add", ".")
    _git(project_copy, "commit", "-q", "-m", "the runbook")
    commit = _git(project_copy, "rev-parse", "HEAD")
    first = run_phases(project_config(project_copy, database.environments), "test", ["orphan_check"])
    write_config(project_config(project_copy, database.environments), project_copy)  # a tracked file edited
    config = load_config(project_copy / "fkrunbook.toml")
    walkthrough = prepare_walkthrough(config, "test")
    execute(walkthrough.folder / "01_orphan_check.ipynb")
    third = run_phases(config, "test", ["orphan_check", "migration_preview"])
    killed = config.evidence / "test" / "20261130T000000Z-killed"  # what a run killed before sealing leaves
    open_run_folder(killed)
    write_manifest(killed, {"run_id": killed.name, "environment": "test", "status": "running", "mode": "runner",
                            "started_at": "2026-11-30T00:00:00+00:00", "ended_at": None, "operator": "someone",
                            "phases": [{"name": "apply", "status": "running", "notebook": "04_apply.ipynb"}]})
    index = write_index(config.evidence)
    runs = {r.run_id: r for r in load_runs(config.evidence)}
    walked = runs[walkthrough.run_id]
    assert [runs[first.run_id].sequence, walked.sequence, runs[third.run_id].sequence] == [1, 2, 3]
    assert runs[killed.name].status == "incomplete"

    with offline_browser() as (context, requests):
        page = context.new_page()
        # the preview's report: its header, at the top of the page, says what an auditor asks first
        page.goto((third.run_dir / "03_migration_preview.html").as_uri(), wait_until="load")
        title = page.title()
        header = page.locator("#run-header")
        text = header.inner_text()
        first_box = page.locator(".jp-Cell").first.bounding_box()
        header_box = header.bounding_box()
        header.screenshot(path=str(shots / "report-header-03_migration_preview.png"))
        page.screenshot(path=str(shots / "report-03_migration_preview.png"))
        assert title == f"migration_preview on test, run {third.run_id} (succeeded) · fkrunbook report"
        assert header_box["y"] < 40 and header_box["y"] + header_box["height"] <= first_box["y"]
        assert header_box["y"] + header_box["height"] < 900  # whole, without scrolling
        preview = third.manifest["phases"][1]
        for needle in ["migration_preview on test", "SUCCEEDED", f"run {third.run_id}", "Environment\ntest",
                       "phase 2 of 2 in this run", "cli (fkrunbook run)", getpass.getuser(),
                       _shown(preview["started_at"]), _shown(preview["ended_at"]), " UTC",
                       commit, "dirty: tracked files had uncommitted changes",
                       third.manifest["spec"]["sha256"], third.manifest["plan_hash"], "#3 in test's chain",
                       walked.manifest_sha256, f"previous: run {walkthrough.run_id} (#2)",
                       f"fkrunbook archive show {third.run_id}"]:
            assert needle in text, needle
        # the first run's orphan check: first in the chain, clean tree, no plan
        page.goto((first.run_dir / "01_orphan_check.html").as_uri(), wait_until="load")
        text = page.locator("#run-header").inner_text()
        assert page.title() == f"orphan_check on test, run {first.run_id} (succeeded) · fkrunbook report"
        for needle in ["#1 in test's chain", "the first run of the chain", "clean tree", commit,
                       "no plan was made in this run"]:
            assert needle in text, needle
        # the notebook run as JupyterLab runs it
        page.goto((walked.path / "01_orphan_check.html").as_uri(), wait_until="load")
        text = page.locator("#run-header").inner_text()
        for needle in [f"interactive (JupyterLab, walkthrough {walkthrough.run_id})", "#2 in test's chain",
                       runs[first.run_id].manifest_sha256, "dirty"]:
            assert needle in text, needle

        # the index: every run, with its fields and links that lead to its manifest and reports
        page.goto(index.as_uri(), wait_until="load")
        page.screenshot(path=str(shots / "audit-index.png"), full_page=True)
        assert page.title() == "fkrunbook audit evidence: 4 run(s) in 1 environment(s)"
        assert "3 sealed run(s) in the chain; head #3" in page.inner_text("#env-test h2")
        for run in runs.values():
            row = page.locator(f"[id='run-{run.run_id}']")
            text = row.inner_text() + "\n" + row.locator("xpath=following-sibling::tr[1]").inner_text()
            for needle in [run.run_id, run.status, {"runner": "cli", "interactive": "interactive"}[run.mode],
                           run.manifest_sha256, _shown(run.manifest["started_at"])]:
                assert needle in text, (run.run_id, needle)
            if run.sealed:
                for needle in [f"#{run.sequence}", _shown(run.manifest["ended_at"]), commit[:12],
                               run.manifest["spec"]["sha256"], run.manifest.get("plan_hash") or "plan none"]:
                    assert needle in text, (run.run_id, needle)
                assert ("dirty" in text) == (run.sequence > 1) and ("clean" in text) == (run.sequence == 1)
            else:
                assert "not sealed" in text and "(no report: incomplete)" in text
            hrefs = row.locator("a").evaluate_all("links => links.map(a => a.href)")
            assert hrefs[0].endswith(f"{run.run_id}/manifest.json")
            assert [Path(h).name for h in hrefs[1:]] == run.manifest.get("reports", [])
            for href in hrefs:
                assert Path(href.removeprefix("file://")).is_file(), href
        assert "previous:\n" + walkthrough.run_id in page.locator(f"[id='run-{third.run_id}']").inner_text()
    assert all(r.startswith("file:") for r in requests), [r for r in requests if not r.startswith("file:")]
    print(f"screenshots: {shots}")
    assert sorted(p.name for p in shots.glob("*.png")) == ["audit-index.png", "report-03_migration_preview.png",
                                                           "report-header-03_migration_preview.png"]


def _shown(stamp: str) -> str:
    """A manifest time as the header and the index show it."""
    return stamp.replace("T", " ").removesuffix("+00:00") + " UTC"


@pytest.mark.skipif(importlib.util.find_spec("jupyterlab") is None,
                    reason="JupyterLab is not installed: pip install -e '.[lab]' (make lab does)")
def test_two_notebooks_run_all_in_jupyterlab_in_chromium(project_copy, database, sample, tmp_path):
    """`fkrunbook lab` on the test environment, and in Chromium two notebooks opened and run with
    Run All from JupyterLab's menu, as an engineer does: screenshots of each (its top, and its end
    with the verdict), and both phases are sealed into the walkthrough's run."""
    from playwright.sync_api import sync_playwright

    from fkrunbook.lab import wait_for_lab

    from .test_cli import FKRUNBOOK
    from .test_lab import _free_port

    shots = tmp_path / "screenshots"
    shots.mkdir()
    write_config(project_config(project_copy, database.environments), project_copy)
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["FKRUNBOOK_LAB_TOKEN"] = token
    # JupyterLab's settings kept in the test's folder, not the user's (fkrunbook lab keeps the workspace its own)
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    with open(tmp_path / "lab.log", "wb") as out:
        lab = subprocess.Popen([FKRUNBOOK, "lab", "--env", "test", "--port", str(port)], cwd=project_copy, env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    local = f"http://127.0.0.1:{port}/"
    try:
        wait_for_lab(port, token, timeout=120)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local)
                          else route.abort())  # JupyterLab itself, nothing from elsewhere
            for name in ("01_orphan_check", "03_migration_preview"):
                page = context.new_page()
                try:  # ?reset: a fresh workspace, with only this notebook open
                    page.goto(f"{local}lab/tree/{name}.ipynb?reset&token={token}", wait_until="load")
                    idle = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
                    idle.wait_for(timeout=120_000)  # the notebook is open and its kernel ready
                    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^Run$")).click()
                    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
                    page.get_by_text("its evidence is sealed").first.wait_for(state="attached", timeout=180_000)
                    idle.wait_for(timeout=60_000)
                    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^View$")).click()
                    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^File Browser$")).click()  # room
                    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell")
                    cells.first.scroll_into_view_if_needed()
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(shots / f"lab-{name}-top.png"))
                    cells.last.scroll_into_view_if_needed()
                    page.wait_for_timeout(1000)  # cells scrolled into view are drawn
                    page.screenshot(path=str(shots / f"lab-{name}-end.png"))
                except Exception:
                    page.screenshot(path=str(tmp_path / f"failed-{name}.png"))
                    raise
                page.close()
            browser.close()
    finally:
        lab.send_signal(signal.SIGINT)  # Ctrl-C
        lab.wait(60)
    (run,) = load_runs(project_copy / "audit", "test")
    assert run.mode == "interactive" and [p["name"] for p in run.manifest["phases"]] == ["orphan_check",
                                                                                          "migration_preview"]
    assert run.status == "succeeded" and run.manifest["reports"] == ["01_orphan_check.html",
                                                                     "03_migration_preview.html"]
    print(f"screenshots: {shots}")
    assert len(list(shots.glob("lab-*.png"))) == 4
