"""The ``fkrunbook`` command: a thin adapter over the library. Library errors become one line on
stderr and exit status 1 (``--debug`` shows the traceback)."""
from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path

import click

from .errors import FkrunbookError
from .phase import PHASES, check_parameters, phase_parameters
from .teamdata import TEAM_ROWS


def _friendly(func):
    """Turn a library error into one clear line and a non-zero exit."""
    @functools.wraps(func)
    def wrapper(*args, debug: bool = False, **kwargs):
        try:
            return func(*args, **kwargs)
        except FkrunbookError as err:
            if debug:
                raise
            click.echo(f"fkrunbook: error: {err}", err=True)
            sys.exit(1)
    return click.option("--debug", is_flag=True, help="Show the full traceback of an error.")(wrapper)


def _config(project: str | None):
    """The project configuration: --project (fkrunbook.toml or its folder), else found from here up."""
    from .config import find_config, load_config

    return load_config(project) if project else find_config()


project_option = click.option("--project", type=click.Path(), help="fkrunbook.toml, or the folder holding it "
                                                                    "(default: found from the current folder up).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fkrunbook")
def main():
    """Jupyter runbooks that add missing foreign keys to a Supabase (PostgreSQL) schema safely,
    keeping the executed notebooks as audit evidence."""
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugpy warning in kernels


def _phase_options(func):
    """One option per phase parameter, from the phase registry."""
    for name, (parameter, takers) in reversed(list(phase_parameters(cli_only=True).items())):
        where = " and ".join(takers)
        text = parameter.help if parameter.help.startswith(tuple(takers)) else f"{where}: {parameter.help}"
        if parameter.type is bool:
            option = click.option(parameter.option, name, is_flag=True, help=text)
        else:
            option = click.option(parameter.option, name, type=parameter.type, default=parameter.default,
                                  show_default=bool(parameter.default), help=text,
                                  metavar="HASH" if name == "approve" else None)
        func = option(func)
    return func


spec_option = click.option("--spec", "spec", help="Runbook spec: a name listed in fkrunbook.toml or a path "
                                                  "(default: the first listed).")


@main.command()
@click.option("--supabase-dir", help="The Supabase folder (with config.toml and migrations/), relative to the root "
                                     "(default: found by its config.toml).")
@click.option("--table-docs", help="A table's doc, a path with {table} (default: found by a tables/ folder of docs).")
@click.option("--docs-new", help="The only folder fkrunbook creates docs in (default: the table docs' parent).")
@click.option("--index", help="The keyword index file (default: found AGENT-INDEX.md).")
@click.option("--procedures", multiple=True, help="Glob of the org clean-up procedures, repeatable (default: found "
                                                  "org-cleanup*.md, dot-folders included).")
@click.option("--runbook-dir", default="fkrunbook", show_default=True,
              help="Folder for the spec, the environments file and the evidence.")
@click.option("--ci", type=click.Choice(["github"]), help="Also write the CI workflows (.github/workflows/).")
@click.option("--pip-spec", default="fkrunbook", show_default=True,
              help="What the CI workflows pip-install (a wheel path or git+https:// URL).")
@click.option("--force", is_flag=True, help="Overwrite files fkrunbook wrote before.")
@click.option("--root", type=click.Path(file_okay=False), default=".", help="The repository root (default: here).")
@_friendly
def init(supabase_dir, table_docs, docs_new, index, procedures, runbook_dir, ci, pip_spec, force, root):
    """Set fkrunbook up in your repository: find the Supabase folder, the table docs, the keyword
    index and the clean-up procedures; write fkrunbook.toml, the environments file and the runbook
    spec (and, with --ci github, the workflows). Non-interactive; refuses to overwrite without --force.

    Example: fkrunbook init --ci github
    """
    from .project import InitOptions, init_project

    result = init_project(root, InitOptions(supabase_dir, table_docs, docs_new, index, tuple(procedures),
                                            runbook_dir, ci, pip_spec, force))
    for line in result.found:
        click.echo(f"found:   {line}")
    for line in result.assumed:
        click.echo(f"assumed: {line}")
    for path in result.written:
        click.echo(f"wrote:   {os.path.relpath(path, result.root)}")
    for line in result.notes:
        click.echo(f"note:    {line}")
    click.echo("next:    fkrunbook run --env local --phase orphan_check   (edit the environments file for staging "
               "and production first)")


@main.command()
@click.option("--env", "env", required=True, help="Environment name from the project's environments file.")
@click.option("--phase", "phases", multiple=True, help=f"Phase to run (repeatable; default all): {', '.join(PHASES)}.")
@_phase_options
@spec_option
@click.option("--run-id", help="Run id (default: UTC time plus a random suffix).")
@click.option("--cell-timeout", type=int, default=1800, show_default=True, help="Seconds a notebook cell may run.")
@click.option("--quiet", is_flag=True, help="Print only the final line.")
@project_option
@_friendly
def run(env, phases, spec, run_id, cell_timeout, quiet, project, **phase_values):
    """Run the runbook's phases in order with papermill, stopping at the first failure.

    Every executed notebook, failed ones included, is kept under the project's evidence folder,
    <evidence>/<env>/<run-id>/, with a manifest.json.

    Example: fkrunbook run --env staging --phase orphan_check --phase migration_preview
    """
    import signal

    from .errors import PhaseFailedError, RunCancelledError
    from .runbook import resolve_phases, run_phases

    selected = resolve_phases(list(phases))  # a misspelled phase fails before anything connects
    known = phase_parameters(cli_only=True)
    parameters = {k: v for k, v in phase_values.items() if v != known[k][0].default}
    check_parameters(selected, parameters)  # a flag for a phase left out fails before anything connects
    config = _config(project)
    try:
        result = run_phases(config, env, selected, spec=spec, parameters=parameters, run_id=run_id,
                            cell_timeout=cell_timeout, on_event=_print_publish_failure if quiet else _print_event)
    except PhaseFailedError as err:
        if not quiet and err.run_dir:
            _print_summary(Path(err.run_dir))
        if isinstance(err, RunCancelledError):  # exit as a process stopped by that signal does
            click.echo(f"fkrunbook: {err}", err=True)
            sys.exit(128 + signal.Signals[err.signal].value)
        raise
    except KeyboardInterrupt:  # a third signal: the runner stopped without waiting for the kernel
        click.echo("fkrunbook: stopped at once by a third signal; the run is sealed as cancelled; the migration "
                   "preview shows what is left to do", err=True)
        sys.exit(130)
    if not quiet:
        _print_summary(result.run_dir)
    click.echo(f"run {result.run_id} succeeded; evidence: {_shown(result.run_dir)}")


@main.command()
@click.option("--env", "env", default="local", show_default=True, help="Environment to measure (not a protected one).")
@click.option("--rows", type=int, default=1_000_000, show_default=True, help="Rows of the scratch table.")
@project_option
@_friendly
def calibrate(env, rows, project):
    """Measure how fast this server builds an index and validates a key, for the preview's estimates.

    Builds a scratch table of --rows rows in a schema of its own, times CREATE INDEX CONCURRENTLY and
    VALIDATE CONSTRAINT on it, drops it, and keeps the rates in .fkrunbook/calibration.json (git-ignored).

    Example: fkrunbook calibrate --env local
    """
    from .database import connect
    from .environment import get_environment
    from .estimate import calibrate as measure
    from .estimate import check_calibration, save_calibration

    config = _config(project)
    environment = get_environment(env, config.environments)
    check_calibration(environment, rows)  # before anything connects
    click.echo(f"Measuring on {environment.name} with a scratch table of {rows:,} rows...")
    measured = measure(connect(environment), rows)
    path = save_calibration(config.root, measured)
    click.echo(f"index build: {measured.index_s_per_mrow:.2f} s per million rows, "
               f"{measured.index_s_per_gb:.1f} s per GB")
    click.echo(f"VALIDATE:    {measured.validate_s_per_mrow:.2f} s per million rows, "
               f"{measured.validate_s_per_gb:.1f} s per GB")
    click.echo(f"saved to {_shown(path)}; the migration preview's estimates use it from now on")


def _team_schema_options(func):
    """--from-migrations [DIR] | --from-dump FILE, --spec, --project: the team's own schema, as
    `local reset` and `demo` take it."""
    for option in reversed([
        click.option("--from-migrations", "from_migrations", is_flag=False, flag_value="", default=None,
                     metavar="[DIR]", help="The team's schema, built from its migrations (default DIR: the Supabase "
                                           "folder's migrations/ in fkrunbook.toml) on a Supabase compatibility "
                                           "layer, with sample data for the spec, instead of fkrunbook's own sample."),
        click.option("--from-dump", "from_dump", type=click.Path(dir_okay=False),
                     help="The team's schema, built from a `supabase db dump` / `pg_dump --schema-only` file."),
        spec_option, project_option]):
        func = option(func)
    return func


@main.command()
@click.option("--rows", type=int, default=None, help="Sample size (default 2000 impersonation sessions; with "
                                                    f"--from-migrations/--from-dump, {TEAM_ROWS} rows in the spec's "
                                                    "tables).")
@_team_schema_options
@_friendly
def demo(rows, from_migrations, from_dump, spec, project):
    """Run the whole runbook on a fresh local database with planted orphans.

    Resets the local (embedded) database (fkrunbook's own sample, or with --from-migrations or
    --from-dump the team's schema with sample data), then runs all six phases with the clean-up
    confirmed and the docs written into a copy of the project's docs under .fkrunbook/demo-docs;
    ends with the spec's foreign keys validated.

    Example: fkrunbook demo --from-migrations
    """
    from .runbook import run_demo

    started = time.monotonic()
    config = _config(project)
    result = run_demo(config, rows, on_event=_print_event, migrations_dir=_migrations_dir(config, from_migrations),
                      dump=from_dump, spec=spec)
    _print_summary(result.run.run_dir)
    click.echo(f"Done in {time.monotonic() - started:.1f} s: orphans quarantined and deleted, covering indexes built, "
               "foreign keys added NOT VALID then validated, cascade proven and rolled back, docs written.")
    click.echo(f"Evidence: {_shown(result.run.run_dir)} (sealed manifest.json, the six executed notebooks and their "
               f"HTML reports); all runs: {_shown(result.run.run_dir.parent.parent / 'index.html')}; docs written "
               f"under {_shown(result.docs_root)}")


@main.command()
@click.option("--env", "env", default="local", show_default=True,
              help="Environment the notebooks run against (phases that change the database run only on local).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port on 127.0.0.1 (default: a free one).")
@click.option("--token", envvar="FKRUNBOOK_LAB_TOKEN", show_envvar=True,
              help="JupyterLab's token, at least 16 characters (prefer the variable: a command line is visible to "
                   "other users; default: the one JupyterLab generates and prints).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser (implied when there is no display).")
@spec_option
@project_option
@_friendly
def lab(env, port, token, no_browser, spec, project):
    """Open JupyterLab on working copies of the six notebooks, for one walkthrough.

    The copies (in .fkrunbook/lab/<run-id>/, git-ignored) have their parameters set to the
    environment and the walkthrough's run id; the tracked notebooks stay clean. Each notebook run
    there leaves its evidence, sealed, in <evidence>/<env>/<run-id>/. The local database is
    started, and stopped again when JupyterLab exits (Ctrl-C).

    Example: fkrunbook lab --port 8888 --no-browser   (token: export FKRUNBOOK_LAB_TOKEN first, or use the one printed)
    """
    from .lab import run_lab

    result = run_lab(_config(project), env, spec=spec, port=port, token=token, open_browser=not no_browser,
                     on_event=_print_lab_event)
    sys.exit(result.returncode)


def _print_lab_event(kind: str, info: dict) -> None:
    if kind == "local_starting":
        click.echo(f"Starting the local PostgreSQL (data in {_shown(info['data_dir'])})...")
    elif kind == "lab_starting":
        walkthrough = info["walkthrough"]
        click.echo(f"Walkthrough {walkthrough.run_id}: notebooks copied to {_shown(walkthrough.folder)} (the tracked "
                   f"notebooks stay clean); evidence goes to {_shown(info['evidence'])}.")
        click.echo(f"JupyterLab on http://127.0.0.1:{info['port']}/lab "
                   + ("(token: the one you gave)" if info["token_given"] else "(token: in JupyterLab's log below)")
                   + "; Ctrl-C stops it and the local database.")
    elif kind == "lab_stopped":
        click.echo("JupyterLab stopped" + (", and the local database" if info["stopped_database"] else "")
                   + "; `fkrunbook archive list` shows the walkthrough's runs.")


@main.command("generate-migrations")
@click.option("--check", is_flag=True, help="Only compare; exit 1 if the files differ from what the spec gives.")
@click.option("--env", help="Check against this environment: versions newer than its recorded history, and its "
                            "existing covering indexes reused by name.")
@spec_option
@project_option
@_friendly
def generate_migrations(check, env, spec, project):
    """Write the migration files for the spec into the Supabase folder's migrations/ (fkrunbook.toml
    [supabase] dir), with Supabase CLI naming; files already there are kept and checked.

    Example: fkrunbook generate-migrations --env staging
    """
    from .migration import write_migrations

    config = _config(project)
    db = _database(env, None, project) if env else None
    differ = write_migrations(_load_spec(spec, project), config.migrations, check=check, db=db)
    where = _shown(config.migrations)
    if check and differ:
        click.echo(f"fkrunbook: error: {', '.join(differ)} differ from the spec (or are missing) in {where}; run "
                   "`fkrunbook generate-migrations`", err=True)
        sys.exit(1)
    click.echo((f"wrote {', '.join(differ)} in {where}") if differ and not check else
               f"migration files in {where} match the spec")


@main.group()
def local():
    """The local environment's embedded PostgreSQL."""


def _local_env(project):
    from .environment import get_environment

    return get_environment("local", _config(project).environments)


@local.command("start")
@project_option
@_friendly
def local_start(project):
    """Start the local database (creating it with sample data the first time).

    Example: fkrunbook local start
    """
    from .database import connect

    env = _local_env(project)
    db = connect(env)
    click.echo(f"local database {env.database!r} is ready (PostgreSQL {db.describe().loc['server_version', 'value']})")


@local.command("reset")
@click.option("--rows", type=int, default=None, help="Sample size: fkrunbook's own sample (default 2000; millions for "
                                                    "benchmarks), or with --from-migrations/--from-dump the rows "
                                                    f"written into the spec's tables (default {TEAM_ROWS}; 0: the "
                                                    "schema only, as a new environment is).")
@_team_schema_options
@_friendly
def local_reset(rows, from_migrations, from_dump, spec, project):
    """Recreate the local database: fkrunbook's sample schema with fresh sample data and planted
    orphans, or (--from-migrations, --from-dump) the team's own schema, with sample data for the
    spec's tables written through the schema's own triggers and orphans planted in each spec column.

    Example: fkrunbook local reset --from-migrations --rows 2000
    """
    if from_migrations is not None or from_dump:
        config = _config(project)
        for line in _reset_team_schema(config, from_migrations, from_dump, rows, spec).lines:
            click.echo(line)
        return
    if spec:
        raise FkrunbookError("--spec applies with --from-migrations or --from-dump (fkrunbook's own sample has its "
                             "own spec); leave it out, or add one of them")
    from .sample import reset_local

    env = _local_env(project)
    data = reset_local(env, 2000 if rows is None else rows)
    click.echo(f"local database {env.database!r} recreated: {data.sessions} sessions, {data.grants} grants, "
               f"{data.events} events; orphans planted: {sum(data.orphans.values())}")


def _reset_team_schema(config, from_migrations, from_dump, rows, spec):
    """`local reset --from-migrations/--from-dump`: every input checked before the server starts."""
    from .environment import get_environment
    from .rehearsal import reset_local_from
    from .spec import load_spec
    from .teamdata import check_team_rows

    rows = TEAM_ROWS if rows is None else rows
    check_team_rows(rows)
    loaded = load_spec(config.resolve_spec(spec)) if rows else None
    env = get_environment("local", config.environments)
    return reset_local_from(env, migrations_dir=_migrations_dir(config, from_migrations), dump=from_dump, rows=rows,
                            spec=loaded)


def _migrations_dir(config, from_migrations):
    """--from-migrations [DIR]: DIR, or the Supabase folder's migrations/ when it is given bare."""
    if from_migrations is None:
        return None
    return Path(from_migrations) if from_migrations else config.migrations


@local.command("stop")
@project_option
@_friendly
def local_stop(project):
    """Stop the local database server.

    Example: fkrunbook local stop
    """
    from .server import stop_server

    env = _local_env(project)
    click.echo("stopped" if stop_server(env.data_dir, env.bin_dir) else "not running")


def _load_spec(spec, project):
    from .spec import load_spec

    return load_spec(_config(project).resolve_spec(spec))


def _other_specs(project) -> tuple:
    """The specs fkrunbook.toml lists after the first (the default one)."""
    from .spec import load_spec

    return tuple(load_spec(path) for path in _config(project).specs[1:])


def _database(env, database_url, project, read_only=True):
    """The database named by --env, or given by --database-url (never echoed)."""
    from .database import Database, connect
    from .environment import Environment, check_url, get_environment

    if bool(env) == bool(database_url):
        raise FkrunbookError("give exactly one of --env ENV or --database-url URL")
    if database_url:
        target = Environment("database-url", "url", url_env="--database-url")
        check_url(database_url, target)
        db = Database(target, database_url, read_only)
        db.connect_raw().close()
        return db
    return connect(get_environment(env, _config(project).environments), read_only=read_only)


target_options = [
    click.option("--env", help="Environment name from the project's environments file."),
    click.option("--database-url", help="A PostgreSQL URL instead of an environment (prefer --env: a URL on a "
                                        "command line can end up in shell history)."),
    spec_option,
    project_option,
]


def _with_target(func):
    for option in reversed(target_options):
        func = option(func)
    return func


@main.command()
@_with_target
@click.option("--schema", "schemas", multiple=True,
              help="Schema to audit (repeatable; default the spec's, and its parent table's if another).")
@click.option("--pattern", "patterns", multiple=True,
              help="Column-name pattern of an organization reference (repeatable; default organization_id, org_id, "
                   "*_org_id, *_organization_id and the spec's foreign-key columns).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "markdown"]), default="text",
              show_default=True, help="text for people; json; github: workflow annotations, plus a markdown table "
                                      "appended to $GITHUB_STEP_SUMMARY when it is set; markdown: a table.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def audit(env, database_url, spec, project, schemas, patterns, fmt, as_json):
    """Audit every foreign key and organization reference in the live schema.

    Exit 0 when no finding fails the gate (each is declared in the spec, accepted and not expired,
    planned by the spec, or covered indirectly), 1 when one does, 2 on error.

    Example: fkrunbook audit --env staging --format github
    """
    import os

    from .audit import audit_schema, format_findings, render_markdown
    try:
        related = () if spec else _other_specs(project)
        spec = _load_spec(spec, project)
        findings = audit_schema(_database(env, database_url, project), spec,
                                list(schemas) or None, list(patterns) or None, related=related)
    except FkrunbookError as err:
        click.echo(f"fkrunbook: error: {err}", err=True)
        sys.exit(2)
    fmt = "json" if as_json else fmt
    click.echo(format_findings(findings, fmt))
    if fmt == "github" and os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as summary:
            summary.write(render_markdown(findings) + "\n")
    sys.exit(1 if any(f.gates for f in findings) else 0)


@main.group("spec")
def spec_group():
    """Runbook specs: draft the next one."""


@spec_group.command("new")
@click.argument("name")
@click.option("--from-audit", is_flag=True, help="Draft the keys from the audit's undeclared missing_fk findings.")
@_with_target
@click.option("--force", is_flag=True, help="Replace a spec file of that name.")
@_friendly
def spec_new(name, from_audit, env, database_url, spec, project, force):
    """Draft the next runbook spec, NAME.yaml, beside the project's first spec, and list it in
    fkrunbook.toml. Each key gets the column's live covering index, a suggested on_delete (and why)
    and the next migration version; each reason is left TODO, which the runbook refuses until
    written.

    Example: fkrunbook spec new add_notification_org_fk --from-audit --env staging
    """
    from .audit import audit_schema
    from .config import add_spec
    from .draft import draft_from_audit, write_draft

    if not from_audit:
        raise FkrunbookError("spec new drafts from the audit: pass --from-audit (with --env ENV)")
    config = _config(project)
    base = _load_spec(spec, project)
    db = _database(env, database_url, project)
    findings = audit_schema(db, base, related=() if spec else _other_specs(project))
    draft = draft_from_audit(db, base, name, findings, config.migrations)
    path = write_draft(draft, base, config.spec.parent, force=force)
    listed = add_spec(config, path)
    for key in draft.keys:
        click.echo(f"{key.table}.{key.column}: on_delete {key.on_delete} ({key.basis}); index "
                   f"{key.index or 'none yet: the runbook builds one CONCURRENTLY'}")
    for line in draft.left:
        click.echo(line)
    click.echo(f"wrote {_shown(path)} (migration version {draft.version}); "
               + ("listed in fkrunbook.toml" if listed else "add it to [runbook] specs in fkrunbook.toml")
               + f"; write each reason, then: fkrunbook run --env {env or 'ENV'} --spec {name}")


@main.command("blast-radius")
@_with_target
@click.option("--org", "organization", default="", help="Organization id or slug (default: the one with most dependents).")
@_friendly
def blast_radius_command(env, database_url, spec, project, organization):
    """Show what a hard delete of one organization would remove, change, block or leave behind. Read-only.

    Example: fkrunbook blast-radius --env staging --org acme
    """
    from .blast import blast_radius

    spec = _load_spec(spec, project)
    result = blast_radius(_database(env, database_url, project), spec, organization)
    if len(result.rows):
        click.echo(result.rows.to_string(index=False))
    click.echo(result.verdict.data.replace("**", ""))


@main.group()
def quarantine():
    """Rows removed by orphan clean-ups: list them, put them back."""


@quarantine.command("list")
@click.argument("run_id", required=False)
@_with_target
@_friendly
def quarantine_list(run_id, env, database_url, spec, project):
    """List the rows kept in quarantine, per run and table.

    Example: fkrunbook quarantine list --env staging
    """
    from .quarantine import list_quarantine

    table = list_quarantine(_database(env, database_url, project), run_id)
    click.echo(table.to_string(index=False) if len(table) else "quarantine is empty")


@quarantine.command("restore")
@click.argument("run_id")
@_with_target
@_friendly
def quarantine_restore(run_id, env, database_url, spec, project):
    """Put back exactly the rows one run's clean-up removed (once).

    Example: fkrunbook quarantine restore 20261126T120000Z-a1b2c3 --env staging
    """
    from .quarantine import restore_quarantine

    restored = restore_quarantine(_database(env, database_url, project, read_only=False), run_id)
    click.echo(restored.to_string(index=False))
    click.echo(f"restored {int(restored['rows_restored'].sum())} row(s) from run {run_id}")


@main.group()
def archive():
    """The audit evidence: list, show and verify sealed runs, in the local folder or the team's store."""


audit_option = click.option("--audit", "audit_dir", type=click.Path(file_okay=False),
                            help="Read this local evidence folder instead of the store.")
store_option = click.option("--store", help="Evidence store: a folder, git+URL#branch=NAME or s3://bucket/prefix "
                                            "(default: FKRUNBOOK_STORE, else [evidence] store in fkrunbook.toml, else "
                                            "the local evidence folder).")


local_option = click.option("--local", is_flag=True, help="Read the local evidence folder ([runbook] evidence) "
                                                           "instead of the store.")


def _archive_options(func):
    for option in reversed([local_option, audit_option, store_option, project_option]):
        func = option(func)
    return func


def _audit_dir(audit_dir, project) -> Path:
    return Path(audit_dir) if audit_dir else _config(project).evidence


def _archive_folder(audit_dir, store, project, env=None, local=False):
    """A local folder holding the archive to read: --audit or --local, else the store (a temporary
    copy of a remote one)."""
    import contextlib

    from .store import open_store, resolve_store

    if audit_dir or local:
        return contextlib.nullcontext(_audit_dir(audit_dir, project))
    return open_store(resolve_store(_config(project), store), env)


@archive.command("list")
@click.option("--env", help="Only this environment.")
@_archive_options
@_friendly
def archive_list(env, local, audit_dir, store, project):
    """List the runs, newest first.

    Example: fkrunbook archive list --env staging
    """
    from .evidence import load_runs, run_table

    with _archive_folder(audit_dir, store, project, env, local) as folder:
        table = run_table(load_runs(folder, env))
    click.echo(table.to_string(index=False) if len(table) else "no runs")


@archive.command("show")
@click.argument("run_id")
@_archive_options
@_friendly
def archive_show(run_id, local, audit_dir, store, project):
    """Show one run's manifest (its sha256 on stderr).

    Example: fkrunbook archive show 20261126T120000Z-a1b2c3
    """
    import json

    from .errors import FkrunbookError
    from .evidence import find_run

    with _archive_folder(audit_dir, store, project, local=local) as folder:
        run = find_run(folder, run_id)
    if run is None:
        raise FkrunbookError(f"run {run_id!r} is not in the archive; `fkrunbook archive list` shows the runs")
    click.echo(json.dumps(run.manifest, indent=2))
    click.echo(f"manifest sha256 {run.manifest_sha256}", err=True)  # stdout stays JSON


@archive.command("verify")
@click.argument("target", required=False)
@click.option("--env", "ledger_env", help="Also check the runs against this environment's ledger, in its database: "
                                          "a run missing (the newest too), a manifest altered, the ledger altered.")
@_archive_options
@_friendly
def archive_verify(target, ledger_env, local, audit_dir, store, project):
    """Recompute every file hash and the chain of manifests (a run id, an environment, or all);
    with --env, also check that environment's runs (in the store, or --local) against the ledger in
    its database.

    Example: fkrunbook archive verify --env production
    """
    from .errors import FkrunbookError
    from .evidence import verify_archive

    if ledger_env:
        if target:
            raise FkrunbookError(f"give either a run or environment ({target!r}) or --env {ledger_env}, not both; "
                                 f"--env checks every run of {ledger_env!r}")
        _verify_against_ledger(ledger_env, audit_dir, store, project, local)
        return
    with _archive_folder(audit_dir, store, project, local=local) as folder:
        try:
            problems, checked = verify_archive(folder, target)
        except LookupError:
            raise FkrunbookError(f"{target!r} is neither a run nor an environment in the archive; "
                                 "`fkrunbook archive list` shows them") from None
    for problem in problems:
        click.echo(problem)
    if problems:
        raise FkrunbookError(f"{len(problems)} problem(s) in {checked} sealed run(s): the evidence was altered")
    click.echo(f"{checked} sealed run(s) verified: every file and the chain are intact")


def _verify_against_ledger(env: str, audit_dir, store, project, local) -> None:
    """`archive verify --env`: the folder's own checks for that environment, then the ledger's."""
    from .database import connect
    from .environment import get_environment
    from .ledger import read_ledger
    from .store import is_local, resolve_store

    config = _config(project)
    environment = get_environment(env, config.environments)  # an unknown name: one line, nothing read
    entries = read_ledger(connect(environment, read_only=True), environment.name)
    target = None if audit_dir or local else resolve_store(config, store)
    with _archive_folder(audit_dir, store, project, environment.name, local) as audit:
        remote = target is not None and not is_local(target, config.evidence)
        where = f"{target.shown}/{environment.name}" if remote else _shown(audit / environment.name)
        _check_ledger(env, environment.name, entries, audit, where)


def _check_ledger(env: str, name: str, entries, audit: Path, where: str) -> None:
    from .errors import FkrunbookError
    from .evidence import load_runs, verify_archive
    from .ledger import verify_ledger

    try:
        problems, _ = verify_archive(audit, name)
    except LookupError:  # no run of it in this folder: the ledger says what is missing
        problems = []
    check = verify_ledger(entries, load_runs(audit, name), where)
    for problem in problems + check.problems:
        click.echo(problem)
    if check.off_ledger:
        click.echo(f"note: {len(check.off_ledger)} run(s) in {where} were sealed without the ledger (skipped, see "
                   f"their manifests): checked in the folder's chain only: {', '.join(check.off_ledger)}")
    if problems or check.problems:
        raise FkrunbookError(f"{len(problems) + len(check.problems)} problem(s) against the ledger of {env!r} "
                             f"({check.runs} run(s) recorded there, {check.found} found intact in {where})")
    click.echo(f"{check.runs} run(s) in the ledger of {env!r}, each found in {where} with the manifest the ledger "
               "recorded; every file, the chain and the ledger are intact")


@archive.command("publish")
@click.option("--env", help="Only this environment's runs.")
@store_option
@project_option
@_friendly
def archive_publish(env, store, project):
    """Publish the sealed runs of the local evidence folder that the store lacks (oldest first);
    a run already there is skipped, evidence is never overwritten.

    Example: fkrunbook archive publish --env staging
    """
    from .store import is_local, publish_runs, resolve_store

    config = _config(project)
    target = resolve_store(config, store)
    if is_local(target, config.evidence):
        click.echo(f"the evidence store is the local evidence folder {_shown(config.evidence)}: nothing to publish "
                   "(set [evidence] store in fkrunbook.toml, or FKRUNBOOK_STORE)")
        return
    published = publish_runs(target, config.evidence, env)
    for item in published:
        click.echo(f"{item.action}: {item.env}/{item.run_id}")
    new = sum(1 for p in published if p.action != "already in the store")
    click.echo(f"{new} run(s) published to the evidence store {target.shown}; {len(published) - new} already there")


@archive.command("pull")
@click.option("--env", help="Only this environment's runs.")
@store_option
@project_option
@_friendly
def archive_pull(env, store, project):
    """Copy the store's sealed runs that the local evidence folder lacks into it, so the next run
    continues the store's chain (on a new machine, or in CI, which starts with an empty folder).

    Example: fkrunbook archive pull --env staging
    """
    from .store import pull_runs, resolve_store

    config = _config(project)
    target = resolve_store(config, store)
    pulled = pull_runs(target, config.evidence, env)
    for item in pulled:
        click.echo(f"pulled: {item.env}/{item.run_id}")
    click.echo(f"{len(pulled)} run(s) copied from the evidence store {target.shown} into {_shown(config.evidence)}")


def _print_event(kind: str, info: dict) -> None:
    if kind == "published":
        _print_published(kind, info)
        return
    if kind == "local_starting":
        click.echo(f"Starting the local PostgreSQL (data in {_shown(info['data_dir'])}) and loading sample data...")
        return
    if kind == "team_loaded":
        for line in info["load"].lines:
            click.echo(f"  {line}")
        return
    if kind == "sample_loaded":
        server, data = info["server"], info["sample"]
        click.echo(f"  PostgreSQL {server.version} on 127.0.0.1:{server.port}, database {info['database']!r}: "
                   f"{data.organizations} organizations ({data.soft_deleted} soft-deleted, {data.hard_deleted} "
                   f"hard-deleted leaving orphans), {data.sessions} sessions, {data.grants} grants, {data.events} events")
        for column, count in data.orphans.items():
            click.echo(f"  planted orphans in {column}: {count}")
        return
    prefix = f"[{info['index']}/{info['total']}] {info['phase']}"
    live = sys.stderr.isatty()
    if kind == "phase_started":
        click.echo(f"{prefix} ...")
    elif kind == "cell_started" and live:
        click.echo(f"\r{prefix}: cell {info['cell']}/{info['cells']}, {info['elapsed_s']:.1f} s   ", err=True, nl=False)
    elif kind == "phase_finished":
        if live:
            click.echo("\r" + " " * 60 + "\r", err=True, nl=False)
        click.echo(f"      {info['status']} in {info['duration_s']:.1f} s" + (f"; {_key_result(info)}" if info.get("results") else ""))


def _print_published(kind: str, info: dict) -> None:
    """The one line on publishing a sealed run to the store: stdout, or a warning on stderr."""
    if kind == "published":
        click.echo(info["line"] if info["ok"] else f"fkrunbook: warning: {info['line']}", err=not info["ok"])


def _print_publish_failure(kind: str, info: dict) -> None:
    """With --quiet: only a publish that failed (the run's own line stays the only one on stdout)."""
    if kind == "published" and not info["ok"]:
        _print_published(kind, info)


def _key_result(entry: dict) -> str:
    results = entry.get("results") or {}
    phase = PHASES.get(entry.get("name") or entry.get("phase"))
    keys = phase.key_results if phase else tuple(results)
    return ", ".join(f"{k}: {_brief(results[k])}" for k in keys if k in results)


def _print_summary(run_dir: Path) -> None:
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = [(p["name"], p["status"], f"{p['duration_s']:.1f} s" if "duration_s" in p else "", _key_result(p))
            for p in manifest["phases"]]
    widths = [max(len(r[i]) for r in rows + [("phase", "status", "duration", "key result")]) for i in range(3)]
    click.echo("")
    for row in [("phase", "status", "duration", "key result")] + rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    reports = manifest.get("reports") or []
    click.echo(f"report: {_shown(run_dir / reports[0]) if reports else _shown(run_dir)} "
               f"(all runs: {_shown(run_dir.parent.parent / 'index.html')}); "
               f"manifest sha256 {_sha256(run_dir / 'manifest.json')[:16]}, chain #{manifest.get('sequence')}")
    from .ledger import ledger_line

    if ledger_line(manifest):
        click.echo(ledger_line(manifest))


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _brief(value) -> str:
    """A result in a few characters: totals of per-column counts, lengths of lists, short hashes."""
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    if isinstance(value, dict) and all(isinstance(v, (int, bool)) for v in value.values()):
        if all(isinstance(v, bool) for v in value.values()):
            return f"{sum(value.values())}/{len(value)}"
        return str(sum(value.values()))
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict) and "rows_deleted" in value and value.get("organization") is None:
        return "nothing to measure (no organization yet)"
    if isinstance(value, dict) and "rows_deleted" in value:
        left = value.get("rows_left_behind")
        return f"{value['rows_deleted']} rows would go with one organization" + (
            f", {left} left behind without a key" if left else "") + (" (BLOCKED)" if value["blocked"] else "")
    return str(value)


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
