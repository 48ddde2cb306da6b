"""The project configuration: where things live in the repository fkrunbook runs in.

One file, ``fkrunbook.toml``, at the root of the team's repository, found by walking up from the
current folder (as git and the Supabase CLI find theirs). Every layer (CLI, runner, notebooks,
docs, migrations) receives the one :class:`Config` loaded from it; none computes a path of its own.

    [supabase]
    dir = "infrastructure/supabase/supabase"      # the folder with config.toml and migrations/

    [runbook]
    specs = ["fkrunbook/add_missing_org_fk_constraints.yaml"]
    environments = "fkrunbook/environments.yaml"
    evidence = "fkrunbook/audit"

    [docs]
    table = "documentation/database/tables/{table}.md"   # a table's doc
    new = "documentation/database"                        # fkrunbook creates files only in here
    index = "documentation/AGENT-INDEX.md"                # the keyword index
    procedures = [".claude/commands/org-cleanup*.md"]     # the org clean-up procedures

Paths are relative to the folder holding the file (or to ``root``, when the file sets it: the
copy kept in a run folder points back at the repository that way).
"""
from __future__ import annotations

import glob
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError

CONFIG_FILE = "fkrunbook.toml"

SECTIONS = {
    "": {"root"},
    "supabase": {"dir"},
    "runbook": {"specs", "environments", "evidence"},
    "docs": {"table", "new", "index", "procedures"},
    "evidence": {"store", "endpoint", "region"},
}


@dataclass(frozen=True)
class DocsLayout:
    """Where the team keeps its docs. ``table`` is a path template with ``{table}``; files the docs
    phase would create (a table's first doc, the ER diagram, the methodology) go only under ``new``."""
    root: Path
    table: str
    new: Path
    index: Path | None
    procedures: tuple[str, ...] = ()

    @classmethod
    def in_folder(cls, folder: str | Path) -> "DocsLayout":
        """Everything in one folder, as before ``fkrunbook.toml``: ``tables/<table>.md``, the index
        ``AGENT-INDEX.md``, and the clean-up procedures found anywhere under it."""
        folder = Path(folder)
        return cls(folder, "tables/{table}.md", folder, folder / "AGENT-INDEX.md",
                   ("**/org-cleanup*.md", "**/org-cleanup*/SKILL.md"))

    def table_doc(self, table: str) -> Path:
        return self.root / self.table.format(table=table)

    def procedure_files(self) -> list[Path]:
        """Files matched by the procedure globs, dot-folders included, each once, in order."""
        found: dict[Path, None] = {}
        for pattern in self.procedures:
            for match in sorted(glob.glob(pattern, root_dir=self.root, recursive=True, include_hidden=True)):
                path = self.root / match
                if path.is_file():
                    found.setdefault(path, None)
        return list(found)

    def may_create(self, path: Path) -> bool:
        """Whether fkrunbook may create ``path``: only inside the folder for new docs."""
        return _inside(path, self.new)

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.root)


@dataclass(frozen=True)
class Config:
    """One project's configuration; every path absolute."""
    root: Path
    supabase_dir: Path
    specs: tuple[Path, ...]
    environments: Path
    evidence: Path
    docs: DocsLayout
    path: Path | None = None           # the fkrunbook.toml it was read from
    store: str | None = None           # [evidence] store: where sealed runs are published (fkrunbook.store)
    store_endpoint: str | None = None  # [evidence] endpoint: an S3-compatible service's URL
    store_region: str | None = None    # [evidence] region
    sha256: str = field(default="", compare=False)

    @property
    def migrations(self) -> Path:
        """The Supabase folder's migrations/, where the runbook's files are generated."""
        return self.supabase_dir / "migrations"

    @property
    def spec(self) -> Path:
        """The default runbook spec: the first listed."""
        return self.specs[0]

    @property
    def notebooks(self) -> Path:
        from .resources import notebooks_dir

        return notebooks_dir()

    def resolve_spec(self, given: str | Path | None, base: Path | None = None) -> Path:
        """A spec named on the command line or in a notebook: the file name or stem of one listed in
        the configuration, or a path (relative to ``base``, default the current folder); the first
        listed when ``given`` is empty."""
        if not given:
            return self.spec
        for spec in self.specs:
            if str(given) in (spec.name, spec.stem):
                return spec
        return base / given if base else Path(given)

    def rel(self, path: Path) -> str:
        """``path`` relative to the repository root, as the evidence and messages show it."""
        return os.path.relpath(path, self.root)

    def with_docs_under(self, folder: Path) -> "Config":
        """The same project with its docs layout moved under ``folder`` (the demo writes there)."""
        folder = folder.resolve()
        moved = lambda p: folder / os.path.relpath(p, self.root)  # noqa: E731
        docs = DocsLayout(folder, self.docs.table, moved(self.docs.new),
                          moved(self.docs.index) if self.docs.index else None, self.docs.procedures)
        return replace(self, docs=docs)

    def to_toml(self, at: Path) -> str:
        """This configuration as a file to be kept at ``at`` (a run folder): paths relative to the
        repository root, ``root`` relative to ``at``."""
        def q(value: str) -> str:
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        def rel(p: Path) -> str:
            return q(self.rel(p))

        docs_root = os.path.relpath(self.docs.root, self.root)
        docs_rel = lambda p: q(os.path.relpath(p, self.root))  # noqa: E731
        table = self.docs.table if docs_root == "." else os.path.join(docs_root, self.docs.table)
        lines = [f"# The configuration this run used (from {self.rel(self.path) if self.path else 'defaults'}).",
                 f"root = {q(os.path.relpath(self.root, at))}", "",
                 "[supabase]", f"dir = {rel(self.supabase_dir)}", "",
                 "[runbook]", "specs = [" + ", ".join(rel(s) for s in self.specs) + "]",
                 f"environments = {rel(self.environments)}", f"evidence = {rel(self.evidence)}", "",
                 "[docs]", f"table = {q(table)}", f"new = {docs_rel(self.docs.new)}"]
        if self.docs.index:
            lines.append(f"index = {docs_rel(self.docs.index)}")
        procedures = [p if docs_root == "." else os.path.join(docs_root, p) for p in self.docs.procedures]
        lines.append("procedures = [" + ", ".join(q(p) for p in procedures) + "]")
        store = [(k, v) for k, v in (("store", self.store), ("endpoint", self.store_endpoint),
                                     ("region", self.store_region)) if v]
        if store:
            lines += ["", "[evidence]"] + [f"{k} = {q(v)}" for k, v in store]
        return "\n".join(lines) + "\n"


def add_spec(config: Config, spec: Path) -> bool:
    """List ``spec`` in the fkrunbook.toml's ``[runbook] specs`` (kept as one line, as ``init``
    writes it); True when listed (or already there), False when the file holds the list otherwise."""
    if config.path is None or not config.path.exists():
        return False
    if any(os.path.abspath(s) == os.path.abspath(spec) for s in config.specs):
        return True
    text = config.path.read_text()
    line = re.compile(r'^(specs\s*=\s*\[)(.*?)(\]\s*)$', re.M)
    match = line.search(text)
    if not match or "[runbook]" not in text[:match.start()]:
        return False
    entry = '"' + os.path.relpath(spec, config.root).replace("\\", "/") + '"'
    items = match.group(2).rstrip().rstrip(",")
    config.path.write_text(text[:match.start()] + match.group(1) + (items + ", " if items.strip() else "") + entry
                           + match.group(3) + text[match.end():])
    return True


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
        return True
    except ValueError:
        return False


def find_config(start: str | Path | None = None) -> Config:
    """The ``fkrunbook.toml`` at or above ``start`` (default: the current folder), loaded."""
    here = Path(start or os.getcwd()).resolve()
    if here.is_file():
        return load_config(here)
    for folder in [here, *here.parents]:
        if (folder / CONFIG_FILE).is_file():
            return load_config(folder / CONFIG_FILE)
    raise ConfigError(f"no {CONFIG_FILE} at or above {here}; run `fkrunbook init` at the root of your repository, "
                      "or pass --project with the folder that holds it")


def load_config(path: str | Path) -> Config:
    """Read and check a ``fkrunbook.toml``; one :class:`ConfigError` naming the first problem."""
    import hashlib

    path = Path(path).resolve()
    if path.is_dir():
        path = path / CONFIG_FILE
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist; run `fkrunbook init` there, or pass --project with the folder "
                          f"that holds {CONFIG_FILE}", path=str(path)) from None
    try:
        raw = tomllib.loads(raw_bytes.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid TOML ({err}); fix the syntax", path=str(path)) from None
    config = parse_config(raw, path)
    return replace(config, sha256=hashlib.sha256(raw_bytes).hexdigest())


def parse_config(raw: dict, path: Path) -> Config:
    def fail(message: str):
        raise ConfigError(f"{path}: {message}", path=str(path))

    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in SECTIONS or not key:
                fail(f"unknown section [{key}]; known: " + ", ".join(f"[{s}]" for s in SECTIONS if s))
            for sub in value:
                if sub not in SECTIONS[key]:
                    fail(f"unknown key {sub!r} in [{key}]; known: {', '.join(sorted(SECTIONS[key]))}")
        elif key not in SECTIONS[""]:
            fail(f"unknown key {key!r}; put it in one of the sections " + ", ".join(f"[{s}]" for s in SECTIONS if s))

    def text(section: str, key: str, default: str | None = None) -> str:
        value = raw.get(section, {}).get(key, default)
        if value is None:
            fail(f"[{section}] has no {key!r}; add it")
        if not isinstance(value, str) or not value.strip():
            fail(f"[{section}] {key} must be a non-empty string")
        return value

    def texts(section: str, key: str, default: list[str]) -> tuple[str, ...]:
        value = raw.get(section, {}).get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            fail(f"[{section}] {key} must be a list of strings")
        return tuple(value)

    base = path.parent
    root_value = raw.get("root", ".")
    if not isinstance(root_value, str):
        fail("root must be a string: the repository root, relative to this file")
    root = (base / root_value).resolve()
    at = lambda value: (root / value).resolve()  # noqa: E731

    specs = texts("runbook", "specs", [])
    if not specs:
        fail("[runbook] specs is empty; list the runbook spec files (fkrunbook init writes one)")
    table = text("docs", "table", "docs/schema/tables/{table}.md")
    if "{table}" not in table:
        fail(f"[docs] table {table!r} must contain {{table}}, e.g. \"docs/schema/tables/{{table}}.md\"")
    try:
        table.format(table="x")
    except (KeyError, IndexError, ValueError):
        fail(f"[docs] table {table!r} may hold only the placeholder {{table}}")
    new = at(text("docs", "new", str(Path(table).parent.parent) if "/" in table else "."))
    index = raw.get("docs", {}).get("index")
    if index is not None and (not isinstance(index, str) or not index.strip()):
        fail("[docs] index must be a path, e.g. \"docs/AGENT-INDEX.md\"")
    config = Config(
        root=root, path=path,
        supabase_dir=at(text("supabase", "dir", "supabase")),
        specs=tuple(at(s) for s in specs),
        environments=at(text("runbook", "environments", "runbooks/environments.yaml")),
        evidence=at(text("runbook", "evidence", "audit")),
        docs=DocsLayout(root, table, new, at(index) if index else None,
                        texts("docs", "procedures", [])),
    )
    evidence = raw.get("evidence", {})
    for key in ("store", "endpoint", "region"):
        if key in evidence:
            text("evidence", key)
    if evidence:
        from .errors import StoreError
        from .store import parse_store

        try:  # the syntax only (no network): a misspelt scheme fails before anything runs
            parse_store(evidence.get("store"), config.evidence, base=root, in_file=True,
                        endpoint=evidence.get("endpoint"), region=evidence.get("region"))
        except StoreError as err:
            fail(f"[evidence] {err}")
        config = replace(config, store=evidence.get("store"), store_endpoint=evidence.get("endpoint"),
                         store_region=evidence.get("region"))
    return config
