"""``fkrunbook init``: set fkrunbook up inside a team's repository.

It looks for what the team already has (the Supabase folder, by its ``config.toml``; the table
docs; the keyword index; the org clean-up procedures, dot-folders included), then writes
``fkrunbook.toml``, the environments file and this plan's runbook spec, and nothing else (with
``ci="github"`` also the two workflows). Every detection can be overridden; what was found and
what was assumed is returned, so the CLI can print both. It never overwrites without ``force``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import CONFIG_FILE, load_config
from .errors import ConfigError
from .resources import runbook_file

SKIP_DIRS = {".git", "node_modules", ".venv", "venv", ".fkrunbook", "__pycache__", ".cache", "dist", "build",
             ".mypy_cache", ".pytest_cache", ".tox", "site-packages", ".next"}
SPEC_NAME = "add_missing_org_fk_constraints.yaml"
# Tables the plan touches: a folder of docs named after them is the team's table docs.
PLAN_TABLES = ("organizations_projection", "impersonation_sessions_projection", "cross_tenant_access_grants_projection",
               "domain_events", "workflow_queue_projection")


@dataclass
class InitOptions:
    """Overrides for each detection (paths relative to the repository root)."""
    supabase_dir: str | None = None
    table_docs: str | None = None        # template with {table}
    docs_new: str | None = None
    index: str | None = None
    procedures: tuple[str, ...] = ()
    runbook_dir: str = "fkrunbook"
    ci: str | None = None                # "github"
    pip_spec: str = "fkrunbook"          # what the workflows install
    force: bool = False


@dataclass
class InitResult:
    root: Path
    found: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def init_project(root: str | Path, options: InitOptions | None = None) -> InitResult:
    """Detect the team's layout under ``root`` and write fkrunbook's files there."""
    options = options or InitOptions()
    root = Path(root).resolve()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; run `fkrunbook init` at the root of your repository")
    result = InitResult(root)
    files = _walk(root)

    supabase = _pick_supabase(root, files, options, result)
    table, new = _pick_table_docs(root, files, options, result)
    index = _pick_index(root, files, options, result)
    procedures = _pick_procedures(root, files, options, result)

    runbook_dir = options.runbook_dir.strip("/") or "fkrunbook"
    targets = {
        root / CONFIG_FILE: render_config(supabase, runbook_dir, table, new, index, procedures),
        root / runbook_dir / "environments.yaml": runbook_file("environments.yaml").read_text(),
        root / runbook_dir / SPEC_NAME: spec_for_team(runbook_file(SPEC_NAME).read_text()),
    }
    if options.ci:
        if options.ci != "github":
            raise ConfigError(f"--ci {options.ci!r} is not supported; the one CI it writes for is github")
        from .workflows import render_workflows

        for name, text in render_workflows(runbook_dir, supabase, options.pip_spec).items():
            targets[root / ".github" / "workflows" / name] = text
        result.notes.append(f"the workflows install fkrunbook with `pip install {options.pip_spec}`; pass "
                            "--pip-spec (a wheel, or git+https://...) if you install it otherwise")
    existing = [p for p in targets if p.exists()]
    if existing and not options.force:
        raise ConfigError(f"{', '.join(os.path.relpath(p, root) for p in existing)} already exist(s); nothing was "
                          "written: pass --force to overwrite")
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        result.written.append(path)
    load_config(root / CONFIG_FILE)  # what was written must load
    result.notes.append(f"keep {runbook_dir}/audit/ (the evidence) and .fkrunbook/ (the local database) out of git, "
                        "or commit the evidence on purpose: add them to .gitignore")
    return result


def render_config(supabase: str, runbook_dir: str, table: str, new: str, index: str | None,
                  procedures: list[str]) -> str:
    def q(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["# fkrunbook's project configuration (written by `fkrunbook init`; edit freely).",
             "# Paths are relative to this file.", "",
             "[supabase]", f"dir = {q(supabase)}  # the Supabase folder: config.toml and migrations/", "",
             "[runbook]", f"specs = [{q(runbook_dir + '/' + SPEC_NAME)}]",
             f"environments = {q(runbook_dir + '/environments.yaml')}",
             f"evidence = {q(runbook_dir + '/audit')}  # one folder per run, per environment", "",
             "[docs]", f"table = {q(table)}  # a table's doc", f"new = {q(new)}  # the only folder fkrunbook creates "
             "files in"]
    if index:
        lines.append(f"index = {q(index)}  # the keyword index")
    lines.append("procedures = [" + ", ".join(q(p) for p in procedures) + "]  # the org clean-up procedures")
    return "\n".join(lines) + "\n"


def spec_for_team(text: str) -> str:
    """This plan's spec, for a team's repository: no fixed migration version (the files get one newer
    than everything in the team's folder and database when they are generated)."""
    return re.sub(r"(?m)^  version: .*\n", "", text)


def _walk(root: Path) -> list[Path]:
    """Every file below root, relative, skipping tool and dependency folders (dot-folders kept)."""
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        rel = Path(folder).relative_to(root)
        found += [rel / n for n in sorted(names)]
    return found


def _depth_first(paths):
    return sorted(paths, key=lambda p: (len(p.parts), str(p)))


def _pick_supabase(root, files, options, result) -> str:
    if options.supabase_dir:
        result.found.append(f"Supabase folder {options.supabase_dir} (given)")
        if not (root / options.supabase_dir).is_dir():
            raise ConfigError(f"--supabase-dir {options.supabase_dir!r} is not a folder under {root}")
        return options.supabase_dir.rstrip("/")
    candidates = [p.parent for p in files if p.name == "config.toml"
                  and ((root / p.parent / "migrations").is_dir() or p.parent.name == "supabase")]
    candidates = sorted(candidates, key=lambda p: (not (root / p / "migrations").is_dir(), len(p.parts), str(p)))
    if not candidates:
        result.assumed.append("Supabase folder supabase/ (no config.toml found; pass --supabase-dir)")
        return "supabase"
    chosen = candidates[0]
    migrations = list((root / chosen / "migrations").glob("*.sql")) if (root / chosen / "migrations").is_dir() else []
    result.found.append(f"Supabase folder {chosen.as_posix()} (config.toml, {len(migrations)} migration file(s))")
    if len(candidates) > 1:
        result.assumed.append(f"chose {chosen.as_posix()} of {', '.join(c.as_posix() for c in candidates)}; pass "
                              "--supabase-dir to choose another")
    if not migrations and not (root / chosen / "migrations").is_dir():
        result.notes.append(f"{chosen.as_posix()}/migrations/ does not exist yet: the runbook creates it")
    return chosen.as_posix()


def _pick_table_docs(root, files, options, result) -> tuple[str, str]:
    if options.table_docs:
        if "{table}" not in options.table_docs:
            raise ConfigError(f"--table-docs {options.table_docs!r} must contain {{table}}, e.g. "
                              "docs/schema/tables/{table}.md")
        table = options.table_docs
        result.found.append(f"table docs {table} (given)")
    else:
        folders = {}
        for p in files:
            if p.suffix == ".md" and p.parent.name == "tables":
                folders.setdefault(p.parent, set()).add(p.stem)
        ranked = sorted(folders, key=lambda f: (-len(folders[f] & set(PLAN_TABLES)), len(f.parts), str(f)))
        if ranked and (folders[ranked[0]] & set(PLAN_TABLES) or len(ranked) == 1):
            chosen = ranked[0]
            table = f"{chosen.as_posix()}/{{table}}.md"
            known = sorted(folders[chosen] & set(PLAN_TABLES))
            result.found.append(f"table docs {table} ({len(folders[chosen])} doc(s)"
                                + (f", including {', '.join(known)})" if known else ")"))
        else:
            table = "docs/schema/tables/{table}.md"
            result.assumed.append(f"table docs {table} (no tables/ folder of docs found; pass --table-docs)")
    if options.docs_new:
        new = options.docs_new.rstrip("/")
    else:
        parent = Path(table).parent
        new = (parent.parent if parent.name == "tables" else parent).as_posix()
        result.assumed.append(f"new docs (ER diagram, methodology) go in {new}/ (pass --docs-new)")
    new_abs, table_abs = (root / new).resolve(), (root / table.format(table="x")).resolve()
    if not str(table_abs).startswith(str(new_abs) + os.sep):
        result.notes.append(f"table docs that do not exist yet are not created: {table} is outside {new}/")
    return table, new


def _pick_index(root, files, options, result) -> str | None:
    if options.index:
        result.found.append(f"keyword index {options.index} (given)")
        return options.index
    matches = _depth_first(p for p in files if p.name.lower() == "agent-index.md")
    if not matches:
        result.assumed.append("no keyword index (no AGENT-INDEX.md found; pass --index to maintain one)")
        return None
    result.found.append(f"keyword index {matches[0].as_posix()}")
    return matches[0].as_posix()


def _pick_procedures(root, files, options, result) -> list[str]:
    if options.procedures:
        result.found.append(f"clean-up procedures {', '.join(options.procedures)} (given)")
        return list(options.procedures)
    matches = [p for p in files if re.fullmatch(r"org-cleanup.*\.md", p.name)]
    if not matches:
        result.assumed.append("no org clean-up procedures (no org-cleanup*.md found; pass --procedures GLOB)")
        return []
    globs = list(dict.fromkeys(f"{p.parent.as_posix()}/org-cleanup*.md" if p.parent.parts else "org-cleanup*.md"
                               for p in _depth_first(matches)))
    result.found.append(f"clean-up procedures {', '.join(p.as_posix() for p in matches)}")
    return globs
