"""A team's repository built around one of the schema shapes under tests/team_schemas, with its
local environment on a chosen PostgreSQL major, and the rehearsal a team runs in it:
``fkrunbook local reset --from-migrations`` (with its sample data and planted orphans) then
``fkrunbook run --env local --confirm``.

Each shape is a folder written here, after the shapes of real Supabase projects' schemas (no
file of theirs is copied): ``supabase/migrations/`` and ``spec.yaml``, the shape's own change.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import psycopg
import yaml

from fkrunbook.server import ensure_server, stop_server

from .majors import bin_dir
from .test_cli import invoke

SHAPES = Path(__file__).parent / "team_schemas"


@dataclass
class Rehearsal:
    root: Path
    load: object      # the CliRunner result of `local reset --from-migrations`
    run: object       # ... of `run --env local --confirm`
    results: dict     # phase name -> its key results, from the run's manifest
    keys: dict        # "table.column" -> (validated, ON DELETE) of every key in the database, after the run

    @property
    def run_dir(self) -> Path:
        return self.root / self.run.stdout.splitlines()[-1].split("evidence: ")[1]

    @property
    def planted(self) -> dict:
        """The orphans the load planted, per column, as its "sample data: ..." line says them (with
        those the schema's triggers wrote from planted rows)."""
        line = next(line for line in self.load.stdout.splitlines() if line.startswith("sample data: "))
        found: dict[str, int] = {}
        for part in line.split("orphans planted: ", 1)[1].split("; more written by the schema's triggers: "):
            for n, label in (item.split(" in ", 1) for item in part.split(", ") if item != "none"):
                found[label] = found.get(label, 0) + int(n)
        return found

    def check_orphans(self) -> None:
        """The orphan check found exactly the orphans planted (every spec column, and each stream or
        payload the load counted), and the confirmed clean-up removed those of the foreign-key columns."""
        found, cleaned = self.results["orphan_check"], self.results["orphan_cleanup"]
        assert found["orphans"] == {k: self.planted.get(k, 0) for k in found["orphans"]}, (found, self.planted)
        assert any(found["orphans"].values()), "no orphan planted in any foreign-key column"
        streams = {k: v for k, v in self.planted.items() if k not in found["orphans"]}
        assert {k: found["orphan_streams"][k] for k in streams} == streams, (found, self.planted)
        assert cleaned["confirmed"] and cleaned["rows"] == found["orphans"]


def team_repository(shape: str, major: str, root: Path, *init_args: str) -> Path:
    """``root`` made a team's repository: `fkrunbook init INIT_ARGS`, the shape's migrations and
    spec, and the local environment on ``major``'s binaries."""
    root.mkdir(parents=True, exist_ok=True)
    result = invoke("init", *init_args, cwd=root)
    assert result.exit_code == 0, result.output
    shutil.copytree(SHAPES / shape / "supabase" / "migrations", root / "supabase" / "migrations")
    shutil.copy(SHAPES / shape / "spec.yaml", root / "fkrunbook" / "add_missing_org_fk_constraints.yaml")
    environments = root / "fkrunbook" / "environments.yaml"
    data = yaml.safe_load(environments.read_text())
    data["environments"]["local"]["bin_dir"] = str(bin_dir(major))
    environments.write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def rehearse(root: Path, *reset_args: str) -> Rehearsal:
    """The team's rehearsal in ``root``; the local server is stopped afterwards."""
    try:
        load = invoke("local", "reset", "--from-migrations", *reset_args, cwd=root)
        assert load.exit_code == 0, load.output
        run = invoke("run", "--env", "local", "--confirm", cwd=root)
        assert run.exit_code == 0, run.output
        keys = foreign_keys(ensure_server(root / ".fkrunbook" / "local", local_bin_dir(root)).url("fkrunbook"))
    finally:
        stop_server(root / ".fkrunbook" / "local", local_bin_dir(root))
    rehearsal = Rehearsal(root, load, run, {}, keys)
    manifest = json.loads((rehearsal.run_dir / "manifest.json").read_text())
    rehearsal.results = {p["name"]: p["results"] for p in manifest["phases"]}
    return rehearsal


def foreign_keys(url: str) -> dict:
    with psycopg.connect(url) as conn:
        return {f"{table}.{column}": (validated, action) for table, column, validated, action in conn.execute("""
            SELECT c.conrelid::regclass::text, a.attname::text, c.convalidated,
                   CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL' WHEN 'r' THEN 'RESTRICT'
                                      WHEN 'd' THEN 'SET DEFAULT' ELSE 'NO ACTION' END
            FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND cardinality(c.conkey) = 1""")}


def local_bin_dir(root: Path) -> Path:
    data = yaml.safe_load((root / "fkrunbook" / "environments.yaml").read_text())
    return Path(data["environments"]["local"]["bin_dir"])
