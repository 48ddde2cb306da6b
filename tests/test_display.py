"""What a person sees in a notebook (fkrunbook.display): tables with whole statements, every row up
to a stated limit with the total, one column order per kind of table, human labels; the verdict
line; one-line refusals in notebook terms with the traceback folded; the pictures.

Against a real PostgreSQL, and through real notebook runs: each of the six notebooks driven as
JupyterLab drives it (nbclient, no papermill), first with its default parameters, then with one
parameter edited, each run's evidence checked (its sealed run folder, manifest, executed notebook
and report, the verdict line the notebook ends with)."""
import html
import json
import re

import nbclient
import nbformat
import pytest

from fkrunbook import display, migration, orphans, plan
from fkrunbook.config import load_config
from fkrunbook.database import connect
from fkrunbook.display import BLANK, in_notebook_terms, refusal_line, table, verdict
from fkrunbook.environment import get_environment
from fkrunbook.errors import OrphansPresentError, PlanChangedError, ProtectedEnvironmentError
from fkrunbook.evidence import load_runs, verify_archive
from fkrunbook.lab import prepare_walkthrough
from fkrunbook.phase import PHASES
from fkrunbook.sample import reset_local
from fkrunbook.server import stop_server

from .conftest import copy_project, project_config
from .test_walkthrough import edit, execute


# -- tables, against the test database -------------------------------------------------------------
def test_a_table_shows_every_row_up_to_its_limit_and_says_the_total(database):
    frame = database.connect().query("SELECT g AS n, repeat('x', g % 7) AS text FROM generate_series(1, 203) g")
    shown = table(frame)
    assert shown.caption == "showing 200 of 203 rows"
    assert shown._repr_html_().count("<tr>") == 1 + 200  # the heading row, then 200
    assert table(frame.head(3)).caption == "3 rows" and table(frame.head(1), "one").caption == "one: 1 row"
    assert table(frame.head(0), empty="nothing here")._repr_html_().endswith("<p><i>nothing here</i></p>")


def test_whole_statements_wrapped_the_deciding_columns_first(database, project_copy, spec):
    config = project_config(project_copy, database.environments)
    db = database.connect()
    migration.ensure_migrations(spec, config.migrations, db)
    statements = plan.plan_migration(db, spec, config.migrations).statements
    shown = table(statements)
    assert shown.columns[:5] == ["order", "action", "blocks_writes", "statement", "locks"]
    page = shown._repr_html_()
    for statement in statements["statement"]:
        assert len(statement) > 90 and f">{_escaped(statement)}</div></td>" in page  # whole, never cut at 50 or 90
    assert "white-space:pre-wrap" in page and "font-family:monospace" in page
    assert "..." not in page


def _escaped(text):
    return html.escape(text)


def test_labels_on_delete_by_name_booleans_and_one_blank(database, spec):
    frame = database.connect().query(
        "SELECT v.code AS on_delete, v.code = 'c' AS cascades, NULL::int AS missing, ''::text AS empty "
        "FROM (VALUES ('a'), ('r'), ('c'), ('n'), ('d')) v(code)")
    shown = table(frame)
    assert [row[0] for row in shown.rows()] == ["NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT"]
    assert [row[1] for row in shown.rows()] == ["no", "no", "yes", "no", "no"]
    assert {row[2] for row in shown.rows()} == {row[3] for row in shown.rows()} == {BLANK}
    report = orphans.find_orphans(database.connect(), spec)
    page = table(report.summary)._repr_html_()  # orphan_streams is <NA> on the foreign-key rows
    assert not re.search(r">(NaN|None|NaT|&lt;NA&gt;)<", page) and f">{BLANK}<" in page
    assert table(report.summary).columns[:3] == ["orphan_rows", "orphan_streams", "column"]


def test_a_clean_up_dry_run_shows_every_row_with_its_total_and_no_nan(database, project_copy, sample, spec):
    cleanup = orphans.clean_up_orphans(database.connect(), spec, project_copy, "dry")
    shown = display.tables(cleanup.rows)
    assert [t.caption for t in shown.tables] == [f"{label}: {n} rows" for label, n in sample.orphans.items()]
    page = shown._repr_html_()
    assert not re.search(r">(NaN|None|NaT|nan|&lt;NA&gt;)<", page)
    assert sum(t.total for t in shown.tables) == cleanup.total and sum(t.shown for t in shown.tables) == cleanup.total


def test_orphan_samples_say_of_how_many(database, spec, sample):
    report = orphans.find_orphans(database.connect(), spec, 2)
    shown = display.orphan_samples(report)
    captions = {t.title: t.caption for t in shown.tables}
    for column, count in sample.orphans.items():
        assert captions[column] == f"{column}: showing 2 of {count:,} rows"
    assert all(t.shown == 2 for t in shown.tables if t.title in sample.orphans)


def test_the_orphan_chart_is_an_inline_svg_with_a_bar_per_column(database, spec):
    report = orphans.find_orphans(database.connect(), spec)
    svg = display.orphan_chart(report.summary)._repr_svg_()
    assert svg.startswith("<svg xmlns=") and "<script" not in svg and "href" not in svg
    for column, count in zip(report.summary["column"], report.summary["orphan_rows"]):
        shown = _escaped(column)  # payload labels hold "->"
        assert f"<title>{shown}: {count:,}" in svg if count else f">{shown}</text>" in svg
    assert svg == display.orphan_chart(report.summary)._repr_svg_()  # the same picture for the same results


# -- refusals: one line in notebook terms ----------------------------------------------------------
def test_refusals_say_what_to_do_in_notebook_terms():
    orphaned = refusal_line(OrphansPresentError({"a.org_id": 3}))
    assert orphaned == ("OrphansPresentError: orphan rows would violate the new foreign keys (a.org_id: 3); "
                        "run 01_orphan_check and 02_orphan_cleanup first")
    protected = refusal_line(ProtectedEnvironmentError("production", "apply", phase="migration_preview",
                                                       current_hash="ab" * 32))
    assert protected.endswith('apply needs approve = "PLAN_HASH"; review the plan with 03_migration_preview '
                              '(env = "production") and pass the plan hash it shows')
    changed = PlanChangedError("the apply plan changed since it was previewed (hash 1, previewed 2); "
                               "run migration_preview again and review it")
    assert in_notebook_terms(str(changed)).endswith("run 03_migration_preview again and review it")
    assert in_notebook_terms("the apply plan changed; re-run apply once that session ends") == \
        "the apply plan changed; run 04_apply again once that session ends"
    assert in_notebook_terms("then add --confirm (or --write-docs)") == "then add confirm = True (or write = True)"


# -- the six notebooks, run as JupyterLab runs them ------------------------------------------------
def _newest(project):
    return max(load_runs(project / "audit", "local"), key=lambda r: r.sequence)


@pytest.fixture(scope="module")
def notebooks(tmp_path_factory):
    """A fresh local database with planted orphans; each notebook run with its default parameters,
    then again with one edited, in the walkthrough's order. Per run: the executed notebook (as the
    engineer sees it), the run folder it was sealed into and its manifest entry."""
    project = copy_project(tmp_path_factory.mktemp("views") / "project")
    config = load_config(project / "fkrunbook.toml")
    local = get_environment("local", config.environments)
    seen = {}
    try:
        planted = sum(reset_local(local, rows=300).orphans.values())
        slug = connect(local).query("SELECT slug FROM organizations_projection ORDER BY slug LIMIT 1")["slug"][0]
        walkthrough = prepare_walkthrough(config, "local")
        edits = {"orphan_check": {"sample_size": 2}, "orphan_cleanup": {"confirm": True},
                 "migration_preview": {"run_id": "edited-preview"}, "apply": {"approve": "stale"},
                 "cascade_validation": {"blast_org": slug}, "docs_update": {"write": True}}
        for phase in PHASES.values():
            path = walkthrough.folder / phase.notebook
            for how in ("default", "edited"):
                if how == "edited":
                    values = edits[phase.name]
                    if phase.name == "apply":  # the hash the preview showed before the apply: stale now
                        values = {"approve": seen["migration_preview", "default"][2]["results"]["plan_hash"]}
                    edit(path, **values)
                try:
                    book = execute(path)
                except nbclient.exceptions.CellExecutionError as err:
                    book = err.book
                run = _newest(project)
                seen[phase.name, how] = (book, run, run.manifest["phases"][-1])
        seen["planted"] = planted
        yield project, walkthrough, seen, tmp_path_factory.getbasetemp()
    finally:
        stop_server(local.data_dir)


def _outputs(book):
    return [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _last_shown(book):
    """What the last executed cell shows: its verdict line's text."""
    executed = [c for c in book.cells if c.cell_type == "code" and c.get("execution_count")]
    return "\n".join(o.get("data", {}).get("text/plain", "") for o in executed[-1].outputs)


VERDICTS = {  # {n}: the orphan rows planted in the foreign-key columns
    ("orphan_check", "default"): "NO-GO: {n} orphan rows in",
    ("orphan_check", "edited"): "NO-GO: {n} orphan rows in",
    ("orphan_cleanup", "default"): "NO-GO: {n} orphan rows would be cleaned up (dry run, nothing changed)",
    ("orphan_cleanup", "edited"): "DONE: {n} orphan rows cleaned up",
    ("migration_preview", "default"): "GO: 8 statements to run",
    ("migration_preview", "edited"): "GO: 8 statements to run",
    ("apply", "default"): "DONE: 8 statements applied (0 lock retries); 3 keys verified",
    ("cascade_validation", "default"): "GO: every foreign key did its ON DELETE action (3 of 3)",
    ("cascade_validation", "edited"): "GO: every foreign key did its ON DELETE action (3 of 3)",
    ("docs_update", "default"): "GO: ",
    ("docs_update", "edited"): "DONE: ",
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_each_notebook_default_then_edited_leaves_sealed_evidence_ending_with_its_verdict(notebooks, phase):
    project, walkthrough, seen, _ = notebooks
    for how in ("default", "edited"):
        book, run, entry = seen[phase, how]
        assert run.sealed and entry["name"] == phase and entry["mode"] == "interactive", (phase, how)
        assert run.manifest["walkthrough"] == walkthrough.run_id or run.run_id == "edited-preview"
        executed = nbformat.read(run.path / PHASES[phase].notebook, as_version=4)
        report = (run.path / PHASES[phase].notebook).with_suffix(".html").read_text()
        if (phase, how) == ("apply", "edited"):
            continue  # a refusal: see test_a_refusal_is_one_line_in_notebook_terms_with_the_traceback_folded
        assert entry["status"] == "succeeded", (phase, how, entry.get("error"))
        shown = _last_shown(book)
        assert shown.splitlines()[0].startswith(VERDICTS[phase, how].format(n=seen["planted"])), (phase, how, shown)
        assert "evidence is sealed" in shown
        line = verdict(phase, entry["results"])
        assert shown.splitlines()[0] == line.line and line.outcome in ("GO", "NO-GO", "DONE")
        assert executed.cells[-1].source == "ctx.finish()"
        assert line.line in _last_shown(executed)  # the evidence notebook ends with it too
        assert f'<span style="color:{display.COLOURS[line.outcome]}">{line.outcome}</span>' in report
        assert not [o for o in _outputs(book) if o.output_type == "stream" and o.name == "stderr"], (phase, how)
    assert verify_archive(project / "audit")[0] == []


def test_the_edited_parameter_took_effect(notebooks):
    project, walkthrough, seen, _ = notebooks
    assert seen["orphan_check", "edited"][2]["parameters"]["sample_size"] == 2
    for how, size in (("default", 5), ("edited", 2)):  # the samples say of how many
        book, run, entry = seen["orphan_check", how]
        column, count = next(iter(entry["results"]["orphans"].items()))
        assert f"{column}: showing {size} of {count:,} rows" in json.dumps([o for o in _outputs(book)])
    assert seen["orphan_cleanup", "edited"][2]["results"]["confirmed"] is True
    assert seen["migration_preview", "edited"][1].run_id == "edited-preview"
    assert seen["cascade_validation", "edited"][2]["parameters"]["blast_org"]
    assert seen["docs_update", "edited"][2]["results"]["written"] is True


def test_a_refusal_is_one_line_in_notebook_terms_with_the_traceback_folded(notebooks):
    project, walkthrough, seen, _ = notebooks
    book, run, entry = seen["apply", "edited"]
    assert entry["status"] == "failed" and entry["error"].startswith("PlanChangedError: the apply plan changed")
    (error,) = [o for o in _outputs(book) if o.output_type == "error"]
    assert error.ename == "PlanChangedError" and len(error.traceback) == 1
    assert error.traceback[0].startswith("PlanChangedError: the apply plan changed since it was previewed")
    assert error.traceback[0].endswith("run 03_migration_preview again and review it")
    cell = next(c for c in book.cells if c.cell_type == "code" and error in c.outputs)
    folded = cell.outputs[cell.outputs.index(error) - 1]
    assert folded.data["text/html"].startswith("<details") and "Traceback (most recent call last)" in \
        folded.data["text/html"] and "guard.py" in folded.data["text/html"]
    executed = nbformat.read(run.path / "04_apply.ipynb", as_version=4)  # the evidence holds the same
    (kept,) = [o for o in _outputs(executed) if o.output_type == "error"]
    assert kept.traceback == error.traceback
    report = (run.path / "04_apply.html").read_text()
    assert "<details" in report and "run 03_migration_preview again" in report


def _ran(book):
    """The statements the apply ran, from its steps table as the notebook shows it."""
    cell = next(c for c in book.cells if c.cell_type == "code" and c.source == "table(applied.steps)")
    page = cell.outputs[0].data["text/html"]
    rows = re.findall(r"<tr>(.*?)</tr>", page)[1:]
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]
    return [html.unescape(c[4]) for c in cells if c[1] == "run"]  # order, action, attempts, seconds, statement


def test_apply_shows_its_log_as_output_and_draws_its_timeline(notebooks):
    project, walkthrough, seen, _ = notebooks
    book, run, entry = seen["apply", "default"]
    logs = "".join(o.text for o in _outputs(book) if o.output_type == "stream")
    assert "plan hash" in logs and "recorded" in logs
    (svg,) = [o.data["image/svg+xml"] for o in _outputs(book) if "image/svg+xml" in o.get("data", {})]
    kinds = [display.step_kind(s) for s in _ran(book)]
    assert svg.count("writers blocked: no") == len(kinds) - kinds.count("add") == 5  # indexes (2), VALIDATEs (3)
    assert svg.count("writers blocked: at most") == kinds.count("add") == 3  # each ADD ... NOT VALID, an instant
    assert "<script" not in svg and "lock timeout" in svg
    report = (run.path / "04_apply.html").read_text()
    assert 'data-mime-type="image/svg+xml"' in report and "data:image/svg+xml;base64," in report  # embedded, no file
    book, run, entry = seen["orphan_check", "default"]
    (chart,) = [o.data["image/svg+xml"] for o in _outputs(book) if "image/svg+xml" in o.get("data", {})]
    assert f"Orphan rows per column ({seen['planted']} in foreign-key columns)" in chart
    assert "data:image/svg+xml;base64," in (run.path / "01_orphan_check.html").read_text()


# -- what a person sees: the reports in headless Chromium -----------------------------------------
def _browser():
    import shutil

    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    return playwright.sync_playwright(), chromium


VERDICT_BOX = "p[style*='border-left']"  # the verdict line's element in a report


def test_the_verdict_and_the_tables_read_at_a_glance_in_chromium(notebooks):
    """The last screen of each report shows its verdict line, the preview's statements fit the
    page width (no sideways scrolling), and the pictures are drawn. Screenshots are kept under
    the test's output folder (screenshots/)."""
    project, walkthrough, seen, base = notebooks
    out = base / "screenshots"
    out.mkdir(exist_ok=True)
    manager, chromium = _browser()
    with manager as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            for phase, how in [("orphan_check", "default"), ("orphan_cleanup", "default"),
                               ("migration_preview", "default"), ("apply", "default"), ("apply", "edited")]:
                book, run, entry = seen[phase, how]
                report = (run.path / PHASES[phase].notebook).with_suffix(".html")
                page.goto(report.as_uri())
                page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                name = f"{report.stem}-{how}"
                page.screenshot(path=str(out / f"{name}-end.png"))
                page.screenshot(path=str(out / f"{name}-full.png"), full_page=True)
                if (phase, how) == ("apply", "edited"):
                    assert page.locator("details").first.is_visible() and "PlanChangedError" in page.content()
                    continue
                box = page.locator(VERDICT_BOX).last
                assert box.is_visible() and box.inner_text().startswith(verdict(phase, entry["results"]).outcome)
                top = box.bounding_box()["y"]
                assert 0 <= top < 900, (phase, top)  # on the last screen, without scrolling up
                if phase == "migration_preview":
                    widths = page.evaluate("[...document.querySelectorAll('table')].map(t => t.scrollWidth)")
                    assert max(widths) <= 1280 and page.evaluate("document.documentElement.scrollWidth") <= 1280
                    page.locator("table", has_text="blocks writes").first.screenshot(
                        path=str(out / "03_migration_preview-statements.png"))
                if phase in ("orphan_check", "apply"):
                    picture = page.locator("img[src^='data:image/svg+xml']").first
                    assert picture.bounding_box()["height"] > 60
                    picture.screenshot(path=str(out / f"{report.stem}-picture.png"))
        finally:
            browser.close()
    assert len(list(out.glob("*.png"))) >= 12


def test_two_notebooks_as_seen_in_jupyterlab(project_copy, tmp_path_factory):
    """``fkrunbook lab``, then Run All on 01 and 02 in JupyterLab in headless Chromium: when the
    run ends, the verdict line is on the screen without scrolling. Screenshots are kept under the
    test's output folder (screenshots/*-jupyterlab.png)."""
    import os
    import secrets
    import signal
    import subprocess
    import time

    from .test_cli import FKRUNBOOK
    from .test_lab import _free_port, wait_for_lab

    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed: pip install -e '.[lab]'")
    manager, chromium = _browser()
    out = tmp_path_factory.getbasetemp() / "screenshots"
    out.mkdir(exist_ok=True)
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["FKRUNBOOK_LAB_TOKEN"] = token
    with open(tmp_path_factory.mktemp("lab") / "lab.log", "wb") as log:
        lab = subprocess.Popen([FKRUNBOOK, "lab", "--port", str(port), "--no-browser"], cwd=project_copy, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_lab(port, token, timeout=120)
        with manager as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 950})
                for name, outcome in [("01_orphan_check", "NO-GO"), ("02_orphan_cleanup", "NO-GO")]:
                    page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}.ipynb?reset&token={token}")
                    page.wait_for_selector(".jp-Notebook", state="attached", timeout=60000)
                    page.wait_for_selector("text=Python 3 (ipykernel) | Idle", timeout=60000)
                    if page.get_by_role("button", name="No", exact=True).count():  # "news?" notification
                        page.get_by_role("button", name="No", exact=True).click()
                    page.get_by_role("menuitem", name="Run", exact=True).click()
                    page.get_by_text("Run All Cells", exact=True).click()
                    page.wait_for_selector("text=evidence is sealed", timeout=240000)
                    time.sleep(3)  # JupyterLab settles its scrolling
                    page.screenshot(path=str(out / f"{name}-jupyterlab.png"))
                    line = page.locator(f".jp-OutputArea-output {VERDICT_BOX}").last
                    box = line.bounding_box()
                    assert line.inner_text().startswith(outcome), name
                    assert box and 0 < box["y"] and box["y"] + box["height"] < 950, (name, box)  # no scrolling
            finally:
                browser.close()
    finally:
        lab.send_signal(signal.SIGINT)
        assert lab.wait(60) == 0


def test_running_the_start_cell_again_shows_no_noise(project_copy, database):
    """Re-running ``phase.start`` in the same kernel (as an engineer does after editing a
    parameter) loads ipython-sql once: no ``%reload_ext`` notice, nothing on stderr."""
    from .conftest import write_config

    write_config(project_config(project_copy, database.environments), project_copy)
    walkthrough = prepare_walkthrough(load_config(project_copy / "fkrunbook.toml"), "test")
    book = nbformat.read(walkthrough.folder / "01_orphan_check.ipynb", as_version=4)
    client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(walkthrough.folder)}})
    start = next(i for i, c in enumerate(book.cells) if "phase.start(" in c.source)
    with client.setup_kernel():
        for index in range(start + 1):
            client.execute_cell(book.cells[index], index)
        first = list(book.cells[start].outputs)
        client.execute_cell(book.cells[start], start)  # again
        again = list(book.cells[start].outputs)
    for outputs in (first, again):
        assert [o.output_type for o in outputs] == ["execute_result"]  # the overview table, nothing else
        assert "reload_ext" not in json.dumps(outputs) and "already loaded" not in json.dumps(outputs)


def test_the_timeline_draws_a_lock_timeout_and_its_retry(database, spec, tmp_path):
    """A session holding a write lock on the parent while apply runs: the timeline draws each
    lock-timeout attempt in red and says how long writers queued behind it."""
    from fkrunbook.spec import LockRetries

    from .test_executor import apply_past_a_brief_lock_holder

    applied, _ = apply_past_a_brief_lock_holder(database, spec, tmp_path,
                                                LockRetries.rising(attempts=20, backoff="100ms", backoff_max="200ms"))
    timeouts = applied.attempts[applied.attempts["outcome"] == "lock timeout"]
    assert len(timeouts) >= 1
    picture = display.apply_timeline(applied.steps, applied.attempts)
    svg = picture._repr_svg_()
    (tmp_path / "apply-timeline-with-retries.svg").write_text(svg)  # kept with the test's output
    assert svg.count('fill="#cf222e"/>') == len(timeouts) + 1  # one red mark per lock timeout, and the legend's
    assert "writers queued up to" in svg and f"{_count_retries(len(timeouts))}" in repr(picture)
    table_page = table(applied.attempts)._repr_html_()
    assert table_page.index(">outcome</th>") < table_page.index(">waited s</th>") < table_page.index(">statement</th>")


def _count_retries(n):
    return f"{n} retr{'y' if n == 1 else 'ies'}"
