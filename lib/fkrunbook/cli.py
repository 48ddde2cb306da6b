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
from .phase import PHASES


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


def _project(project: str | None):
    from .runbook import Project, find_project

    return Project(Path(project).resolve()) if project else find_project()


project_option = click.option("--project", type=click.Path(file_okay=False), help="Project folder (default: found from the current folder).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fkrunbook")
def main():
    """Jupyter runbooks that add missing foreign keys to a Supabase (PostgreSQL) schema safely,
    keeping the executed notebooks as audit evidence."""
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiet debugpy warning in kernels


@main.command()
@click.option("--env", "env", required=True, help="Environment name from runbooks/environments.yaml.")
@click.option("--phase", "phases", multiple=True, help=f"Phase to run (repeatable; default all): {', '.join(PHASES)}.")
@click.option("--confirm", is_flag=True, help="orphan_cleanup: really delete the orphans (copies kept).")
@click.option("--approve", metavar="PLAN_HASH", help="apply: run only if the plan's hash is this one (from the preview).")
@click.option("--write-docs", is_flag=True, help="docs_update: write the changed docs instead of only showing the diff.")
@click.option("--docs-dir", type=click.Path(file_okay=False), help="docs_update: the docs folder (default docs/schema).")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="Runbook spec (default runbooks/add_missing_org_fk_constraints.yaml).")
@click.option("--environments", "environments_path", type=click.Path(dir_okay=False), help="Environments file.")
@click.option("--run-id", help="Run id (default: UTC time plus a random suffix).")
@click.option("--cell-timeout", type=int, default=1800, show_default=True, help="Seconds a notebook cell may run.")
@click.option("--quiet", is_flag=True, help="Print only the final line.")
@project_option
@_friendly
def run(env, phases, confirm, approve, write_docs, docs_dir, spec_path, environments_path, run_id, cell_timeout, quiet, project):
    """Run the runbook's phases in order with papermill, stopping at the first failure.

    Every executed notebook, failed ones included, is kept under audit/<env>/<run-id>/ with a
    manifest.json.

    Example: fkrunbook run --env staging --phase orphan_check --phase migration_preview
    """
    from .runbook import resolve_phases, run_phases

    resolve_phases(list(phases))  # a misspelled phase fails before anything connects
    parameters = {"confirm": confirm, "write": write_docs, "approve": approve or ""}
    if docs_dir:
        parameters["docs_dir"] = docs_dir
    result = run_phases(_project(project), env, list(phases), spec_path=spec_path, environments_path=environments_path,
                        parameters=parameters, run_id=run_id, cell_timeout=cell_timeout,
                        on_event=None if quiet else _print_event)
    click.echo(f"run {result.run_id} succeeded; evidence: {_shown(result.run_dir)}")


@main.command()
@click.option("--rows", type=int, default=2000, show_default=True, help="Sample size (impersonation sessions).")
@project_option
@_friendly
def demo(rows, project):
    """Run the whole runbook on a fresh local database with planted orphans.

    Resets the local (embedded) database, then runs all six phases with the clean-up confirmed
    and the docs written into the run folder; ends with the three constraints validated.

    Example: fkrunbook demo
    """
    from .environment import get_environment
    from .phase import new_run_id
    from .runbook import run_phases
    from .sample import ensure_local_database
    from .server import ensure_server

    proj = _project(project)
    env = get_environment("local", proj.environments)
    started = time.monotonic()
    click.echo(f"Starting the local PostgreSQL (data in {_shown(env.data_dir)}) and loading sample data...")
    server = ensure_server(env.data_dir, env.bin_dir)
    data = ensure_local_database(server, env.database, rows=rows, reset=True)
    click.echo(f"  PostgreSQL {server.version} on 127.0.0.1:{server.port}, database {env.database!r}: "
               f"{data.organizations} organizations ({data.soft_deleted} soft-deleted, {data.hard_deleted} hard-deleted "
               f"leaving orphans), {data.sessions} sessions, {data.grants} grants, {data.events} events")
    for column, count in data.orphans.items():
        click.echo(f"  planted orphans in {column}: {count}")
    run_id = new_run_id()
    docs_dir = proj.audit / "local" / run_id / "docs"
    result = run_phases(proj, "local", None, parameters={"confirm": True, "write": True, "docs_dir": docs_dir},
                        run_id=run_id, on_event=_print_event)
    click.echo(f"Done in {time.monotonic() - started:.1f} s: orphans quarantined and deleted, three foreign keys "
               "added NOT VALID then validated, cascade proven and rolled back, docs written.")
    click.echo(f"Evidence: {_shown(result.run_dir)} (manifest.json and the six executed notebooks)")


@main.command("generate-migrations")
@click.option("--check", is_flag=True, help="Only compare; exit 1 if the files differ from what the spec gives.")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False), help="Runbook spec.")
@project_option
@_friendly
def generate_migrations(check, spec_path, project):
    """Write the migration files for the spec into supabase/migrations/.

    Example: fkrunbook generate-migrations --check
    """
    from .migration import write_migrations
    from .spec import load_spec

    proj = _project(project)
    differ = write_migrations(load_spec(spec_path or proj.spec), proj.migrations, check=check)
    if check and differ:
        click.echo(f"fkrunbook: error: {', '.join(differ)} differ from the spec; run `fkrunbook generate-migrations`",
                   err=True)
        sys.exit(1)
    click.echo(("wrote " + ", ".join(differ)) if differ and not check else "migration files match the spec")


@main.group()
def local():
    """The local environment's embedded PostgreSQL."""


@local.command("start")
@click.option("--environments", "environments_path", type=click.Path(dir_okay=False), help="Environments file.")
@project_option
@_friendly
def local_start(environments_path, project):
    """Start the local database (creating it with sample data the first time).

    Example: fkrunbook local start
    """
    from .database import connect
    from .environment import get_environment

    env = get_environment("local", environments_path or _project(project).environments)
    db = connect(env)
    click.echo(f"local database {env.database!r} is ready (PostgreSQL {db.describe().loc['server_version', 'value']})")


@local.command("reset")
@click.option("--rows", type=int, default=2000, show_default=True, help="Sample size; millions for benchmarks.")
@click.option("--environments", "environments_path", type=click.Path(dir_okay=False), help="Environments file.")
@project_option
@_friendly
def local_reset(rows, environments_path, project):
    """Recreate the local database: baseline schema and fresh sample data with planted orphans.

    Example: fkrunbook local reset --rows 1000000
    """
    from .environment import get_environment
    from .sample import ensure_local_database
    from .server import ensure_server

    env = get_environment("local", environments_path or _project(project).environments)
    data = ensure_local_database(ensure_server(env.data_dir, env.bin_dir), env.database, rows=rows, reset=True)
    click.echo(f"local database {env.database!r} recreated: {data.sessions} sessions, {data.grants} grants, "
               f"{data.events} events; orphans planted: {sum(data.orphans.values())}")


@local.command("stop")
@click.option("--environments", "environments_path", type=click.Path(dir_okay=False), help="Environments file.")
@project_option
@_friendly
def local_stop(environments_path, project):
    """Stop the local database server.

    Example: fkrunbook local stop
    """
    from .environment import get_environment
    from .server import stop_server

    env = get_environment("local", environments_path or _project(project).environments)
    click.echo("stopped" if stop_server(env.data_dir, env.bin_dir) else "not running")


def _print_event(kind: str, info: dict) -> None:
    if kind == "phase_started":
        click.echo(f"[{info['index']}/{info['total']}] {info['phase']} ...")
    elif kind == "phase_finished":
        summary = ", ".join(f"{k}: {_brief(v)}" for k, v in (info.get("results") or {}).items())
        click.echo(f"      {info['status']} in {info['duration_s']:.1f} s" + (f"; {summary}" if summary else ""))


def _brief(value) -> str:
    """A result in a few characters: totals of per-column counts, lengths of lists."""
    if isinstance(value, dict) and all(isinstance(v, (int, bool)) for v in value.values()):
        if all(isinstance(v, bool) for v in value.values()):
            return f"{sum(value.values())}/{len(value)}"
        return str(sum(value.values()))
    if isinstance(value, list):
        return str(len(value))
    return str(value)


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
