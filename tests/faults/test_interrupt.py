"""Ctrl-C (SIGINT) and SIGTERM sent to a real `fkrunbook run` while apply waits inside a step: the
statement is cancelled on the server at once, the run is sealed as cancelled with the partial
notebook, the database is left as the fault suite describes (an interrupted index build leaves
an INVALID index, reported; keys NOT VALID at worst), and a re-run completes."""
import json
import re
import signal
import time

import psycopg
import pytest

from fkrunbook.evidence import load_runs, verify_archive
from fkrunbook.history import list_local
from fkrunbook.orphans import clean_up_orphans
from fkrunbook.verify import verify_constraints

from ..test_cli import cli
from ..test_migration import MIGRATIONS, psql
from .conftest import hold_lock, start_cli, wait_for_statement, wait_until_gone

STEPS = {
    # step: (the lock an old transaction holds so that the step waits, the statement, files applied first)
    "index": (("cross_tenant_access_grants_projection", "ROW EXCLUSIVE"), "CREATE INDEX CONCURRENTLY", 0),
    "validate": (("impersonation_sessions_projection", "SHARE UPDATE EXCLUSIVE"),
                 'ALTER TABLE "public"."impersonation_sessions_projection" VALIDATE', 2),
}


def _statement_gone(url, prefix, within_s):
    """Seconds until no fkrunbook session runs a statement starting with ``prefix`` (fails after ``within_s``)."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() - started < within_s:
            if not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkrunbook' "
                                "AND state = 'active' AND query LIKE %s", (prefix + "%",)).fetchone()[0]:
                return time.monotonic() - started
            time.sleep(0.05)
    pytest.fail(f"{prefix!r} still runs on the server {within_s} s after the signal")


@pytest.mark.parametrize("step,signum", [("index", signal.SIGINT), ("validate", signal.SIGTERM),
                                         ("index", signal.SIGTERM)])
def test_a_signal_during_a_step_cancels_it_on_the_server_and_a_rerun_completes(step, signum, project_copy, database,
                                                                                spec, tmp_path):
    (table, mode), statement, by_hand = STEPS[step]
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    for migration in list_local(MIGRATIONS)[:by_hand]:  # reach the step without waiting in earlier ones
        assert psql(database.url, migration.path).returncode == 0
    blocker = hold_lock(database.url, table, mode)  # held until the end: the step can only end by the cancel
    try:
        proc = start_cli(project_copy, database, "run", "--env", "staging", "--phase", "apply")
        wait_for_statement(database.url, statement)
        proc.send_signal(signum)
        assert _statement_gone(database.url, statement, within_s=10) < 10
        assert proc.wait(timeout=60) == 128 + signum
    finally:
        blocker.close()
    wait_until_gone(database.url)

    name = signal.Signals(signum).name
    log = (project_copy / "cli.log").read_text()
    assert f"fkrunbook: run cancelled by {name} during phase apply" in log
    (run,) = load_runs(project_copy / "audit", "staging")
    assert run.status == "cancelled" and run.sealed
    (phase,) = run.manifest["phases"]
    assert phase["status"] == "cancelled" and phase["cancelled"]["signal"] == name
    assert "ApplyCancelledError: apply stopped by" in phase["error"]
    notebook = json.loads((run.path / "04_apply.ipynb").read_text())  # the partial notebook, with the stop
    errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["ApplyCancelledError"]
    assert "was cancelled on the server" in errors[0]["evalue"]
    assert "04_apply.ipynb" in run.manifest["files"]
    assert 'class="fkr-run fkr-cancelled"' in (run.path / "04_apply.html").read_text()  # the report's header
    index = (project_copy / "audit" / "index.html").read_text()
    assert f"<tr class='main cancelled runner' id='run-{run.run_id}'>" in index

    invalid = database.sql("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE NOT i.indisvalid")
    left = phase["cancelled"]["left"]
    if step == "index":  # an interrupted CONCURRENTLY build leaves its index INVALID: reported, never silent
        assert len(invalid) == 1 and any(f"INVALID index {invalid[0][0]}" in line for line in left)
        assert database.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == [(0,)]
    else:  # keys NOT VALID at worst
        assert invalid == []
        assert database.sql("SELECT bool_or(convalidated) FROM pg_constraint WHERE contype = 'f'") == [(False,)]
        assert any("NOT VALID" in line for line in left)
        assert "INVALID" not in " ".join(left)

    rerun = cli("run", "--env", "staging", "--phase", "apply", cwd=project_copy,
                env={"STAGING_DATABASE_URL": database.url})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert verify_constraints(database.connect(), spec)["ok"].all()
    assert database.sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]
    assert sorted(r.status for r in load_runs(project_copy / "audit", "staging")) == ["cancelled", "succeeded"]
    assert verify_archive(project_copy / "audit") == ([], 2)  # the cancelled run is sealed into the chain


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_jupyterlabs_interrupt_during_apply_seals_the_walkthroughs_phase_as_cancelled(signum, project_copy, database,
                                                                                       spec, server, tmp_path):
    """JupyterLab's interrupt is SIGINT to the kernel's process group, sent here as it sends it while
    the apply notebook, run as Run All runs it (nbclient), waits inside an index build; SIGTERM is
    what a kernel gets when it is shut down or its machine stops."""
    import os
    import threading

    import nbclient
    import nbformat
    import psutil

    from fkrunbook.config import load_config
    from fkrunbook.lab import prepare_walkthrough

    from ..conftest import project_config, write_config

    envs = tmp_path / "local.yaml"  # a local (embedded) environment: the session's server, the test's database
    envs.write_text(f"environments:\n  local:\n    kind: embedded\n    data_dir: {server.data_dir}\n"
                    f"    database: {database.name}\n")
    write_config(project_config(project_copy, envs), project_copy)
    config = load_config(project_copy / "fkrunbook.toml")
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    notebook = prepare_walkthrough(config, "local").folder / "04_apply.ipynb"

    def interrupt():
        deadline = time.monotonic() + 120
        with psycopg.connect(database.url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fkrunbook' AND "
                                "state = 'active' AND query LIKE 'CREATE INDEX CONCURRENTLY%'").fetchone()[0]:
                    break
                time.sleep(0.05)
        for kernel in psutil.Process().children(recursive=True):
            if any("ipykernel" in part for part in kernel.cmdline()):
                os.killpg(os.getpgid(kernel.pid), signum)
                sent.append(time.monotonic())

    sent = []
    blocker = hold_lock(database.url, "cross_tenant_access_grants_projection", "ROW EXCLUSIVE")
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        book = nbformat.read(notebook, as_version=4)
        client = nbclient.NotebookClient(book, timeout=300, kernel_name="python3",
                                         resources={"metadata": {"path": str(notebook.parent)}})
        with pytest.raises(nbclient.exceptions.CellExecutionError, match="ApplyCancelledError"):
            client.execute()
        assert sent and _statement_gone(database.url, "CREATE INDEX CONCURRENTLY", within_s=10) < 10
    finally:
        blocker.close()

    (run,) = load_runs(config.evidence, "local")
    assert run.sealed and run.mode == "interactive" and run.status == "cancelled"
    assert run.manifest["phases"][0]["status"] == "cancelled"
    how = "an interrupt (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    assert run.manifest["phases"][0]["error"].startswith(f"ApplyCancelledError: apply stopped by {how} during `CREATE")
    assert "INVALID index" in run.manifest["phases"][0]["error"]
    assert database.sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(1,)]

    nbclient.NotebookClient(nbformat.read(notebook, as_version=4), timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}}).execute()  # Run All again
    assert verify_constraints(database.connect(), spec)["ok"].all()
    assert database.sql("SELECT count(*) FROM pg_index WHERE NOT indisvalid") == [(0,)]
    assert sorted(r.status for r in load_runs(config.evidence, "local")) == ["cancelled", "succeeded"]
    assert verify_archive(config.evidence) == ([], 2)


def test_a_kernel_that_cannot_stop_is_left_at_the_third_signal_and_the_runner_cancels_its_statement(
        project_copy, database, spec, tmp_path):
    """A frozen kernel (SIGSTOP) never answers the interrupt: the third signal stops the runner at
    once, which shuts the kernel down, seals the run as cancelled and cancels, on the server, the
    statement the kernel left running (found by the apply's advisory lock)."""
    import os

    from fkrunbook.migration import write_migrations
    from fkrunbook.spec import load_spec

    from .conftest import kernels_of

    # the schedule's 100 ms lock_timeout would end the build's wait by itself: here it waits as long as a big
    # build runs
    spec_file = project_copy / "runbooks" / "add_missing_org_fk_constraints.yaml"
    text, changed = re.subn(r"(?ms)^(    schedule: )\[\[.*?\]\]$", r"\g<1>[[120s, 1s]]", spec_file.read_text())
    assert changed == 1
    spec_file.write_text(text)
    spec = load_spec(spec_file)
    assert spec.migration.retries.steps == ((120_000, 1000),)
    write_migrations(spec, project_copy / "supabase" / "migrations")
    clean_up_orphans(database.connect(), spec, tmp_path, "clean", confirm=True)
    blocker = hold_lock(database.url, "cross_tenant_access_grants_projection", "ROW EXCLUSIVE")
    try:
        proc = start_cli(project_copy, database, "run", "--env", "staging", "--phase", "apply")
        wait_for_statement(database.url, "CREATE INDEX CONCURRENTLY")
        for kernel in kernels_of(proc):
            os.kill(kernel.pid, signal.SIGSTOP)
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)  # one at a time: signals sent together may arrive as one
        assert proc.wait(timeout=60) == 130
        assert _statement_gone(database.url, "CREATE INDEX CONCURRENTLY", within_s=1) < 1  # before the runner exited
    finally:
        blocker.close()
    wait_until_gone(database.url)
    assert "fkrunbook: stopped at once by a third signal; the run is sealed as cancelled" in (
        project_copy / "cli.log").read_text()
    (run,) = load_runs(project_copy / "audit", "staging")
    assert run.status == "cancelled" and run.sealed and "04_apply.ipynb" in run.manifest["files"]
    (phase,) = run.manifest["phases"]
    assert phase["status"] == "cancelled"
    assert "cancelled with pg_cancel_backend" in phase["cancelled"]["stopped_by_runner"]  # the runner's own stop
    assert any(line.startswith("INVALID index") for line in phase["cancelled"]["left"])
    rerun = cli("run", "--env", "staging", "--phase", "apply", cwd=project_copy,
                env={"STAGING_DATABASE_URL": database.url})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert verify_constraints(database.connect(), spec)["ok"].all()
